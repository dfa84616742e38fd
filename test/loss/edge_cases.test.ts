// The TypeScript runner of the shared edge-case table (test/fixtures/loss-edge-cases.json; the
// C++ runner is native/test/edge_cases.h). Every row runs through every TypeScript path: the
// typed-array API (native CPU, and CUDA when a device is present), the tfjs op with its
// gradient, the pure-tfjs reference (with tfjs's own kernels and with the native ones: results
// must not depend on them), and the Keras-style loss with its targets; 'match' rows against the
// float64 reference, 'error' rows for the same typed error on every path. A new path or option
// added here gets every row for free.
import * as tf from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  supcon,
  supConLoss,
  supConLossFn,
  supConLossReference,
  supConTargets,
  type LabelSets,
  type SupConOptions,
} from '../../src';
import { restoreKernels, useNativeKernels } from '../../src/kernels';
import { ref64Options, reference64 } from '../helpers/reference64';

type Value = number | 'NaN' | 'Infinity' | '-Infinity';
interface FeatureSpec {
  random?: { seed: number; scale: number; rowNorm?: number };
  zeroRows?: number[];
  copyRows?: Array<[number, number]>;
}
interface Row {
  name: string;
  item: number | null;
  shape: number[];
  features: Value[] | FeatureSpec;
  /** Class ids, or label sets written as rows of 0/1 (issue 12). */
  labels: number[] | number[][] | null;
  contrast?: { rows: number; width?: number; features: Value[] | FeatureSpec; labels: number[] | number[][] | null };
  options: SupConOptions;
  scaleRows?: Array<[number, number]>;
  expect: 'match' | { error: string; pattern: string; stage?: 'gradient' };
  exact?: boolean;
  tsOnly?: boolean;
}

const table = JSON.parse(readFileSync(join(__dirname, '../fixtures/loss-edge-cases.json'), 'utf8')) as { rows: Row[] };

