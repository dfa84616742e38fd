/**
 * The fused ConvBatchNorm layer on the native path: against the plain tfjs layers (a sweep),
 * central finite differences, whole encoders built fused and plain, serialization (tf.io, the
 * checkpoint directory, fused <-> plain weights), leaks over 50 training steps, bad input.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useNativeKernels } from '../../src/kernels';
import { CONV_BATCH_NORM_KERNEL } from '../../src/kernels/conv_batch_norm';
import { ConvBatchNorm } from '../../src/models/layers';
import { createEncoder, type EncoderOptions } from '../../src/models/resnet';
import { loadNative } from '../../src/native';
import { loadWeightsInto, saveModel } from '../../src/train/checkpoint';
import { SgdMomentum } from '../../src/train/optimizers';
import { roundTrip, seededTensor } from './helpers';
import { checkCase, describeCase, expectNear, sweepCases } from './fused_sweep';
import { expectInvalidArgument } from '../helpers/errors';

const addon = loadNative();
const native = typeof addon?.convBatchNormForward === 'function';

beforeAll(async () => {
  await tf.setBackend('cpu');
  useNativeKernels();
});

describe.skipIf(!native)('ConvBatchNorm (native) against the plain tfjs layers', () => {
  const cases = sweepCases(40);
  it.each(cases.map((c, i) => [describeCase(c), c, i] as const))('%s', (_, c, i) => {
    const before = tf.memory().numTensors;
    checkCase(c, i + 1);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.skipIf(!native)('ConvBatchNorm gradients by finite differences', () => {
  it('matches central differences of its own forward (tiny case, float32 steps)', () => {
    // Smooth configuration (no ReLU kink), loss = sum(y * probe) + sum(y^2) / 2.
    const layer = new ConvBatchNorm({ filters: 3, kernelSize: 3, strides: 2, activation: 'linear', residual: true, epsilon: 1e-3 });
    const x = seededTensor([2, 5, 5, 2], 1);
    const shortcut = seededTensor([2, 3, 3, 3], 2);
    const probe = seededTensor([2, 3, 3, 3], 3);
    const loss = (xx: tf.Tensor, ss: tf.Tensor) =>
      tf.tidy(() => {
        const y = layer.apply([xx, ss], { training: true }) as tf.Tensor;
        return tf.add(tf.sum(tf.mul(y, probe)), tf.mul(tf.sum(tf.square(y)), 0.5)) as tf.Scalar;
      });
    tf.dispose(loss(x, shortcut));  // build
    const [dx, ds] = tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(a, b))([x, shortcut]);
    const numeric = (t: tf.Tensor, other: tf.Tensor, first: boolean) => {
      const values = t.dataSync().slice();
      const out = new Float32Array(values.length);
      const h = 1e-2;
      for (let i = 0; i < values.length; i++) {
        const at = (delta: number) => {
          const v = values.slice();
          v[i] += delta;
          const p = tf.tensor(v, t.shape);
          const l = first ? loss(p, other) : loss(other, p);
          const r = l.dataSync()[0];
          tf.dispose([p, l]);
          return r;
        };
        out[i] = (at(h) - at(-h)) / (2 * h);
      }
      return tf.tensor(out, t.shape);
    };
    const ndx = numeric(x, shortcut, true);
    const nds = numeric(shortcut, x, false);
    // float32 central differences of a quadratic-ish loss: O(h^2) + rounding ~1e-3 relative.
    expectNear(dx, ndx, 5e-3, 'dx');
    expectNear(ds, nds, 5e-3, 'dshortcut');
    tf.dispose([x, shortcut, probe, dx, ds, ndx, nds]);
    layer.dispose();
  });
});

describe.skipIf(!native)('fused encoders equal plain ones', () => {
  const archs: EncoderOptions[] = [
    { arch: 'resnet8', inputShape: [12, 12, 1], seed: 4 },
    { arch: 'resnet18', stem: 'imagenet', inputShape: [16, 16, 3], widthMultiplier: 0.125, seed: 5 },
    { arch: 'resnet50', inputShape: [16, 16, 3], widthMultiplier: 0.125, zeroInitResidual: true, seed: 6 },
  ];
  it.each(archs.map((o) => [o.arch, o] as const))('%s: same weights, outputs, gradients and moving statistics', (_, options) => {
    const fused = createEncoder({ ...options, fused: true });
    const plain = createEncoder({ ...options, fused: false });
    expect(fused.layers.some((l) => l instanceof ConvBatchNorm)).toBe(true);
    expect(plain.layers.some((l) => l instanceof ConvBatchNorm)).toBe(false);
    const names = (m: tf.LayersModel) => m.weights.map((w) => w.originalName).sort();
    expect(names(fused)).toEqual(names(plain));
    const plainByName = new Map(plain.weights.map((w) => [w.originalName, w]));
    for (const w of fused.weights) expectNear(w.read(), plainByName.get(w.originalName)!.read(), 0, `initial ${w.originalName}`);
    expect(fused.countParams()).toBe(plain.countParams());
    const x = seededTensor([3, ...options.inputShape], 7);
    const probe = seededTensor([3, fused.outputs[0].shape[1] as number], 8);
    for (const training of [true, false]) {
      const grad = (m: tf.LayersModel) =>
        tf.variableGrads(
          () => tf.sum(tf.mul(tf.square(m.apply(x, { training }) as tf.Tensor), probe)) as tf.Scalar,
          m.trainableWeights.map((w) => w.read() as tf.Variable),
        );
      const gf = grad(fused);
      const gp = grad(plain);
      expectNear(gf.value, gp.value, 1e-4, `loss (training ${training})`);
      for (const w of fused.trainableWeights) {
        const p = plainByName.get(w.originalName)!;
        expectNear(gf.grads[w.name], gp.grads[p.name], 2e-3, `d ${w.originalName} (training ${training})`);
      }
      tf.dispose([gf.value, gp.value, ...Object.values(gf.grads), ...Object.values(gp.grads)]);
    }
    for (const w of fused.nonTrainableWeights) expectNear(w.read(), plainByName.get(w.originalName)!.read(), 1e-5, w.originalName);
    tf.dispose([x, probe]);
    fused.dispose();
    plain.dispose();
  });
});

describe.skipIf(!native)('serialization', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'supcon-fused-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const options: EncoderOptions = { arch: 'resnet8', inputShape: [10, 10, 1], widthMultiplier: 0.5, seed: 11 };
  const trainOnce = (m: tf.LayersModel, x: tf.Tensor) => tf.tidy(() => void m.apply(x, { training: true }));

  it('tf.io round trip: tf.loadLayersModel rebuilds ConvBatchNorm layers with the same predictions', async () => {
    const model = createEncoder(options);
    const x = seededTensor([2, 10, 10, 1], 12);
    trainOnce(model, x);  // moving statistics off their initial values
    const { loaded, artifacts } = await roundTrip(model);
    expect(JSON.stringify(artifacts.modelTopology)).toContain('"class_name":"ConvBatchNorm"');
    expect(artifacts.weightSpecs!.map((w) => w.name)).toContain('stage2_block1_shortcut_bn/moving_variance');
    expect(loaded.layers.filter((l) => l instanceof ConvBatchNorm).length).toBe(9);
    const a = model.predict(x) as tf.Tensor;
    const b = loaded.predict(x) as tf.Tensor;
    expectNear(b, a, 0, 'loaded prediction');
    tf.dispose([x, a, b]);
    model.dispose();
    loaded.dispose();
  });

  it('weights move fused -> plain -> fused by name, through the checkpoint directory', async () => {
    const fused = createEncoder(options);
    const x = seededTensor([2, 10, 10, 1], 13);
    trainOnce(fused, x);
    await saveModel(fused, join(dir, 'fused'));
    const plain = createEncoder({ ...options, fused: false, seed: 99 });
    await loadWeightsInto(plain, join(dir, 'fused'));
    const a = fused.predict(x) as tf.Tensor;
    const b = plain.predict(x) as tf.Tensor;
    expectNear(b, a, 1e-5, 'plain with the fused weights');
    trainOnce(plain, x);
    await saveModel(plain, join(dir, 'plain'));
    const back = createEncoder({ ...options, seed: 98 });
    await loadWeightsInto(back, join(dir, 'plain'));
    const c = plain.predict(x) as tf.Tensor;
    const d = back.predict(x) as tf.Tensor;
    expectNear(d, c, 1e-5, 'fused with the plain weights');
    // And through tfjs's own loadWeights of a saved model's weight map.
    const { artifacts } = await roundTrip(fused);
    const named = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
    plain.loadWeights(named);
    const e = plain.predict(x) as tf.Tensor;
    expectNear(e, a, 1e-5, 'tfjs loadWeights of the fused weight map');
    tf.dispose([x, a, b, c, d, e, ...Object.values(named)]);
    for (const m of [fused, plain, back]) m.dispose();
  });
});

describe.skipIf(!native)('training steps', () => {
  it('50 SGD steps leak no tensors and no native memory; the loss goes down', () => {
    const encoder = createEncoder({ arch: 'resnet8', inputShape: [12, 12, 1], widthMultiplier: 0.5, seed: 21 });
    const head = tf.layers.dense({ units: 4, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) });
    const x = seededTensor([16, 12, 12, 1], 22);
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], 'int32'), 4);
    const optimizer = new SgdMomentum({ learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4 });
    const step = () => {
      const loss = optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy(labels, head.apply(encoder.apply(x, { training: true })) as tf.Tensor) as tf.Scalar,
        true,
      )!;
      const v = loss.dataSync()[0];
      loss.dispose();
      return v;
    };
    const first = step();
    step();
    const tensors = tf.memory().numTensors;
    const bytes = addon!.memoryStats().currentBytes;
    let last = first;
    for (let i = 0; i < 50; i++) last = step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(addon!.memoryStats().currentBytes).toBe(bytes);
    expect(last).toBeLessThan(first * 0.5);
    tf.dispose([x, labels]);
    optimizer.dispose();
    encoder.dispose();
    head.dispose();
  });

  it('runs as one kernel per unit (tf.profile), and inference without a tape equals inference under one', async () => {
    const encoder = createEncoder({ arch: 'resnet8', inputShape: [8, 8, 1], widthMultiplier: 0.25, seed: 23 });
    const x = seededTensor([2, 8, 8, 1], 24);
    const info = await tf.profile(() => tf.tidy(() => void encoder.apply(x, { training: true })));
    expect(info.kernelNames).toContain(CONV_BATCH_NORM_KERNEL);
    expect(info.kernelNames).not.toContain('Conv2D');
    expect(info.kernelNames).not.toContain('FusedBatchNorm');
    const plainPredict = encoder.predict(x) as tf.Tensor;
    let taped: tf.Tensor | null = null;
    const g = tf.grad((xx: tf.Tensor) => {
      const y = encoder.apply(xx, { training: false }) as tf.Tensor;
      taped = tf.keep(tf.clone(y));
      return tf.sum(y);
    })(x);
    expectNear(taped!, plainPredict, 0, 'inference under a gradient tape');
    tf.dispose([x, plainPredict, taped!, g]);
    encoder.dispose();
  });
});

describe('ConvBatchNorm: bad input', () => {
  it('names the bad argument', () => {
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 0, kernelSize: 3 }), 'args.filters');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 2.5 }), 'args.kernelSize');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 3, padding: 'causal' as never }), 'args.padding');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 3, activation: 'tanh' as never }), 'args.activation');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 3, momentum: 2 }), 'args.momentum');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 3, epsilon: 0 }), 'args.epsilon');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 3, kernelInitializer: 'bogus' as never }), 'args.kernelInitializer');
    expectInvalidArgument(() => new ConvBatchNorm({ filters: 4, kernelSize: 3, convName: '' }), 'args.convName');
    expectInvalidArgument(() => new ConvBatchNorm(null as never), 'args');
  });

  it('rejects a shortcut of the wrong shape, a missing shortcut and rank-3 input when built', () => {
    const withShortcut = new ConvBatchNorm({ name: 'cbn_bad_shortcut', filters: 4, kernelSize: 3, strides: 2, residual: true });
    const x = tf.input({ shape: [8, 8, 2] });
    const wrong = tf.input({ shape: [8, 8, 4] });
    expectInvalidArgument(() => withShortcut.apply([x, wrong]), 'cbn_bad_shortcut shortcut');
    expectInvalidArgument(() => withShortcut.apply(x), 'cbn_bad_shortcut inputs');
    const plain = new ConvBatchNorm({ name: 'cbn_rank3', filters: 4, kernelSize: 3 });
    expectInvalidArgument(() => plain.apply(tf.input({ shape: [8, 2] })), 'cbn_rank3 input');
  });

  it.skipIf(!native)('the native entry points refuse garbage with a typed error instead of crashing', () => {
    const g = {
      batch: 1, inHeight: 4, inWidth: 4, inChannels: 2, outHeight: 4, outWidth: 4, outChannels: 3,
      filterHeight: 3, filterWidth: 3, strideHeight: 1, strideWidth: 1, dilationHeight: 1, dilationWidth: 1, padTop: 1, padLeft: 1,
    };
    const f = (n: number) => new Float32Array(n);
    const good = {
      ...g, x: f(32), filter: f(54), gamma: f(3), beta: f(3), movingMean: f(3), movingVariance: f(3).fill(1), residual: null,
      relu: true, training: true, epsilon: 1e-3, momentum: 0.9, y: f(48), z: f(48), mean: f(3), variance: f(3),
      newMovingMean: f(3), newMovingVariance: f(3),
    };
    expect(() => addon!.convBatchNormForward(good)).not.toThrow();
    const bad: Array<[string, Record<string, unknown>]> = [
      ['short x', { x: f(31) }],
      ['gamma of the wrong length', { gamma: f(4) }],
      ['epsilon 0', { epsilon: 0 }],
      ['momentum NaN', { momentum: NaN }],
      ['negative batch', { batch: -1 }],
      ['a string for y', { y: 'y' }],
    ];
    for (const [what, patch] of bad) {
      let caught: unknown;
      try {
        addon!.convBatchNormForward({ ...good, ...patch } as never);
      } catch (e) {
        caught = e;
      }
      expect(caught, what).toBeInstanceOf(Error);
      expect((caught as { code?: string }).code, what).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    }
    let caught: unknown;
    try {
      addon!.convBatchNormBackward({ ...good, dy: f(48), dgamma: f(3), dbeta: f(3), dx: null, dfilter: null, dresidual: null, dz: f(47) } as never);
    } catch (e) {
      caught = e;
    }
    expect((caught as { code?: string }).code).toBe('ERR_SUPCON_INVALID_ARGUMENT');
  });
});
