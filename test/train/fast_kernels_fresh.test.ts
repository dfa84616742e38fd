/**
 * In a fresh process no tfjs backend is active until something runs (tf.getBackend() is
 * undefined): the training layer must still find the cpu backend and register the native
 * kernels, or library users of trainRun would silently train on tfjs's JS kernels.
 */
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/native';
import { enableFastKernels } from '../../src/train/fast_kernels';

describe.skipIf(typeof loadNative()?.conv2dForward !== 'function')('fast kernels in a fresh process', () => {
  it('are registered before any tfjs op has run', async () => {
    const tf = await import('@tensorflow/tfjs');
    expect(tf.getBackend()).toBeUndefined();  // the situation this test is about
    expect(enableFastKernels().length).toBeGreaterThan(20);
    expect(tf.getBackend()).toBe('cpu');
  });
});
