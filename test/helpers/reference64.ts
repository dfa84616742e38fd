/**
 * Float64 SupCon loss and gradient written straight from docs/loss.md with plain loops: the
 * oracle of the TypeScript tests, independent of both the native kernel and the tfjs reference.
 */
import { Rng } from '../../src/data/rng';
import type { SupConOptions } from '../../src';

export interface Ref64Options {
  temperature: number;
  baseTemperature: number;
  variant: 'out' | 'in';
  contrastMode: 'all' | 'one';
  normalize: boolean;
  reduction: 'mean' | 'sum' | 'none';
  /** Default 'all'. */
  denominator?: 'all' | 'one-positive' | 'only-negatives';
  /** Default 'none'. */
  positiveWeighting?: 'none' | 'jaccard';
  /** Default: no cap. */
  positivesCap?: number | null;
  positivesCapSeed?: number;
}

/** Multi-hot label sets: row r's labels are sets[r * numLabels .. (r + 1) * numLabels), 0 or 1. */
export interface Ref64LabelSets {
  sets: ArrayLike<number>;
  numLabels: number;
}

export interface Ref64Problem {
  features: ArrayLike<number>;
  shape: number[];
  /** Class ids [B] (or [N] for rank 2), or label sets of those rows; absent: SimCLR. */
  labels?: ArrayLike<number> | Ref64LabelSets | null;
  contrast?: { features: ArrayLike<number>; labels?: ArrayLike<number> | Ref64LabelSets | null };
}

export interface Ref64Result {
  loss: number;
  perAnchor: Float64Array;
  grad: Float64Array;
  /** [M * D]: the extra contrast rows' gradient. */
  contrastGrad: Float64Array;
  validAnchors: number;
}

function isSets(x: unknown): x is Ref64LabelSets {
  return typeof x === 'object' && x !== null && 'numLabels' in x;
}

/** The 32-bit mixing of the cap's seeded order (docs/loss.md, "Positives"), written out again. */
function capHash(seed: number, unit: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(unit, 0x85ebca77)) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h = (h ^ (h >>> 15)) >>> 0;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

const softplus = (d: number): number => Math.max(d, 0) + Math.log1p(Math.exp(-Math.abs(d)));
const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

/** log sum_j c_j exp(x_j) over the terms with c_j > 0, its maximum kept apart (m = -inf: empty). */
function lse(x: Float64Array, c: Float64Array): { m: number; logSum: number } {
  let m = -Infinity;
  for (let j = 0; j < x.length; j++) if (c[j] > 0) m = Math.max(m, x[j]);
  if (m === -Infinity) return { m, logSum: -Infinity };
  let sum = 0;
  for (let j = 0; j < x.length; j++) if (c[j] > 0) sum += c[j] * Math.exp(x[j] - m);
  return { m, logSum: Math.log(sum) };
}

/**
 * Every option of the loss (docs/loss.md): class ids or label sets, Jaccard weights, the
 * denominators and the positives cap; the gradient of the features and of the extra rows.
 */
/** The reference's options for the library's `SupConOptions`, with the library's defaults filled in. */
export function ref64Options(o: SupConOptions): Ref64Options {
  const temperature = o.temperature ?? 0.1;
  return {
    temperature,
    baseTemperature: o.baseTemperature ?? temperature,
    variant: o.variant ?? 'out',
    contrastMode: o.contrastMode ?? 'all',
    normalize: o.normalize ?? false,
    reduction: o.reduction ?? 'mean',
    denominator: o.denominator ?? 'all',
    positiveWeighting: o.positiveWeighting ?? 'none',
    positivesCap: o.positivesCap ?? null,
    positivesCapSeed: o.positivesCapSeed ?? 0,
  };
}

