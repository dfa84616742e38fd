/** The optimizers' tfjs-ops step (no addon, as on other backends) against a float64 reference. */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

process.env.SUPCON_DISABLE_NATIVE = '1';  // read by the addon loader on its first call

describe('optimizer step without the addon', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    const { loadNative } = await import('../../src/native');
    expect(loadNative()).toBeNull();
  });

  it('follows the float64 reference of SGD, Nesterov SGD and LARS over several steps', async () => {
    const { checkAgainstReference } = await import('./optimizer_paths');
    checkAgainstReference();
  });
});
