/**
 * Native elementwise, reduction, Tile and FusedBatchNorm kernels against tfjs's JS kernels:
 * every broadcast pattern a ResNet step uses (same shape, per channel, scalar, global-pool
 * gradient) and general ones, reductions over every axis subset with keepDims, NaN handling,
 * and the JS fallback for int32 data.
 * Tolerance: 1e-6 (1 + max|js|) for elementwise ops (bitwise equal in practice), 1e-5 for
 * reductions (double accumulation natively, double in tfjs too, in another order).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreKernels, useNativeKernels } from '../../src/kernels';
import { expectClose, jsAndNative, nativeAvailable, uniform } from './helpers';

describe.skipIf(!nativeAvailable)('native elementwise kernels vs tfjs JS kernels', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    useNativeKernels();
  });
  afterAll(() => {
    restoreKernels();
  });

  const shapePairs: Array<[number[], number[]]> = [
    [[4, 5, 6, 7], [4, 5, 6, 7]],
    [[4, 5, 6, 7], [7]],
    [[1, 1, 1, 7], [4, 5, 6, 7]],
    [[4, 5, 6, 7], []],
    [[], [3, 2]],
    [[4, 1, 1, 7], [4, 5, 6, 7]],
    [[4, 5, 1, 7], [1, 5, 6, 1]],
    [[3, 1], [1, 3]],
    [[64, 40, 33], [40, 1]],  // large enough for the threaded path
  ];
  const binaryOps: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
    ['add', tf.add],
    ['sub', tf.sub],
    ['mul', tf.mul],
    ['div', tf.div],
    ['squaredDifference', tf.squaredDifference],
    ['maximum', tf.maximum],
    ['minimum', tf.minimum],
  ];

  it('binary ops over broadcast patterns', () => {
    shapePairs.forEach(([sa, sb], i) => {
      for (const [name, op] of binaryOps) {
        const { js, native } = jsAndNative(() => op(uniform(sa, i), tf.add(uniform(sb, i + 50), 1.5)));
        expectClose(native[0], js[0], 1e-6, `${name} ${JSON.stringify(sa)} x ${JSON.stringify(sb)}`);
      }
    });
  });

  it('unary ops, with NaN and the relu gradient (Step)', () => {
    const { js, native } = jsAndNative(() => {
      const x = tf.concat([tf.mul(uniform([5000], 1), 8), tf.tensor1d([NaN, 0, -0, 6, 7])]);
      const pos = tf.add(tf.abs(x), 0.5);
      const reluGrad = tf.grad((v: tf.Tensor) => tf.sum(tf.relu(v)))(x);
      return [tf.relu(x), tf.relu6(x), tf.square(x), tf.neg(x), tf.abs(x), tf.sqrt(pos), tf.rsqrt(pos), tf.step(x, 0.3), reluGrad];
    });
    native.forEach((n, i) => expectClose(n, js[i], 1e-6, `unary #${i}`));
  });

  it('Sum and Mean over every axis subset, with and without keepDims', () => {
    const shape = [3, 4, 5, 6];
    for (let mask = 0; mask < 16; ++mask) {
      const axes = [0, 1, 2, 3].filter((a) => (mask >> a) & 1);
      for (const keepDims of [false, true]) {
        const { js, native } = jsAndNative(() => {
          const x = uniform(shape, mask);
          const s = tf.sum(x, axes, keepDims);
          const m = tf.mean(x, axes, keepDims);
          return [s, m, tf.reshape(s, [-1]).shape.length === 1 ? tf.tensor1d(s.shape) : s];
        });
        expectClose(native[0], js[0], 1e-5, `sum axes ${axes} keepDims ${keepDims}`);
        expectClose(native[1], js[1], 1e-5, `mean axes ${axes} keepDims ${keepDims}`);
        expect(Array.from(native[2]), 'output shape').toEqual(Array.from(js[2]));
      }
    }
    const { js, native } = jsAndNative(() => [tf.sum(uniform([128, 14, 14, 32], 3), [0, 1, 2]), tf.mean(uniform([64, 7, 7, 9], 4), [1, 2])]);
    expectClose(native[0], js[0], 1e-5, 'batch-norm statistics shape');
    expectClose(native[1], js[1], 1e-5, 'global average pooling shape');
  });

  it('Sum and Mean give what tfjs gives for any axis list: repeated, negative, unsorted (issue 9, item 7)', () => {
    // The results must not depend on whether the native kernels are on, whatever tfjs makes of
    // an unusual axis list (tf.sum(x, [1, 1]) on [3, 4] sums everything in tfjs 4, and throws
    // with keepDims): the same values and shapes, or the same error.
    const cases: Array<[number[], number[]]> = [
      [[3, 4], [1, 1]],
      [[3, 4], [0, 0]],
      [[2, 3, 4], [2, 2, 0]],
      [[2, 3, 4], [-1, 2]],
      [[2, 3, 4], [2, 0]],
      [[2, 3, 4], [-3, 1]],
    ];
    const outcome = (fn: () => tf.Tensor) => {
      try {
        const t = tf.tidy(fn);
        const r = { shape: t.shape, values: Float32Array.from(t.dataSync()) };
        t.dispose();
        return r;
      } catch (e) {
        return { error: (e as Error).message };
      }
    };
    let computed = 0;
    for (const [shape, axes] of cases) {
      for (const keepDims of [false, true]) {
        for (const [name, op] of [['sum', tf.sum], ['mean', tf.mean]] as const) {
          const run = () => outcome(() => op(uniform(shape, shape.length + axes.length), axes, keepDims));
          restoreKernels();
          const js = run();
          useNativeKernels();
          const native = run();
          const what = `${name} over [${axes}] of [${shape}] keepDims ${keepDims}`;
          if ('error' in js) {
            expect(native, what).toEqual(js);
            continue;
          }
          expect('shape' in native && native.shape, `${what}: shape`).toEqual(js.shape);
          expectClose((native as { values: Float32Array }).values, js.values, 1e-5, what);
          ++computed;
        }
      }
    }
    expect(computed).toBeGreaterThan(12);
  });

  it('Tile and FusedBatchNorm (per channel, scalar and tfjs modular parameters)', () => {
    const { js, native } = jsAndNative(() => [
      tf.tile(uniform([1, 1, 1, 7], 1), [4, 5, 6, 1]),
      tf.tile(uniform([2, 3], 2), [3, 2]),
      tf.batchNorm(uniform([4, 5, 6, 7], 3), uniform([7], 4), tf.add(uniform([7], 5), 2), uniform([7], 6), uniform([7], 7), 1e-3),
      tf.batchNorm(uniform([4, 5, 6, 7], 3), uniform([7], 4), tf.add(uniform([7], 5), 2)),
      tf.batchNorm(uniform([2, 3, 4, 5], 8), uniform([1], 9), tf.add(uniform([1], 10), 2), uniform([1], 11), uniform([1], 12)),
      tf.batchNorm(uniform([2, 3, 4, 6], 8), uniform([4], 9), tf.add(uniform([4], 10), 2), uniform([4], 11), uniform([4], 12)),
    ]);
    native.forEach((n, i) => expectClose(n, js[i], 1e-5, `tile/batchNorm #${i}`));
  });

  it('int32 and bool inputs run the JS kernels with identical results', () => {
    const { js, native } = jsAndNative(() => {
      const a = tf.tensor2d([[1, 2], [3, 4]], undefined, 'int32');
      const b = tf.tensor1d([5, -6], 'int32');
      return [tf.add(a, b), tf.mul(a, b), tf.sum(a, 0), tf.cast(tf.tile(a, [2, 1]), 'float32'), tf.relu(tf.neg(a))];
    });
    native.forEach((n, i) => expectClose(n, js[i], 0, `int32 #${i}`));
  });

  it('incompatible shapes still throw tfjs errors', () => {
    expect(() => tf.add(tf.zeros([3, 4]), tf.zeros([5]))).toThrow(/could not be broadcast/);
    expect(() => tf.engine().runKernel('Add', { a: tf.zeros([3, 4]), b: tf.zeros([5]) })).toThrow(/could not be broadcast/);
    expect(() => tf.sum(tf.zeros([3, 4]), 5)).toThrow();
  });
});
