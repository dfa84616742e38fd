// Issue 12's loss options through every TypeScript path, against the float64 reference
// (test/helpers/reference64.ts): multi-hot label sets, 'jaccard' positive weights, the paper's
// denominators ('all' | 'one-positive' | 'only-negatives') and the seeded positives cap, alone and
// crossed with the older options and with an extra contrast set (its rows' gradient included).
// Paths: the typed-array API (native CPU), the tfjs op (native) and the pure-tfjs reference (the
// fallback when the addon is missing).
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { supcon, supConLoss, supConLossReference, type LabelSets, type SupConOptions } from '../../src';
import { expectInvalidArgument } from '../helpers/errors';
import { gaussian, maxAbs, maxAbsDiff, ref64Options, reference64, testRng } from '../helpers/reference64';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

interface Case {
  batch: number;
  views: number;
  dim: number;
  extra: number;
  /** 'ids': class ids; 'sets': label sets of `labels` labels. */
  relation: 'ids' | 'sets';
  labels: number;
  options: SupConOptions;
  contrastGradient: boolean;
}

/** Random label sets (about 30% of the labels set; every 5th row empty). */
function randomSets(rng: () => number, rows: number, numLabels: number): LabelSets {
  const sets = new Uint8Array(rows * numLabels);
  for (let r = 0; r < rows; r++) {
    if (r % 5 === 4) continue;
    for (let c = 0; c < numLabels; c++) sets[r * numLabels + c] = rng() < 0.3 ? 1 : 0;
  }
  return { sets, numLabels };
}

function randomIds(rng: () => number, rows: number, classes: number): Int32Array {
  return Int32Array.from({ length: rows }, () => Math.floor(rng() * classes));
}

interface Built {
  features: Float32Array;
  shape: number[];
  labels: Int32Array | LabelSets;
  contrast?: { features: Float32Array; labels: Int32Array | LabelSets };
}

function build(c: Case, seed: number): Built {
  const rng = testRng(seed);
  const shape = c.views > 1 ? [c.batch, c.views, c.dim] : [c.batch, c.dim];
  const features = gaussian(rng, c.batch * c.views * c.dim);
  const labelsOf = (rows: number) => (c.relation === 'sets' ? randomSets(rng, rows, c.labels) : randomIds(rng, rows, c.labels));
  const labels = labelsOf(c.batch);
  const contrast = c.extra > 0 ? { features: gaussian(rng, c.extra * c.dim), labels: labelsOf(c.extra) } : undefined;
  return { features, shape, labels, contrast };
}

/** The sweep: every denominator x variant x relation, crossed with the other options in turn. */
function cases(): Case[] {
  const out: Case[] = [];
  const denominators = ['all', 'one-positive', 'only-negatives'] as const;
  const reductions = ['mean', 'sum', 'none'] as const;
  let k = 0;
  for (const denominator of denominators) {
    for (const variant of ['out', 'in'] as const) {
      for (const relation of ['ids', 'sets', 'jaccard', 'cap'] as const) {
        const views = k % 3 === 0 ? 1 : 2;
        const extra = k % 2 === 1 ? 3 + (k % 7) : 0;
        const options: SupConOptions = {
          denominator,
          variant,
          temperature: [0.07, 0.1, 0.5][k % 3],
          normalize: k % 4 !== 0,
          reduction: reductions[k % 3],
          contrastMode: views > 1 && k % 5 === 2 ? 'one' : 'all',
        };
        if (relation === 'jaccard') options.positiveWeighting = 'jaccard';
        if (relation === 'cap' || (relation === 'sets' && k % 2 === 0)) {
          options.positivesCap = views === 1 ? 1 + (k % 3) : views * (k % 3); // 0 with views: own views only
          options.positivesCapSeed = 17 * k;
        }
        out.push({
          batch: 7 + (k % 4),
          views,
          dim: 5 + (k % 3),
          extra,
          relation: relation === 'ids' || relation === 'cap' ? 'ids' : 'sets',
          labels: relation === 'ids' || relation === 'cap' ? 3 : 4,
          options,
          contrastGradient: extra > 0 && k % 4 === 1,
        });
        k++;
      }
    }
  }
  return out;
}

