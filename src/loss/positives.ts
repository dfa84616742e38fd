/**
 * The positive relation of the loss on the host (docs/loss.md, "Positives"), for the pure-tfjs
 * reference: which contrast rows are positives of each anchor, with which weight, and which ones
 * the positives cap drops. The native kernels compute the same relation tile by tile
 * (native/core/loss_pairs.h); this materializes it as an [anchors, contrast rows] matrix, which
 * is what the O(N^2)-memory reference needs anyway.
 */
import type { LabelSets, ResolvedSupConOptions } from './options';

/**
 * Hash of unit u (a sample of the batch, then each extra row) under a cap seed: the cap's order
 * sorts units by (hash, u). The 32-bit mixing of the edge-case table's generator; the C++ core
 * computes the same (native/core/loss.cpp, capOrderHash).
 */
export function capOrderHash(seed: number, unit: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(unit, 0x85ebca77)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The labels of a problem, in the reference's row order. */
export interface PairProblem {
  batch: number;
  views: number;
  extraRows: number;
  /** Class ids of the samples and of the extra rows, or label sets of both, or neither (SimCLR). */
  labels: Int32Array | null;
  contrastLabels: Int32Array | null;
  labelSets: LabelSets | null;
  contrastLabelSets: LabelSets | null;
}

/**
 * Pair weights [anchors, contrast rows] in the reference's numbering: contrast row r < B V is
 * view floor(r / B) of sample r % B (view-major), then the extra rows; anchor a is contrast row a
 * ('one': the first B). Entry > 0: a positive of that weight; 0: a negative (and the anchor's own
 * entry); -1: a positive the cap drops.
 */
export function pairWeights(p: PairProblem, opts: ResolvedSupConOptions): Float32Array {
  const { batch: B, views: V, extraRows: M } = p;
  const N = B * V;
  const C = N + M;
  const A = opts.contrastMode === 'one' ? B : N;
  const unitOf = (r: number) => (r < N ? r % B : B + (r - N));
  const sets = p.labelSets;
  const setRow = (r: number): Uint8Array => {
    const u = unitOf(r);
    const L = sets!.numLabels;
    return u < B ? sets!.sets.subarray(u * L, (u + 1) * L) : p.contrastLabelSets!.sets.subarray((u - B) * L, (u - B + 1) * L);
  };
  const classOf = (r: number): number | null => {
    const u = unitOf(r);
    if (p.labels) return u < B ? p.labels[u] : p.contrastLabels![u - B];
    return u < B ? u : null; // SimCLR: the sample itself; extra rows match nothing
  };
  const uncapped = (i: number, j: number): number => {
    if (!sets) {
      const ci = classOf(i);
      return ci !== null && ci === classOf(j) ? 1 : 0;
    }
    const a = setRow(i);
    const b = setRow(j);
    let both = 0;
    let either = 0;
    for (let c = 0; c < a.length; c++) {
      both += a[c] & b[c];
      either += a[c] | b[c];
    }
    if (both === 0) return 0;
    return opts.positiveWeighting === 'jaccard' ? both / either : 1;
  };
  // The cap's order: units sorted by (hash, u), each unit's rows in view order.
  const key = new Int32Array(C);
  if (opts.positivesCap !== null) {
    const units = Array.from({ length: B + M }, (_, u) => u);
    const hash = units.map((u) => capOrderHash(opts.positivesCapSeed, u));
    units.sort((x, y) => hash[x] - hash[y] || x - y);
    let next = 0;
    for (const u of units) {
      if (u < B) for (let v = 0; v < V; v++) key[v * B + u] = next++;
      else key[N + (u - B)] = next++;
    }
  }
  const out = new Float32Array(A * C);
  for (let i = 0; i < A; i++) {
    const candidates: number[] = [];
    for (let j = 0; j < C; j++) {
      if (j === i) continue;
      const w = uncapped(i, j);
      out[i * C + j] = w;
      if (w > 0 && unitOf(j) !== unitOf(i)) candidates.push(j);
    }
    if (opts.positivesCap !== null) {
      candidates.sort((x, y) => key[x] - key[y]);
      for (let k = opts.positivesCap; k < candidates.length; k++) out[i * C + candidates[k]] = -1;
    }
  }
  return out;
}
