// supConLoss (the tfjs op) inside training: gradients equal the pure-tfjs reference's, no
// tensor leaks, Keras-style fit, and the fallback when the addon is missing.
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, supcon, supConLoss, supConLossFn, supConLossReference, supConTargets } from '../../src';
import { gaussian, maxAbs, maxAbsDiff, reference64, testRng } from '../helpers/reference64';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('supConLoss as a tfjs op', () => {
  const rng = testRng(42);

  it('matches the float64 reference and the tfjs reference in value and gradient for every option', () => {
    const x = tf.tensor3d(gaussian(rng, 12 * 2 * 10), [12, 2, 10]);
    const labels = tf.tensor1d([0, 1, 2, 0, 1, 2, 3, 3, 0, 1, 4, 5], 'int32');
    const extra = tf.tensor2d(gaussian(rng, 7 * 10), [7, 10]);
    const extraLabels = tf.tensor1d([0, 1, 2, 3, 9, 9, 1], 'int32');
    const variants = [
      { normalize: true },
      { normalize: true, variant: 'in' as const },
      { normalize: true, contrastMode: 'one' as const, temperature: 0.5 },
      { normalize: true, reduction: 'sum' as const, baseTemperature: 0.07 },
      { normalize: true, contrast: { features: extra, labels: extraLabels } },
    ];
    for (const opts of variants) {
      const value = supConLoss(x, labels, opts);
      const ref = supConLossReference(x, labels, opts);
      const gNative = tf.grad((f: tf.Tensor) => supConLoss(f, labels, opts))(x);
      const gRef = tf.grad((f: tf.Tensor) => supConLossReference(f, labels, opts))(x);
      const r64 = reference64(
        {
          features: x.dataSync(),
          shape: x.shape,
          labels: labels.dataSync(),
          contrast: opts.contrast ? { features: extra.dataSync(), labels: extraLabels.dataSync() } : undefined,
        },
        {
          temperature: opts.temperature ?? 0.1,
          baseTemperature: opts.baseTemperature ?? opts.temperature ?? 0.1,
          variant: opts.variant ?? 'out',
          contrastMode: opts.contrastMode ?? 'all',
          normalize: true,
          reduction: opts.reduction ?? 'mean',
        },
      );
      const what = JSON.stringify({ ...opts, contrast: !!opts.contrast });
      expect(Math.abs(value.dataSync()[0] - r64.loss), what).toBeLessThan(1e-5 * Math.max(1, r64.loss));
      expect(Math.abs(ref.dataSync()[0] - r64.loss), what).toBeLessThan(1e-4 * Math.max(1, r64.loss));
      expect(maxAbsDiff(gNative.dataSync(), r64.grad), what).toBeLessThan(1e-4 * maxAbs(r64.grad));
      expect(maxAbsDiff(gRef.dataSync(), gNative.dataSync()), what).toBeLessThan(1e-3 * maxAbs(r64.grad));
      tf.dispose([value, ref, gNative, gRef]);
    }
    tf.dispose([x, labels, extra, extraLabels]);
  });

  it('gives the contrast rows their gradient when asked (contrast.gradient), on the native and the reference path', () => {
    const x = tf.tensor3d(gaussian(rng, 9 * 2 * 6), [9, 2, 6]);
    const labels = tf.tensor1d([0, 1, 2, 0, 1, 2, 3, 3, 0], 'int32');
    const extra = tf.tensor2d(gaussian(rng, 11 * 6), [11, 6]);
    const extraLabels = tf.tensor1d([0, 1, 2, 3, 9, 9, 1, 0, 0, 2, 5], 'int32');
    const cases = [
      { normalize: true },
      { normalize: true, variant: 'in' as const, reduction: 'sum' as const },
      { normalize: true, contrastMode: 'one' as const, temperature: 0.5 },
      { normalize: true, simclr: true },
    ];
    for (const c of cases) {
      const { simclr, ...loss } = c as typeof c & { simclr?: boolean };
      const lab = simclr ? null : labels;
      const contrast = { features: extra, labels: simclr ? null : extraLabels, gradient: true };
      const opts = { ...loss, contrast };
      const [gx, gc] = tf.grads((f: tf.Tensor, e: tf.Tensor) => supConLoss(f, lab, { ...opts, contrast: { ...contrast, features: e } }))([x, extra]);
      const [rx, rc] = tf.grads((f: tf.Tensor, e: tf.Tensor) => supConLossReference(f, lab, { ...opts, contrast: { ...contrast, features: e } }))([x, extra]);
      const r64 = reference64(
        {
          features: x.dataSync(),
          shape: x.shape,
          labels: lab?.dataSync() ?? null,
          contrast: { features: extra.dataSync(), labels: simclr ? null : extraLabels.dataSync() },
        },
        {
          temperature: loss.temperature ?? 0.1,
          baseTemperature: loss.temperature ?? 0.1,
          variant: loss.variant ?? 'out',
          contrastMode: loss.contrastMode ?? 'all',
          normalize: true,
          reduction: loss.reduction ?? 'mean',
        },
      );
      const what = JSON.stringify(c);
      const scale = Math.max(maxAbs(r64.grad), maxAbs(r64.contrastGrad));
      expect(maxAbs(r64.contrastGrad), what).toBeGreaterThan(0.01 * scale);
      expect(maxAbsDiff(gx.dataSync(), r64.grad), what).toBeLessThan(1e-4 * scale);
      expect(maxAbsDiff(gc.dataSync(), r64.contrastGrad), what).toBeLessThan(1e-4 * scale);
      expect(maxAbsDiff(rx.dataSync(), r64.grad), what).toBeLessThan(1e-3 * scale);
      expect(maxAbsDiff(rc.dataSync(), r64.contrastGrad), what).toBeLessThan(1e-3 * scale);
      // The typed-array API gives the same rows' gradient.
      const typed = supcon.forwardBackward({
        features: x.dataSync() as Float32Array,
        shape: x.shape,
        labels: lab ? (lab.dataSync() as Int32Array) : null,
        contrast: { features: extra.dataSync() as Float32Array, labels: simclr ? null : (extraLabels.dataSync() as Int32Array), gradient: true },
        ...loss,
      });
      expect(maxAbsDiff(typed.contrastGrad!, gc.dataSync()), what).toBeLessThan(1e-6 * scale);
      expect(supcon.forwardBackward({ features: x.dataSync() as Float32Array, shape: x.shape, contrast: { features: extra.dataSync() as Float32Array }, ...loss }).contrastGrad).toBeNull();
      tf.dispose([gx, gc, rx, rc]);
    }
    // Without the flag the contrast rows get no gradient on either path (a memory queue): tfjs
    // finds no path to them.
    for (const fn of [supConLoss, supConLossReference]) {
      expect(() =>
        tf.grads((f: tf.Tensor, e: tf.Tensor) => fn(f, labels, { normalize: true, contrast: { features: e, labels: extraLabels } }))([x, extra]),
      ).toThrow(/Cannot compute gradient/);
    }
    expect(() => supConLoss(x, labels, { contrast: { features: extra, labels: extraLabels, gradient: 1 as never } })).toThrow(
      /Expected boolean for options\.contrast\.gradient but received 1/,
    );
    tf.dispose([x, labels, extra, extraLabels]);
  });

  it("returns per-anchor losses with reduction 'none' and backpropagates their upstream weights", () => {
    const x = tf.tensor2d(gaussian(rng, 16 * 6), [16, 6]);
    const labels = tf.tensor1d([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3, 4, 4, 5, 6], 'int32');
    const w = tf.tensor1d(Array.from({ length: 16 }, (_, i) => (i % 3) - 0.5));
    const per = supConLoss(x, labels, { reduction: 'none', normalize: true });
    expect(per.shape).toEqual([16]);
    const perRef = supConLossReference(x, labels, { reduction: 'none', normalize: true });
    expect(maxAbsDiff(per.dataSync(), perRef.dataSync())).toBeLessThan(1e-4);
    const g = tf.grad((f: tf.Tensor) => tf.sum(tf.mul(supConLoss(f, labels, { reduction: 'none', normalize: true }), w)))(x);
    const gRef = tf.grad((f: tf.Tensor) => tf.sum(tf.mul(supConLossReference(f, labels, { reduction: 'none', normalize: true }), w)))(x);
    expect(maxAbsDiff(g.dataSync(), gRef.dataSync())).toBeLessThan(1e-4 * maxAbs(gRef.dataSync()));
    tf.dispose([x, labels, w, per, perRef, g, gRef]);
  });

  it('gives tf.variableGrads the same gradients as the reference and leaks no tensors over 100 optimizer steps', () => {
    const proj = tf.variable(tf.tensor2d(gaussian(rng, 20 * 8, 0.3), [20, 8]), true, 'proj');
    const inputs = tf.tensor2d(gaussian(rng, 32 * 20), [32, 20]);
    const labels = tf.tensor1d(Array.from({ length: 32 }, (_, i) => i % 4), 'int32');
    const lossOf = (fn: typeof supConLoss) => () => fn(tf.matMul(inputs, proj), labels, { normalize: true }) as tf.Scalar;
    const a = tf.variableGrads(lossOf(supConLoss), [proj]);
    const b = tf.variableGrads(lossOf(supConLossReference), [proj]);
    expect(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0])).toBeLessThan(1e-4);
    expect(maxAbsDiff(a.grads.proj.dataSync(), b.grads.proj.dataSync())).toBeLessThan(1e-4 * maxAbs(b.grads.proj.dataSync()));
    tf.dispose([a.value, b.value, a.grads.proj, b.grads.proj]);

    const optimizer = tf.train.sgd(0.5);
    const first = (optimizer.minimize(lossOf(supConLoss), true) as tf.Scalar);
    const firstLoss = first.dataSync()[0];
    first.dispose();
    const tensorsBefore = tf.memory().numTensors;
    let last = 0;
    for (let step = 0; step < 100; step++) {
      const l = optimizer.minimize(lossOf(supConLoss), true) as tf.Scalar;
      last = l.dataSync()[0];
      l.dispose();
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(last).toBeLessThan(firstLoss); // it trains
    optimizer.dispose();
    tf.dispose([proj, inputs, labels]);
  });

  it('works as a Keras loss in model.fit with labels as targets', async () => {
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [12], units: 16, activation: 'relu' }), tf.layers.dense({ units: 8 })],
    });
    model.compile({ optimizer: tf.train.adam(0.01), loss: supConLossFn({ normalize: true, temperature: 0.2 }) });
    const r = testRng(5);
    const n = 64;
    const ys = Array.from({ length: n }, (_, i) => i % 4);
    // Class-dependent inputs so the embedding can separate them.
    const xs = tf.tensor2d(Array.from({ length: n * 12 }, (_, k) => (Math.floor(k / 12) % 4 === k % 4 ? 2 : 0) + r() - 0.5), [n, 12]);
    const targets = supConTargets(ys, 8);
    const history = await model.fit(xs, targets, { epochs: 15, batchSize: 32, shuffle: false, verbose: 0 });
    const losses = history.history.loss as number[];
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] - 0.1);
    // The loss fit reports equals the op on the same batch, and plain [B] labels work too.
    const fn = supConLossFn({ normalize: true, temperature: 0.2 });
    const emb = model.predict(xs.slice([0, 0], [32, 12])) as tf.Tensor;
    const viaFn = fn(tf.tensor1d(ys.slice(0, 32)), emb).dataSync()[0];
    const viaTargets = fn(targets.slice([0, 0], [32, 8]), emb).dataSync()[0];
    const direct = supConLoss(emb, ys.slice(0, 32), { normalize: true, temperature: 0.2 }).dataSync()[0];
    expect(viaFn).toBeCloseTo(direct, 6);
    expect(viaTargets).toBeCloseTo(direct, 6);
    expect(() => fn(tf.tensor2d([[1, 2], [3, 3]]), tf.ones([2, 2]))).toThrow(/yTrue/);
    model.dispose();
    tf.dispose([xs, targets, emb]);
  });
});

