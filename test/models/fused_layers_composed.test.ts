/**
 * The fused ConvBatchNorm layer where its native kernel cannot run (SUPCON_DISABLE_NATIVE=1, as
 * without the addon or on another tfjs backend): it composes tfjs's own ops and still equals
 * the plain tfjs layers, gradients and moving statistics included.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

process.env.SUPCON_DISABLE_NATIVE = '1';  // read by the addon loader on its first call

let sweep: typeof import('./fused_sweep');

beforeAll(async () => {
  await tf.setBackend('cpu');
  sweep = await import('./fused_sweep');
  const { loadNative } = await import('../../src/native');
  expect(loadNative()).toBeNull();
});

describe('ConvBatchNorm (composed tfjs ops) against the plain tfjs layers', () => {
  it('agrees over a sweep of shapes and modes, with no native kernel involved', async () => {
    const { CONV_BATCH_NORM_KERNEL } = await import('../../src/kernels/conv_batch_norm');
    for (const [i, c] of sweep.sweepCases(12).entries()) {
      const before = tf.memory().numTensors;
      const info = await tf.profile(() => sweep.checkCase(c, 100 + i));
      expect(info.kernelNames, sweep.describeCase(c)).not.toContain(CONV_BATCH_NORM_KERNEL);
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});