function describeCase(c: Case): string {
  return `B=${c.batch} V=${c.views} D=${c.dim} M=${c.extra} ${c.relation} ${JSON.stringify(c.options)}${c.contrastGradient ? ' contrast.gradient' : ''}`;
}

/** Within docs/loss.md's tolerances (`rel` 1 for the native paths, 10 for the pure-tfjs reference). */
function expectClose(
  got: { loss: number; perAnchor?: ArrayLike<number>; grad: ArrayLike<number>; contrastGrad?: ArrayLike<number> | null },
  ref: ReturnType<typeof reference64>,
  rel: number,
  what: string,
) {
  expect(Number.isFinite(got.loss), what).toBe(true);
  expect(Math.abs(got.loss - ref.loss), `${what}: loss ${got.loss} vs ${ref.loss}`).toBeLessThanOrEqual(1e-5 * rel * Math.max(1, Math.abs(ref.loss)));
  if (got.perAnchor) {
    expect(maxAbsDiff(got.perAnchor, ref.perAnchor), `${what}: per-anchor`).toBeLessThanOrEqual(1e-5 * rel * Math.max(1, maxAbs(ref.perAnchor)));
  }
  const scale = Math.max(maxAbs(ref.grad), got.contrastGrad ? maxAbs(ref.contrastGrad) : 0);
  expect(maxAbsDiff(got.grad, ref.grad), `${what}: gradient (max ${scale})`).toBeLessThanOrEqual(1e-4 * rel * scale + 1e-7);
  if (got.contrastGrad) {
    expect(maxAbsDiff(got.contrastGrad, ref.contrastGrad), `${what}: contrast rows' gradient`).toBeLessThanOrEqual(1e-4 * rel * scale + 1e-7);
  }
}

/** Upstream gradient of 'none' (a fixed vector), 1 otherwise. */
function upstreamOf(c: Case, anchors: number): Float32Array {
  if (c.options.reduction !== 'none') return Float32Array.of(1);
  return Float32Array.from({ length: anchors }, (_, a) => 0.5 + ((a * 7) % 5) / 4);
}

/** The tfjs op (or the reference) differentiated w.r.t. the features (and the contrast rows). */
function runTf(fn: typeof supConLoss, b: Built, c: Case) {
  const x = tf.tensor(b.features, b.shape, 'float32');
  const e = b.contrast ? tf.tensor2d(b.contrast.features, [c.extra, c.dim]) : null;
  try {
    const f = (xs: tf.Tensor, es?: tf.Tensor) => {
      const contrast = b.contrast ? { features: es ?? e!, labels: b.contrast.labels, gradient: c.contrastGradient } : undefined;
      const l = fn(xs, b.labels, { ...c.options, contrast });
      if (c.options.reduction !== 'none') return l as tf.Scalar;
      const up = upstreamOf(c, l.size);
      return tf.sum(tf.mul(l, tf.tensor1d(up))) as tf.Scalar;
    };
    const per = fn(x, b.labels, { ...c.options, contrast: b.contrast ? { features: e!, labels: b.contrast.labels } : undefined });
    const perAnchor = c.options.reduction === 'none' ? Float32Array.from(per.dataSync()) : undefined;
    const loss = c.options.reduction === 'none' ? perAnchor!.reduce((a, v) => a + v, 0) : per.dataSync()[0];
    per.dispose();
    if (c.contrastGradient) {
      const [gx, ge] = tf.grads((xs: tf.Tensor, es: tf.Tensor) => f(xs, es))([x, e!]);
      const out = { loss, perAnchor, grad: Float32Array.from(gx.dataSync()), contrastGrad: Float32Array.from(ge.dataSync()) };
      tf.dispose([gx, ge]);
      return out;
    }
    const g = tf.grad((xs: tf.Tensor) => f(xs))(x);
    const out = { loss, perAnchor, grad: Float32Array.from(g.dataSync()) };
    g.dispose();
    return out;
  } finally {
    tf.dispose([x, e ?? []]);
  }
}