/** u(seed, i) in [-1, 1): the 32-bit hashing of native/test/edge_cases.h. */
function uniform(seed: number, i: number): number {
  let h = (Math.imul(seed, 0x9e3779b1) + Math.imul(i, 0x85ebca77)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return ((h >>> 0) / 4294967296) * 2 - 1;
}

function values(spec: Value[] | FeatureSpec, rows: number, dim: number): Float32Array {
  const n = rows * dim;
  const x = new Float64Array(n);
  if (Array.isArray(spec)) {
    for (let i = 0; i < n; i++) x[i] = Number(spec[i]);
  } else {
    const r = spec.random!;
    for (let i = 0; i < n; i++) x[i] = Math.fround(uniform(r.seed, i) * r.scale);
    if (r.rowNorm !== undefined) {
      for (let row = 0; row < rows; row++) {
        let ss = 0;
        for (let k = 0; k < dim; k++) ss += x[row * dim + k] ** 2;
        const f = ss > 0 ? r.rowNorm / Math.sqrt(ss) : 0;
        for (let k = 0; k < dim; k++) x[row * dim + k] *= f;
      }
    }
    for (const z of spec.zeroRows ?? []) x.fill(0, z * dim, (z + 1) * dim);
    for (const [to, from] of spec.copyRows ?? []) x.copyWithin(to * dim, from * dim, (from + 1) * dim);
  }
  return Float32Array.from(x);
}

interface Problem {
  row: Row;
  shape: number[];
  batch: number;
  views: number;
  dim: number;
  features: Float32Array;
  labels: Int32Array | LabelSets | null;
  contrast?: { features: Float32Array; labels: Int32Array | LabelSets | null; width: number };
  options: SupConOptions;
}

/** Class ids, or label sets when the entries are rows (multi-hot, as native/test/edge_cases.h). */
function labelsOf(list: number[] | number[][] | null): Int32Array | LabelSets | null {
  if (list === null) return null;
  if (list.length > 0 && Array.isArray(list[0])) {
    const rows = list as number[][];
    return { sets: Uint8Array.from(rows.flat()), numLabels: rows[0].length };
  }
  return Int32Array.from(list as number[]);
}

function problem(row: Row): Problem {
  const rank3 = row.shape.length === 3;
  const [batch, views, dim] = rank3 ? row.shape : [row.shape[0], 1, row.shape[1]];
  const features = values(row.features, batch * views, dim);
  for (const [r, f] of row.scaleRows ?? []) for (let k = 0; k < dim; k++) features[r * dim + k] = Math.fround(features[r * dim + k] * f);
  const labels = labelsOf(row.labels);
  let contrast: Problem['contrast'];
  if (row.contrast) {
    const width = row.contrast.width ?? dim;
    contrast = {
      features: values(row.contrast.features, row.contrast.rows, width),
      labels: labelsOf(row.contrast.labels),
      width,
    };
  }
  return { row, shape: row.shape, batch, views, dim, features, labels, contrast, options: row.options };
}

/** A path's result in the layout of the float64 reference. */
interface Result {
  loss: number;
  perAnchor?: ArrayLike<number>;
  grad: ArrayLike<number>;
}

/**
 * Agreement with the float64 reference within docs/loss.md's tolerances (`rel` scales them: 1 for
 * the native paths, 10 for the pure-tfjs reference), with the floors float32 itself sets at its
 * edges: the loss within the rounding of its scores (max|s| <= max||z||^2 / tau), each gradient
 * row within the rounding of its terms (|z| / tau_b, over ||x|| with normalize).
 */
function expectMatch(p: Problem, r: Result, rel: number, what: string) {
  const o = ref64Options(p.options);
  const ref = reference64(
    { features: p.features, shape: p.shape, labels: p.labels, contrast: p.contrast },
    o,
  );
  const rows = p.batch * p.views;
  let q = 0;
  let zmax = 0;
  const norms = new Float64Array(rows);
  const all = [p.features, p.contrast?.features ?? new Float32Array(0)];
  for (const [set, x] of all.entries()) {
    for (let r0 = 0; r0 < x.length; r0 += p.dim) {
      let ss = 0;
      for (let k = 0; k < p.dim; k++) {
        ss += x[r0 + k] ** 2;
        zmax = Math.max(zmax, Math.abs(x[r0 + k]));
      }
      q = Math.max(q, ss);
      if (set === 0) norms[r0 / p.dim] = Math.sqrt(ss);
    }
  }
  if (o.normalize) {
    q = 1;
    zmax = 1;
  }
  const scale = o.temperature / o.baseTemperature;
  const scoreFloor = p.row.exact ? 0 : 1e-6 * rel * ((scale * q) / o.temperature);
  const lossTol = (ref: number) => 1e-5 * rel * Math.max(1, Math.abs(ref)) + scoreFloor;
  expect(Number.isFinite(r.loss), `${what}: finite loss`).toBe(true);
  expect(Math.abs(r.loss - ref.loss), `${what}: loss ${r.loss} vs float64 ${ref.loss}`).toBeLessThanOrEqual(lossTol(ref.loss));
  if (r.perAnchor) {
    for (let a = 0; a < ref.perAnchor.length; a++) {
      expect(Math.abs(r.perAnchor[a] - ref.perAnchor[a]), `${what}: perAnchor[${a}]`).toBeLessThanOrEqual(lossTol(ref.perAnchor[a]));
    }
  }
  for (let row = 0; row < rows; row++) {
    const through = o.normalize ? 1 / Math.max(norms[row], 1e-12) : 1;
    const floor = (1e-5 * rel * zmax * through) / o.baseTemperature + 1e-42;
    let gmax = 0;
    let err = 0;
    for (let k = 0; k < p.dim; k++) {
      const i = row * p.dim + k;
      expect(Number.isFinite(r.grad[i]), `${what}: finite gradient at ${i}`).toBe(true);
      gmax = Math.max(gmax, Math.abs(ref.grad[i]));
      err = Math.max(err, Math.abs(r.grad[i] - ref.grad[i]));
    }
    expect(err, `${what}: gradient row ${row} (max |grad| ${gmax})`).toBeLessThanOrEqual(1e-4 * rel * gmax + floor);
  }
}

/** The same arrangement of the gradient as the features (tf.grad returns the tensor's layout). */
function tensorsOf(p: Problem) {
  const x = tf.tensor(p.features, p.shape, 'float32');
  const contrast = p.contrast
    ? { features: tf.tensor2d(p.contrast.features, [p.contrast.features.length / p.contrast.width, p.contrast.width]), labels: p.contrast.labels }
    : undefined;
  return { x, contrast };
}

type TfLoss = typeof supConLoss;

function runTf(fn: TfLoss, p: Problem): Result {
  const { x, contrast } = tensorsOf(p);
  try {
    const opts = { ...p.options, contrast };
    const f = (t: tf.Tensor) => {
      const l = fn(t, p.labels, opts);
      return (p.options.reduction === 'none' ? tf.sum(l) : l) as tf.Scalar;
    };
    const { value, grad } = tf.valueAndGrad(f)(x);
    const per = p.options.reduction === 'none' ? fn(x, p.labels, opts) : null;
    const result: Result = {
      loss: value.dataSync()[0],
      perAnchor: per ? Float32Array.from(per.dataSync()) : undefined,
      grad: Float32Array.from(grad.dataSync()),
    };
    tf.dispose([value, grad, per ?? []]);
    return result;
  } finally {
    tf.dispose([x, contrast?.features ?? []]);
  }
}

function runTyped(p: Problem, device: 'cpu' | 'cuda'): Result {
  const r = supcon.forwardBackward({
    features: p.features,
    shape: p.shape,
    labels: p.labels,
    contrast: p.contrast ? { features: p.contrast.features, labels: p.contrast.labels } : undefined,
    ...p.options,
    device,
  });
  return { loss: r.loss, perAnchor: r.perAnchor, grad: r.grad! };
}

/** "options.contrast.features", "contrast.features" -> "contrastfeatures" (as the C++ runner). */
function argumentKey(a: string): string {
  return a.replace(/^(options|input)\./, '').replace(/\./g, '').toLowerCase();
}

function expectRefusal(fn: () => unknown, row: Row, what: string) {
  const e = row.expect as Exclude<Row['expect'], 'match'>;
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `${what}: expected an InvalidArgumentError`).toBeInstanceOf(InvalidArgumentError);
  const err = caught as InvalidArgumentError;
  expect(argumentKey(err.argument), `${what}: argument of "${err.message}"`).toBe(argumentKey(e.error));
  expect(err.message, what).toMatch(new RegExp(e.pattern));
  expect(err.message, what).toMatch(/^Expected .+ for .+ but received .+/);
  // A description is never quoted back as if it were the value (issue 9, item 9).
  expect(err.received, what).not.toMatch(/ of type string$/);
}