export function reference64(p: Ref64Problem, o: Ref64Options, upstream?: ArrayLike<number>): Ref64Result {
  const rank3 = p.shape.length === 3;
  const B = p.shape[0];
  const V = rank3 ? p.shape[1] : 1;
  const D = rank3 ? p.shape[2] : p.shape[1];
  const N = B * V;
  const M = p.contrast ? p.contrast.features.length / D : 0;
  const C = N + M;
  const tau = o.temperature;
  const scale = o.temperature / o.baseTemperature;
  const denominator = o.denominator ?? 'all';
  const cap = o.positivesCap ?? null;

  // z = x / max(||x||, 1e-12); a row whose norm is clamped is merely scaled (clamped[r]).
  const z = new Float64Array(C * D);
  const norm = new Float64Array(C).fill(1);
  const clamped = new Uint8Array(C);
  for (let r = 0; r < C; r++) {
    const src = r < N ? p.features : p.contrast!.features;
    const off = (r < N ? r : r - N) * D;
    let ss = 0;
    for (let k = 0; k < D; k++) ss += src[off + k] * src[off + k];
    clamped[r] = o.normalize && Math.sqrt(ss) < 1e-12 ? 1 : 0;
    norm[r] = o.normalize ? Math.max(Math.sqrt(ss), 1e-12) : 1;
    for (let k = 0; k < D; k++) z[r * D + k] = src[off + k] / norm[r];
  }
  // Positive weights of a pair of rows (memory order, then the extra rows): 1 or the Jaccard
  // overlap when the labels match / the sets intersect, 0 otherwise.
  const sampleOf = (r: number): number => (r < N ? Math.floor(r / V) : B + (r - N));
  const sets = isSets(p.labels) ? p.labels : null;
  const ids = p.labels && !isSets(p.labels) ? p.labels : null;
  const contrastSets = p.contrast && isSets(p.contrast.labels) ? p.contrast.labels : null;
  const contrastIds = p.contrast?.labels && !isSets(p.contrast.labels) ? p.contrast.labels : null;
  const label = (r: number): number => {
    if (r < N) return ids ? ids[Math.floor(r / V)] : Math.floor(r / V);
    return ids ? contrastIds![r - N] : -1e9 - r; // unlabeled extra rows match nothing
  };
  const setOf = (r: number): number[] => {
    const L = sets!.numLabels;
    const src = r < N ? sets!.sets : contrastSets!.sets;
    const row = r < N ? Math.floor(r / V) : r - N;
    return Array.from({ length: L }, (_, c) => src[row * L + c]);
  };
  const uncapped = (i: number, j: number): number => {
    if (!sets) return label(i) === label(j) ? 1 : 0;
    const a = setOf(i);
    const b = setOf(j);
    let both = 0;
    let either = 0;
    for (let c = 0; c < a.length; c++) {
      both += a[c] && b[c] ? 1 : 0;
      either += a[c] || b[c] ? 1 : 0;
    }
    if (both === 0) return 0;
    return o.positiveWeighting === 'jaccard' ? both / either : 1;
  };
  // The cap's order: units (samples, then extra rows) sorted by (hash(seed, u), u), each unit's
  // rows in view order.
  const orderKey = new Float64Array(C);
  if (cap !== null) {
    const units = Array.from({ length: B + M }, (_, u) => ({ u, h: capHash(o.positivesCapSeed ?? 0, u) }));
    units.sort((x, y) => x.h - y.h || x.u - y.u);
    let next = 0;
    for (const { u } of units) {
      if (u < B) for (let v = 0; v < V; v++) orderKey[u * V + v] = next++;
      else orderKey[N + u - B] = next++;
    }
  }
  // Weights of anchor row i: > 0 positive, 0 negative, -1 dropped by the cap (and i itself: 0).
  const weights = (i: number): Float64Array => {
    const w = new Float64Array(C);
    const candidates: number[] = [];
    for (let j = 0; j < C; j++) {
      if (j === i) continue;
      w[j] = uncapped(i, j);
      if (w[j] > 0 && sampleOf(j) !== sampleOf(i)) candidates.push(j);
    }
    if (cap !== null) {
      candidates.sort((x, y) => orderKey[x] - orderKey[y]);
      for (let k = cap; k < candidates.length; k++) w[candidates[k]] = -1;
    }
    return w;
  };
  // anchors in view-major order -> memory row
  const anchorRow: number[] = [];
  if (o.contrastMode === 'one') for (let b = 0; b < B; b++) anchorRow.push(b * V);
  else for (let v = 0; v < V; v++) for (let b = 0; b < B; b++) anchorRow.push(b * V + v);
  const A = anchorRow.length;

  const perAnchor = new Float64Array(A);
  const gs: Float64Array[] = []; // dl_a / ds_aj
  const valid: boolean[] = [];
  let validAnchors = 0;
  for (let a = 0; a < A; a++) {
    const i = anchorRow[a];
    const w = weights(i);
    const s = new Float64Array(C);
    const inD = new Float64Array(C);
    const inN = new Float64Array(C);
    const inP = new Float64Array(C);
    let W = 0;
    let hasNegative = false;
    for (let j = 0; j < C; j++) {
      if (j === i) continue;
      let dot = 0;
      for (let k = 0; k < D; k++) dot += z[i * D + k] * z[j * D + k];
      s[j] = dot / tau;
      inN[j] = w[j] === 0 ? 1 : 0;
      inP[j] = w[j] > 0 ? w[j] : 0;
      inD[j] = denominator === 'all' ? (w[j] >= 0 ? 1 : 0) : inN[j];
      W += inP[j];
      hasNegative ||= w[j] === 0;
    }
    const g = new Float64Array(C);
    gs.push(g);
    valid.push(false);
    if (!(W > 0) || (denominator === 'only-negatives' && !hasNegative)) continue;
    valid[a] = true;
    validAnchors++;
    let l = 0;
    if (denominator !== 'one-positive') {
      const d = lse(s, inD);
      const pw = lse(s, inP);
      // Differences of large terms first: at |s| ~ 1e30, m + log(sum) would round log(sum) away.
      if (o.variant === 'in') {
        l = d.m - pw.m + (d.logSum - pw.logSum) + Math.log(W);
      } else {
        let meanP = 0;
        for (let j = 0; j < C; j++) meanP += (inP[j] * s[j]) / W;
        l = d.m - meanP + d.logSum;
      }
      for (let j = 0; j < C; j++) {
        if (j === i) continue;
        let gj = inD[j] > 0 ? Math.exp(s[j] - d.m - d.logSum) : 0;
        if (inP[j] > 0) gj -= o.variant === 'in' ? inP[j] * Math.exp(s[j] - pw.m - pw.logSum) : inP[j] / W;
        g[j] = gj;
      }
    } else {
      // Each positive p against the negatives alone: -log(e^{s_p} / (e^{s_p} + sum_n e^{s_n}))
      // = softplus(LSE_N - s_p).
      const n = lse(s, inN);
      const pN = (j: number) => Math.exp(s[j] - n.m - n.logSum);
      const dOf = (j: number) => (n.m === -Infinity ? -Infinity : n.m - s[j] + n.logSum);
      if (o.variant === 'out') {
        let T = 0;
        for (let j = 0; j < C; j++) {
          if (inP[j] > 0) {
            l += (inP[j] * softplus(dOf(j))) / W;
            T += (inP[j] * sigmoid(dOf(j))) / W;
          }
        }
        for (let j = 0; j < C; j++) {
          if (j === i) continue;
          if (inN[j] > 0) g[j] = T * pN(j);
          if (inP[j] > 0) g[j] = (-inP[j] / W) * sigmoid(dOf(j));
        }
      } else {
        // l = log W - log sum_p w_p sigma(s_p - LSE_N), through log sigma = -softplus(d).
        const logSig = new Float64Array(C);
        for (let j = 0; j < C; j++) if (inP[j] > 0) logSig[j] = -softplus(dOf(j));
        const q = lse(logSig, inP);
        const qv = q.m + q.logSum;
        l = Math.log(W) - qv;
        let U = 0;
        for (let j = 0; j < C; j++) if (inP[j] > 0) U += inP[j] * Math.exp(logSig[j] - qv) * sigmoid(dOf(j));
        for (let j = 0; j < C; j++) {
          if (j === i) continue;
          if (inN[j] > 0) g[j] = U * pN(j);
          if (inP[j] > 0) g[j] = -inP[j] * Math.exp(logSig[j] - qv) * sigmoid(dOf(j));
        }
      }
    }
    perAnchor[a] = scale * l;
  }
  let total = 0;
  for (const l of perAnchor) total += l;
  const loss = o.reduction === 'mean' ? (validAnchors ? total / validAnchors : 0) : total;

  const dz = new Float64Array(C * D);
  for (let a = 0; a < A; a++) {
    if (!valid[a]) continue;
    const up = upstream ? upstream[o.reduction === 'none' ? a : 0] : 1;
    const w = (up * scale) / (o.reduction === 'mean' ? validAnchors : 1);
    const i = anchorRow[a];
    for (let j = 0; j < C; j++) {
      const g = w * gs[a][j];
      if (g === 0) continue;
      for (let k = 0; k < D; k++) {
        dz[i * D + k] += (g * z[j * D + k]) / tau;
        dz[j * D + k] += (g * z[i * D + k]) / tau;
      }
    }
  }
  const grad = new Float64Array(N * D);
  const contrastGrad = new Float64Array(M * D);
  for (let r = 0; r < C; r++) {
    let dot = 0;
    for (let k = 0; k < D; k++) dot += z[r * D + k] * dz[r * D + k];
    const [out, base] = r < N ? [grad, r * D] : [contrastGrad, (r - N) * D];
    for (let k = 0; k < D; k++) {
      const g = dz[r * D + k];
      out[base + k] = o.normalize ? (clamped[r] ? g : g - z[r * D + k] * dot) / norm[r] : g;
    }
  }
  return { loss, perAnchor, grad, contrastGrad, validAnchors };
}

/** Deterministic uniform [0, 1) numbers for test inputs (the package's seeded RNG). */
export function testRng(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

/** Standard normal samples (Box-Muller). */
export function gaussian(rng: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  }
  return out;
}

/** Rows scaled to unit L2 norm, in place. */
export function unitRows(x: Float32Array, dim: number): Float32Array {
  for (let r = 0; r < x.length / dim; r++) {
    let ss = 0;
    for (let k = 0; k < dim; k++) ss += x[r * dim + k] ** 2;
    const inv = 1 / Math.sqrt(ss);
    for (let k = 0; k < dim; k++) x[r * dim + k] *= inv;
  }
  return x;
}

export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
