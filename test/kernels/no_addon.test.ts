/**
 * Without the addon (SUPCON_DISABLE_NATIVE=1, as when it is not built), useNativeKernels() is a
 * no-op that says so, and tfjs keeps its JS kernels.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';

describe('native kernels without the addon', () => {
  it('useNativeKernels() returns [] and the status explains why', async () => {
    process.env.SUPCON_DISABLE_NATIVE = '1';  // read by the loader on its first call
    const kernels = await import('../../src/kernels');
    await tf.setBackend('cpu');
    const before = tf.getKernel('Conv2D', 'cpu');
    expect(kernels.useNativeKernels()).toEqual([]);
    expect(tf.getKernel('Conv2D', 'cpu')).toBe(before);
    const status = kernels.nativeKernelStatus();
    expect(status.available).toBe(false);
    expect(status.active).toEqual([]);
    expect(status.reason).toMatch(/SUPCON_DISABLE_NATIVE/);
    expect(kernels.restoreKernels()).toEqual([]);
    const y = tf.conv2d(tf.ones([1, 3, 3, 1]) as tf.Tensor4D, tf.ones([2, 2, 1, 1]) as tf.Tensor4D, 1, 'valid');
    expect(Array.from(y.dataSync())).toEqual([4, 4, 4, 4]);
  });
});