const cuda = supcon.isAvailable() && supcon.info().cuda.devices.length > 0;
const matchRows = table.rows.filter((r) => r.expect === 'match');
const errorRows = table.rows.filter((r) => r.expect !== 'match');

beforeAll(async () => {
  await tf.setBackend('cpu');
});

afterAll(() => restoreKernels());

describe('the shared edge-case table', () => {
  it('holds a row for each numbered failure of issue 9 and both kinds of expectation', () => {
    const items = new Set(table.rows.map((r) => r.item));
    for (const item of [1, 2, 3, 4, 5, 6, 8, 9]) expect(items.has(item), `item ${item}`).toBe(true);
    // Issue 12's options: label sets, each denominator, Jaccard weights, the cap, and a refusal.
    const issue12 = table.rows.filter((r) => r.item === 12);
    expect(issue12.some((r) => r.labels !== null && Array.isArray(r.labels[0]))).toBe(true);
    for (const d of ['one-positive', 'only-negatives']) expect(issue12.some((r) => r.options.denominator === d), d).toBe(true);
    expect(issue12.some((r) => r.options.positiveWeighting === 'jaccard')).toBe(true);
    expect(issue12.some((r) => r.options.positivesCap !== undefined && r.expect === 'match')).toBe(true);
    expect(issue12.some((r) => r.expect !== 'match')).toBe(true);
    expect(matchRows.length).toBeGreaterThan(10);
    expect(errorRows.length).toBeGreaterThan(5);
  });

  describe.each(matchRows.map((r) => [r.name, r] as const))('match: %s', (_name, row) => {
    const p = problem(row);
    it('native CPU (typed-array API) agrees with the float64 reference', () => {
      expectMatch(p, runTyped(p, 'cpu'), 1, 'typed cpu');
    });
    it.runIf(cuda)('CUDA (typed-array API) agrees with the float64 reference', () => {
      expectMatch(p, runTyped(p, 'cuda'), 1, 'typed cuda');
    });
    it('the tfjs op and its gradient agree with the float64 reference', () => {
      expectMatch(p, runTf(supConLoss, p), 1, 'supConLoss');
    });
    it('the pure-tfjs reference agrees, and the same with the native tfjs kernels on', () => {
      restoreKernels();
      const own = runTf(supConLossReference, p);
      expectMatch(p, own, 10, 'supConLossReference');
      useNativeKernels();
      try {
        const native = runTf(supConLossReference, p);
        expectMatch(p, native, 10, 'supConLossReference, native kernels');
        const tol = 1e-5 * Math.max(1, Math.abs(own.loss));
        expect(Math.abs(native.loss - own.loss), 'loss with and without the native kernels').toBeLessThanOrEqual(tol);
      } finally {
        restoreKernels();
      }
    });
    it.runIf(p.labels instanceof Int32Array && !row.contrast && row.options.reduction !== 'none')(
      'labels mean the same through every entry: arrays, int32 tensors, Keras targets of the output shape',
      () => {
        const x = tf.tensor(p.features, p.shape, 'float32');
        const direct = supConLoss(x, p.labels, p.options).dataSync()[0];
        const fn = supConLossFn(p.options);
        const ids = p.labels as Int32Array;
        const targets = p.shape.length === 3 ? supConTargets(ids, [p.views, p.dim]) : supConTargets(ids, p.dim);
        expect(targets.dtype).toBe('int32');
        const int32 = tf.tensor1d(ids, 'int32');
        const viaTargets = fn(targets, x).dataSync()[0];
        const viaTensor = supConLoss(x, int32, p.options).dataSync()[0];
        const viaFnLabels = fn(int32, x).dataSync()[0];
        expect(viaTargets).toBe(direct);
        expect(viaTensor).toBe(direct);
        expect(viaFnLabels).toBe(direct);
        tf.dispose([x, targets, int32]);
      },
    );
  });

  it('leaves no tensor behind, computed or refused', () => {
    const before = tf.memory().numTensors;
    for (const row of table.rows) {
      const p = problem(row);
      for (const fn of [supConLoss, supConLossReference]) {
        try {
          runTf(fn, p);
        } catch (e) {
          expect(e, row.name).toBeInstanceOf(InvalidArgumentError);
        }
      }
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  describe.each(errorRows.map((r) => [r.name, r] as const))('error: %s', (_name, row) => {
    const p = problem(row);
    const gradientStage = (row.expect as { stage?: string }).stage === 'gradient';
    it('the typed-array API refuses it with a typed error naming the argument', () => {
      expectRefusal(() => runTyped(p, 'cpu'), row, 'typed');
    });
    it('the tfjs op and the pure-tfjs reference refuse it the same way', () => {
      for (const fn of [supConLoss, supConLossReference]) {
        if (gradientStage) {
          const { x, contrast } = tensorsOf(p);
          const l = fn(x, p.labels, { ...p.options, contrast }); // the forward alone is valid
          expect(Number.isFinite(l.dataSync()[0])).toBe(true);
          const before = tf.memory().numTensors;
          expectRefusal(() => tf.grad((t: tf.Tensor) => fn(t, p.labels, { ...p.options, contrast }) as tf.Scalar)(x), row, fn.name);
          expect(tf.memory().numTensors, 'nothing left behind').toBe(before);
          tf.dispose([x, l, contrast?.features ?? []]);
        } else {
          expectRefusal(() => runTf(fn, p), row, fn.name);
        }
      }
    });
  });
});
