/**
 * Native MaxPool / AvgPool and their gradients against tfjs's JS kernels: 'same' / 'valid' /
 * numeric / explicit-rounding paddings, strides, batch 1, channels off the SIMD width, and
 * inputs after a ReLU (many tied zeros: the gradient must go to the same maximum as tfjs's).
 * Tolerance: |native - js| <= 1e-5 (1 + max|js|).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { restoreKernels, useNativeKernels } from '../../src/kernels';
import { expectClose, jsAndNative, nativeAvailable, uniform } from './helpers';

describe.skipIf(!nativeAvailable)('native pooling kernels vs tfjs JS kernels', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    useNativeKernels();
  });
  afterAll(() => {
    restoreKernels();
  });

  const cases: Array<{ shape: [number, number, number, number]; size: number | [number, number]; stride: number | [number, number]; pad: 'same' | 'valid' | number; rounding?: 'floor' | 'ceil' | 'round' }> = [
    { shape: [2, 12, 12, 16], size: 3, stride: 2, pad: 'same' },  // ImageNet-style stem
    { shape: [1, 9, 7, 5], size: 2, stride: 2, pad: 'valid' },
    { shape: [3, 8, 8, 17], size: [3, 2], stride: [1, 2], pad: 'same' },
    { shape: [2, 7, 9, 3], size: 3, stride: 3, pad: 1, rounding: 'ceil' },
    { shape: [1, 5, 5, 33], size: 5, stride: 1, pad: 'valid' },
  ];

  it('forward and gradients, including tied maxima after a ReLU', () => {
    cases.forEach((c, i) => {
      for (const op of ['max', 'avg'] as const) {
        const { js, native } = jsAndNative(() => {
          const x = tf.relu(uniform(c.shape, i)) as tf.Tensor4D;  // ~half zeros: ties
          const pool = (v: tf.Tensor) =>
            op === 'max' ? tf.maxPool(v as tf.Tensor4D, c.size, c.stride, c.pad, c.rounding) : tf.avgPool(v as tf.Tensor4D, c.size, c.stride, c.pad, c.rounding);
          const y = pool(x);
          const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(pool(v), uniform(y.shape, i + 9))))(x);
          return [y, dx];
        });
        expectClose(native[0], js[0], 1e-5, `${op}Pool ${JSON.stringify(c)}`);
        expectClose(native[1], js[1], 1e-5, `${op}Pool gradient ${JSON.stringify(c)}`);
      }
    });
  });

  it('1x1 identity pools and int32 inputs run the JS kernels', () => {
    const { js, native } = jsAndNative(() => [
      tf.maxPool(uniform([1, 4, 4, 3], 1) as tf.Tensor4D, 1, 1, 'valid'),
      tf.cast(tf.maxPool(tf.cast(tf.mul(uniform([1, 4, 4, 3], 2), 9), 'int32') as tf.Tensor4D, 2, 2, 'valid'), 'float32'),
    ]);
    native.forEach((n, i) => expectClose(n, js[i], 0, `fallback #${i}`));
  });
});