describe('supConLossFn in model.fit (issue 9, item 6)', () => {
  /** Warnings emitted while `fn` runs, by code. */
  async function warningsDuring(fn: () => Promise<unknown>): Promise<string[]> {
    const codes: string[] = [];
    const listener = (w: Error & { code?: string }) => codes.push(w.code ?? '');
    process.on('warning', listener);
    try {
      await fn();
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', listener);
    }
    return codes;
  }

  it('trains a model whose output is [B, V, D] with targets of that shape', async () => {
    const views = 2;
    const dim = 4;
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [6], units: views * dim }), tf.layers.reshape({ targetShape: [views, dim] })],
    });
    model.compile({ optimizer: tf.train.adam(0.05), loss: supConLossFn({ normalize: true, temperature: 0.5 }) });
    const r = testRng(11);
    const n = 24;
    const ys = Array.from({ length: n }, (_, i) => (i % 3) + 2 ** 24); // ids float32 cannot tell apart
    const xs = tf.tensor2d(Array.from({ length: n * 6 }, (_, k) => (Math.floor(k / 6) % 3 === k % 3 ? 1 : 0) + 0.3 * r()), [n, 6]);
    const targets = supConTargets(ys, [views, dim]);
    expect(targets.shape).toEqual([n, views, dim]);
    expect(targets.dtype).toBe('int32');
    const history = await model.fit(xs, targets, { epochs: 8, batchSize: 8, shuffle: false, verbose: 0 });
    const losses = history.history.loss as number[];
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    // The loss fit computes is the op's on the same batch.
    const emb = model.predict(xs.slice([0, 0], [8, 6])) as tf.Tensor;
    const viaFn = supConLossFn({ normalize: true, temperature: 0.5 })(targets.slice([0, 0, 0], [8, views, dim]), emb);
    const direct = supConLoss(emb, ys.slice(0, 8), { normalize: true, temperature: 0.5 });
    expect(viaFn.dataSync()[0]).toBe(direct.dataSync()[0]);
    model.dispose();
    tf.dispose([xs, targets, emb, viaFn, direct]);
  });

  it('finishes an epoch whose last batch has one sample (no positive), reporting it once', async () => {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [5], units: 3 })] });
    const fn = supConLossFn({ normalize: true });
    model.compile({ optimizer: tf.train.sgd(0.1), loss: fn });
    const xs = tf.tensor2d(gaussian(testRng(12), 7 * 5), [7, 5]);
    const targets = supConTargets([0, 1, 0, 1, 0, 1, 2], 3);
    let history: tf.History | undefined;
    const codes = await warningsDuring(async () => {
      history = await model.fit(xs, targets, { epochs: 2, batchSize: 3, shuffle: false, verbose: 0 });
    });
    expect((history!.history.loss as number[]).every(Number.isFinite)).toBe(true);
    expect(codes.filter((c) => c === 'SUPCON_NO_POSITIVES')).toEqual(['SUPCON_NO_POSITIVES']);
    // Such a batch contributes exactly 0 with a zero gradient that reaches the predictions.
    const y = tf.tensor2d([[1, 2, 3]]);
    const g = tf.grad((p: tf.Tensor) => fn(tf.tensor1d([5], 'int32'), p))(y);
    expect(fn(tf.tensor1d([5], 'int32'), y).dataSync()[0]).toBe(0);
    expect(Array.from(g.dataSync())).toEqual([0, 0, 0]);
    model.dispose();
    tf.dispose([xs, targets, y, g]);
  });

  it('refuses targets that disagree within a sample or in count, and float32 ids beyond 2^24', () => {
    const fn = supConLossFn();
    const x = tf.ones([2, 2]);
    expect(() => fn(tf.tensor2d([[1, 2], [3, 3]]), x)).toThrow(/yTrue.*samples with differing values|samples with differing values/);
    expect(() => fn(tf.tensor1d([1, 2, 3]), x)).toThrow(InvalidArgumentError);
    expect(() => fn(tf.tensor1d([2 ** 24 + 2, 1]), x)).toThrow(/2\^24/);
    tf.dispose(x);
  });
});

