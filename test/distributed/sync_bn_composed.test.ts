/**
 * Synchronized batch norm on the composed path (tfjs ops plus allreduce ops; what runs when the
 * addon's MPI is not initialized or the native kernel cannot run), in one process against a
 * stand-in communicator for two ranks holding the same shard: the whole batch's moments are
 * then the shard's, so y, the moving statistics and every gradient must equal per-process batch
 * norm on the shard, here computed by the native kernel (an independent implementation). A
 * reduction that skipped the count, or a backward without the allreduce of the sums' gradient,
 * would differ (the sums' gradient would be half).
 */
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it } from 'vitest';
import { CONV_BATCH_NORM_KERNEL, convBatchNorm, setBatchNormSync, type BatchNormSync } from '../../src/kernels/conv_batch_norm';
import { loadNative } from '../../src/native';

/** Two ranks with the same data: every sum over the ranks is twice this rank's. */
const twin: BatchNormSync = {
  allreduceSum(values: Float64Array) {
    for (let i = 0; i < values.length; i++) values[i] *= 2;
  },
};

afterEach(() => setBatchNormSync(null));

function run(sync: BatchNormSync | null, residual: boolean) {
  setBatchNormSync(sync);
  try {
    return tf.tidy(() => {
      const x = tf.randomNormal([3, 7, 7, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
      const filter = tf.randomNormal([3, 3, 4, 6], 0, 0.3, 'float32', 2) as tf.Tensor4D;
      const gamma = tf.randomUniform([6], 0.5, 1.5, 'float32', 3) as tf.Tensor1D;
      const beta = tf.randomNormal([6], 0, 0.2, 'float32', 4) as tf.Tensor1D;
      const movingMean = tf.randomNormal([6], 0, 0.1, 'float32', 5) as tf.Tensor1D;
      const movingVariance = tf.randomUniform([6], 0.5, 2, 'float32', 6) as tf.Tensor1D;
      const res = residual ? (tf.randomNormal([3, 4, 4, 6], 0, 1, 'float32', 7) as tf.Tensor4D) : null;
      const weights = tf.randomNormal([3, 4, 4, 6], 0, 1, 'float32', 8);
      const settings = { strides: 2, padding: 'same' as const, epsilon: 1e-3, momentum: 0.9, relu: true, training: true };
      let moving: number[][] = [];
      const loss = (xx: tf.Tensor, ff: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => {
        const out = convBatchNorm(
          { x: xx as tf.Tensor4D, filter: ff as tf.Tensor4D, gamma: gg as tf.Tensor1D, beta: bb as tf.Tensor1D, movingMean, movingVariance, residual: res },
          settings,
        );
        moving = [Array.from(out.movingMean!.dataSync()), Array.from(out.movingVariance!.dataSync())];
        return tf.sum(tf.mul(out.y, weights)) as tf.Scalar;
      };
      const { value, grads } = tf.valueAndGrads(loss)([x, filter, gamma, beta]);
      return { loss: value.dataSync()[0], grads: grads.map((g) => Array.from(g.dataSync())), moving };
    });
  } finally {
    setBatchNormSync(null);
  }
}

const worst = (a: number[][], b: number[][]) => {
  let w = 0;
  let scale = 1e-30;
  a.forEach((row, i) => row.forEach((v, j) => ((w = Math.max(w, Math.abs(v - b[i][j]))), (scale = Math.max(scale, Math.abs(b[i][j]))))));
  return w / scale;
};

describe('synchronized batch norm, composed path', () => {
  for (const residual of [false, true]) {
    it(`two ranks with the same shard equal per-process batch norm on it${residual ? ' (with a residual)' : ''}`, async () => {
      await tf.setBackend('cpu');
      const plain = run(null, residual);
      const synced = run(twin, residual);
      expect(Math.abs(synced.loss - plain.loss) / Math.abs(plain.loss)).toBeLessThan(1e-5);
      expect(worst(synced.grads, plain.grads)).toBeLessThan(1e-4);
      expect(worst(synced.moving, plain.moving)).toBeLessThan(1e-5);
      // Which implementations ran: the synchronized one composed; the reference native when the addon is here.
      expect((await tf.profile(() => void run(twin, residual))).kernelNames).not.toContain(CONV_BATCH_NORM_KERNEL);
      if (loadNative()) expect((await tf.profile(() => void run(null, residual))).kernelNames).toContain(CONV_BATCH_NORM_KERNEL);
      // The comparison can fail: a communicator that does not sum (a count of one rank against
      // sums of two) gives other statistics.
      const broken = run({ allreduceSum: (v) => (v.length === 1 ? undefined : twin.allreduceSum(v)) }, residual);
      expect(worst(broken.moving, plain.moving)).toBeGreaterThan(1e-3);
    });
  }
});
