/**
 * Float64 SupCon loss and gradient written straight from docs/loss.md with plain loops: the
 * oracle of the TypeScript tests, independent of both the native kernel and the tfjs reference.
 */
import { Rng } from '../../src/data/rng';

export interface Ref64Options {
  temperature: number;
  baseTemperature: number;
  variant: 'out' | 'in';
  contrastMode: 'all' | 'one';
  normalize: boolean;
  reduction: 'mean' | 'sum' | 'none';
}

export interface Ref64Problem {
  features: ArrayLike<number>;
  shape: number[];
  labels?: ArrayLike<number> | null;
  contrast?: { features: ArrayLike<number>; labels?: ArrayLike<number> | null };
}

export interface Ref64Result {
  loss: number;
  perAnchor: Float64Array;
  grad: Float64Array;
  /** [M * D]: the extra contrast rows' gradient. */
  contrastGrad: Float64Array;
  validAnchors: number;
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
  const label = (r: number): number => {
    if (r < N) return p.labels ? p.labels[Math.floor(r / V)] : Math.floor(r / V);
    return p.labels ? p.contrast!.labels![r - N] : -1e9 - r; // unlabeled extra rows match nothing
  };
  // anchors in view-major order -> memory row
  const anchorRow: number[] = [];
  if (o.contrastMode === 'one') for (let b = 0; b < B; b++) anchorRow.push(b * V);
  else for (let v = 0; v < V; v++) for (let b = 0; b < B; b++) anchorRow.push(b * V + v);
  const A = anchorRow.length;

  const perAnchor = new Float64Array(A);
  const P: Float64Array[] = [];
  const X: Float64Array[] = [];
  const valid: boolean[] = [];
  let validAnchors = 0;
  for (let a = 0; a < A; a++) {
    const i = anchorRow[a];
    const s = new Float64Array(C);
    let mx = -Infinity;
    let mxP = -Infinity;
    let np = 0;
    for (let j = 0; j < C; j++) {
      if (j === i) continue;
      let dot = 0;
      for (let k = 0; k < D; k++) dot += z[i * D + k] * z[j * D + k];
      s[j] = dot / tau;
      mx = Math.max(mx, s[j]);
      if (label(j) === label(i)) {
        np++;
        mxP = Math.max(mxP, s[j]);
      }
    }
    let sum = 0;
    let sumP = 0;
    let meanP = 0;
    for (let j = 0; j < C; j++) {
      if (j === i) continue;
      sum += Math.exp(s[j] - mx);
      if (label(j) === label(i)) {
        sumP += Math.exp(s[j] - mxP);
        meanP += s[j];
      }
    }
    // Differences of large terms first: at |s| ~ 1e30, mx + log(sum) would round log(sum) away.
    P.push(new Float64Array(C));
    X.push(new Float64Array(C));
    valid.push(np > 0);
    if (np === 0) continue;
    validAnchors++;
    meanP /= np;
    perAnchor[a] = scale * (o.variant === 'in' ? mx - mxP + (Math.log(sum) - Math.log(sumP)) + Math.log(np) : mx - meanP + Math.log(sum));
    for (let j = 0; j < C; j++) {
      if (j === i) continue;
      P[a][j] = Math.exp(s[j] - mx) / sum;
      if (label(j) === label(i)) X[a][j] = o.variant === 'in' ? Math.exp(s[j] - mxP) / sumP : 1 / np;
    }
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
      const g = w * (P[a][j] - X[a][j]);
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
