/**
 * Native BatchMatMul / _FusedMatMul against tfjs's JS kernels: transposes, batch dimensions
 * (equal, broadcast from 1, rank 4), sizes off the register block, bias shapes and activations,
 * and the JS fallback for broadcasts the native path does not take.
 * Tolerance: |native - js| <= 1e-4 (1 + max|js|).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreKernels, useNativeKernels } from '../../src/kernels';
import { expectClose, jsAndNative, nativeAvailable, uniform } from './helpers';

const TOL = 1e-4;

describe.skipIf(!nativeAvailable)('native matmul kernels vs tfjs JS kernels', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    useNativeKernels();
  });
  afterAll(() => {
    restoreKernels();
  });

  it('BatchMatMul: transposes, batch shapes and odd sizes', () => {
    const cases: Array<[number[], number[], boolean, boolean]> = [
      [[1, 1], [1, 1], false, false],
      [[7, 33], [33, 5], false, false],
      [[33, 7], [33, 5], true, false],
      [[7, 33], [5, 33], false, true],
      [[33, 7], [5, 33], true, true],
      [[3, 13, 40], [3, 40, 17], false, false],  // equal batches
      [[3, 13, 40], [40, 17], false, false],     // b broadcast from batch 1
      [[13, 40], [4, 17, 40], false, true],      // a broadcast from batch 1
      [[2, 3, 5, 6], [2, 3, 6, 4], false, false],  // rank 4
      [[1, 64, 70], [1, 70, 129], false, false],
      [[128, 64], [64, 10], false, false],  // a dense layer
    ];
    cases.forEach(([sa, sb, ta, tb], i) => {
      const { js, native } = jsAndNative(() => tf.matMul(uniform(sa, i), uniform(sb, i + 100), ta, tb));
      expectClose(native[0], js[0], TOL, `matMul ${JSON.stringify([sa, sb, ta, tb])}`);
    });
  });

  it('BatchMatMul gradients (dense layer backward)', () => {
    const { js, native } = jsAndNative(() => {
      const a = uniform([9, 20], 1);
      const b = uniform([20, 11], 2);
      return tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y))))([a, b]);
    });
    expectClose(native[0], js[0], TOL, 'da');
    expectClose(native[1], js[1], TOL, 'db');
  });

  it('_FusedMatMul: bias shapes and activations', () => {
    const biases: Array<[string, () => tf.Tensor | undefined]> = [
      ['none', () => undefined],
      ['[N]', () => uniform([12], 3)],
      ['[1]', () => uniform([1], 4)],
      ['[M,N] (broadcast by Add)', () => uniform([8, 12], 5)],
    ];
    for (const [name, bias] of biases) {
      for (const activation of ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid', 'prelu'] as const) {
        for (const [ta, tb] of [[false, false], [true, true]]) {
          const { js, native } = jsAndNative(() =>
            tf.fused.matMul({
              a: tf.mul(uniform(ta ? [30, 8] : [8, 30], 1), 3),
              b: uniform(tb ? [12, 30] : [30, 12], 2),
              transposeA: ta,
              transposeB: tb,
              bias: bias(),
              activation,
              preluActivationWeights: activation === 'prelu' ? uniform([12], 6) : undefined,
              leakyreluAlpha: 0.25,
            }),
          );
          expectClose(native[0], js[0], TOL, `fused matMul bias ${name} ${activation} ta=${ta}`);
        }
      }
    }
  });

  it('falls back to JS for batch broadcasts other than 1, and mismatched inner sizes throw', () => {
    const { js, native } = jsAndNative(() => tf.matMul(uniform([2, 3, 4, 5], 1), uniform([3, 5, 2], 2)));
    expectClose(native[0], js[0], 1e-6, 'broadcast [2,3] x [3]');
    expect(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 5]))).toThrow(/inner shapes/);
    expect(() => tf.engine().runKernel('BatchMatMul', { a: tf.zeros([2, 3]), b: tf.zeros([4, 5]) }, { transposeA: false, transposeB: false })).toThrow(
      /inner shapes/,
    );
  });
});