describe("issue 12's options against the float64 reference", () => {
  const all = cases();

  it('the sweep covers every denominator, variant, relation, the cap, extra rows and their gradient', () => {
    expect(all.length).toBe(24);
    expect(all.filter((c) => c.contrastGradient).length).toBeGreaterThan(2);
    expect(all.filter((c) => c.options.positivesCap !== undefined).length).toBeGreaterThan(5);
  });

  it.each(all.map((c, i) => [describeCase(c), c, i] as const))('%s', (what, c, i) => {
    const b = build(c, 100 + i);
    const anchors = c.options.contrastMode === 'one' ? c.batch : c.batch * c.views;
    const up = upstreamOf(c, anchors);
    const ref = reference64(
      { features: b.features, shape: b.shape, labels: b.labels, contrast: b.contrast },
      ref64Options(c.options),
      c.options.reduction === 'none' ? up : undefined,
    );
    const refNoUpstream = c.options.reduction === 'none' ? reference64({ ...b }, ref64Options(c.options)) : ref;
    // The options matter: some anchor has a loss and the gradient is not zero.
    expect(ref.validAnchors, `${what}: anchors with a loss`).toBeGreaterThan(0);
    expect(maxAbs(ref.grad)).toBeGreaterThan(0);

    // Typed-array API (native CPU): upstream 1 everywhere.
    const typed = supcon.forwardBackward({
      features: b.features,
      shape: b.shape,
      labels: b.labels,
      contrast: b.contrast ? { ...b.contrast, gradient: c.contrastGradient } : undefined,
      ...c.options,
      device: 'cpu',
    });
    expect(typed.validAnchors, what).toBe(ref.validAnchors);
    expectClose({ ...typed, grad: typed.grad!, contrastGrad: c.contrastGradient ? typed.contrastGrad : null }, refNoUpstream, 1, `${what}: typed`);

    // The tfjs op (native) and the pure-tfjs reference, with tfjs's upstream for 'none'.
    expectClose(runTf(supConLoss, b, c), ref, 1, `${what}: supConLoss`);
    expectClose(runTf(supConLossReference, b, c), ref, 10, `${what}: supConLossReference`);
  });
});

describe('label sets', () => {
  it('mean the same as a [B, C] tensor (int32, float32, bool), rows of 0/1 and a LabelSets object', () => {
    const rng = testRng(5);
    const x = tf.tensor3d(gaussian(rng, 6 * 2 * 4), [6, 2, 4]);
    const rows = [
      [1, 0, 0, 1],
      [0, 1, 0, 0],
      [1, 1, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 1, 1],
      [0, 1, 1, 0],
    ];
    const sets: LabelSets = { sets: Uint8Array.from(rows.flat()), numLabels: 4 };
    const opts = { normalize: true, positiveWeighting: 'jaccard' as const };
    const want = supConLoss(x, sets, opts).dataSync()[0];
    for (const dtype of ['int32', 'float32', 'bool'] as const) {
      const t = tf.tensor2d(rows, [6, 4], dtype);
      expect(supConLoss(x, t, opts).dataSync()[0], dtype).toBe(want);
      t.dispose();
    }
    expect(supConLoss(x, rows, opts).dataSync()[0]).toBe(want);
    // One-hot label sets are class ids: the same loss, and Jaccard weights of 1.
    const ids = Int32Array.from([2, 0, 1, 1, 3, 0]);
    const oneHot = rows.map((_, r) => [0, 1, 2, 3].map((c) => (c === ids[r] ? 1 : 0)));
    const a = supConLoss(x, oneHot, opts).dataSync()[0];
    const b2 = supConLoss(x, ids, { normalize: true }).dataSync()[0];
    expect(Math.abs(a - b2)).toBeLessThan(1e-6 * Math.abs(b2));
    x.dispose();
  });

  it('count an anchor without a label as having no loss (validAnchors)', () => {
    const rng = testRng(6);
    const r = supcon.forwardBackward({
      features: gaussian(rng, 4 * 2 * 3),
      shape: [4, 2, 3],
      labels: { sets: Uint8Array.from([1, 0, 0, 0, 0, 1, 0, 0]), numLabels: 2 },
    });
    // Samples 1 and 3 have empty sets: their 4 anchors have no positive; the other 4 anchors have one.
    expect(r.validAnchors).toBe(4);
    expect(r.perAnchor[1]).toBe(0);
    expect(r.perAnchor[5]).toBe(0);
  });

  it('with the positives cap: the seed picks which positives stay, the order is reproducible', () => {
    const rng = testRng(7);
    const features = gaussian(rng, 12 * 2 * 5);
    const labels = new Int32Array(12); // one class: every other sample is a positive
    const run = (seed: number) =>
      supcon.forwardBackward({ features, shape: [12, 2, 5], labels, positivesCap: 4, positivesCapSeed: seed, normalize: true }).loss;
    expect(run(1)).toBe(run(1));
    expect(run(1)).not.toBe(run(2));
    const uncapped = supcon.forwardBackward({ features, shape: [12, 2, 5], labels, normalize: true }).loss;
    expect(supcon.forwardBackward({ features, shape: [12, 2, 5], labels, positivesCap: 22, normalize: true }).loss).toBeCloseTo(uncapped, 6);
  });
});