describe('zero-copy on the cpu backend', () => {
  it('hands the addon the backend storage itself (dataSync returns it, no copy)', () => {
    const x = tf.tensor2d(gaussian(testRng(1), 8 * 4), [8, 4]);
    const backend = tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } };
    expect(x.dataSync()).toBe(backend.data.get(x.dataId).values);
    x.dispose();
  });
});

describe('fallback without the addon', () => {
  it('uses the reference with a one-time warning when the addon cannot load', () => {
    const script = `
      const tf = require('@tensorflow/tfjs');
      const { supConLoss, supConLossReference } = require(${JSON.stringify(join(__dirname, '../../src/index.ts'))});
      tf.setBackend('cpu').then(() => {
        const warnings = [];
        process.on('warning', (w) => warnings.push(w.code));
        const x = tf.tensor2d([[1, 0], [0.9, 0.1], [0, 1], [0.2, 0.8]]);
        const y = tf.tensor1d([0, 0, 1, 1], 'int32');
        const a = supConLoss(x, y).dataSync()[0];
        supConLoss(x, y);
        const b = supConLossReference(x, y).dataSync()[0];
        setImmediate(() => console.log(JSON.stringify({ a, b, warnings })));
      });`;
    const out = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      env: { ...process.env, SUPCON_DISABLE_NATIVE: '1' },
      encoding: 'utf8',
    });
    expect(out.status, out.stderr).toBe(0);
    const lines = out.stdout.trim().split('\n');
    const res = JSON.parse(lines[lines.length - 1]);
    expect(res.a).toBeCloseTo(res.b, 6);
    expect(res.warnings).toEqual(['SUPCON_NO_ADDON']);
  });
});