describe('bad options and label sets are typed errors naming the argument', () => {
  const rng = testRng(8);
  const features = gaussian(rng, 4 * 2 * 3);
  const base = { features, shape: [4, 2, 3], labels: Int32Array.from([0, 1, 0, 1]) };
  const x = tf.tensor3d(features, [4, 2, 3]);
  const cases: Array<[string, () => unknown, string, RegExp]> = [
    ['denominator', () => supcon.forwardBackward({ ...base, denominator: 'some' as never }), 'input.denominator', /'all', 'one-positive', 'only-negatives'/],
    ['positiveWeighting', () => supConLoss(x, [0, 1, 0, 1], { positiveWeighting: 'dice' as never }), 'options.positiveWeighting', /'none', 'jaccard'/],
    ['positivesCap, negative', () => supcon.forwardBackward({ ...base, positivesCap: -1 }), 'input.positivesCap', /-1/],
    ['positivesCap, fractional', () => supcon.forwardBackward({ ...base, positivesCap: 2.5 }), 'input.positivesCap', /2\.5/],
    ['positivesCap, not whole samples', () => supConLoss(x, [0, 1, 0, 1], { positivesCap: 3 }), 'options.positivesCap', /multiple of the 2 views/],
    ['positivesCapSeed', () => supConLoss(x, [0, 1, 0, 1], { positivesCapSeed: 2 ** 32 }), 'options.positivesCapSeed', /4294967296/],
    [
      'label sets not 0/1',
      () => supcon.forwardBackward({ ...base, labels: { sets: Uint8Array.from([1, 0, 2, 0, 0, 1, 1, 1]), numLabels: 2 } }),
      'labels.sets',
      /0 or 1.*2 at index 2/,
    ],
    ['label sets of the wrong length', () => supcon.forwardBackward({ ...base, labels: { sets: new Uint8Array(7), numLabels: 2 } }), 'labels.sets', /length 8/],
    ['a tensor of label sets, wrong rows', () => supConLoss(x, tf.ones([3, 2], 'int32'), {}), 'labels', /\[4, C\]/],
    ['rows of label sets of unequal width', () => supConLoss(x, [[1, 0], [0, 1], [1], [0, 1]], {}), 'labels', /row 2 of 1/],
    [
      'a contrast set of class ids beside label sets',
      () =>
        supcon.forwardBackward({
          ...base,
          labels: { sets: Uint8Array.from([1, 0, 0, 1, 1, 0, 0, 1]), numLabels: 2 },
          contrast: { features: new Float32Array(6), labels: Int32Array.from([0, 1]) },
        }),
      'contrast.labels',
      /label sets of 2 rows of 2 labels.*class ids/,
    ],
    [
      'contrast label sets of another width',
      () =>
        supConLoss(x, [[1, 0], [0, 1], [1, 1], [0, 1]], {
          contrast: { features: tf.zeros([2, 3]), labels: [[1, 0, 0], [0, 1, 0]] },
        }),
      'options.contrast.labels',
      /2 labels/,
    ],
  ];
  it.each(cases)('%s', (_name, fn, argument, pattern) => {
    const err = expectInvalidArgument(fn, argument);
    expect(err.message).toMatch(pattern);
    expect(err.message).toMatch(/^Expected .+ for .+ but received .+/);
  });
});
