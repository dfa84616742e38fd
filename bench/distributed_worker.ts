/**
 * One process (or one rank of `mpirun -np K`) of the data-parallel benchmark (bench/distributed.ts):
 * the trainer's SupCon step (two views of a global batch, ResNet-8 with an MLP head, the fused
 * loss over the whole global batch, SGD momentum), on synthetic 28x28x1 images.
 *   [mpirun -np K] node --import tsx bench/distributed_worker.ts --batch 128 --steps 10
 * Prints one JSON line (rank 0): per-step medians of the step and of each collective, ms.
 */
import * as tf from '@tensorflow/tfjs';
import { createEncoder, createSupConModel } from '../src/models';
import { supConLoss } from '../src/loss/op';
import { enableFastKernels } from '../src/train/fast_kernels';
import { joinDataParallel, shardOf, shardSizes as shardSizesOf } from '../src/train/distributed';
import { SgdMomentum } from '../src/train/optimizers';
import { supcon } from '../src';
import { median } from './util';

const arg = (name: string, fallback: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : fallback);

async function main(): Promise<void> {
  const globalBatch = arg('--batch', 128);
  const steps = arg('--steps', 10);
  await tf.setBackend('cpu');
  enableFastKernels();
  const dp = joinDataParallel();
  const rank = dp?.rank ?? 0;
  const size = dp?.size ?? 1;
  const records = shardOf(Int32Array.from({ length: globalBatch }, (_, i) => i), rank, size);
  const local = records.length;
  const encoder = createEncoder({ arch: 'resnet8', inputShape: [28, 28, 1], seed: 1 });
  const { model } = createSupConModel({ encoder, head: { kind: 'mlp', outputDim: 128, seed: 2 } });
  if (dp) dp.broadcastWeights(model);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const images = tf.randomNormal([2 * local, 28, 28, 1], 0, 1, 'float32', 3 + rank);
  const labels = Int32Array.from(records, (i) => i % 10);
  const optimizer = new SgdMomentum({ learningRate: 0.01, momentum: 0.9 });
  const options = { temperature: 0.1 };
  const features = () => tf.transpose(tf.reshape(model.apply(images, { training: true }) as tf.Tensor2D, [2, local, -1]), [1, 0, 2]) as tf.Tensor3D;
  const step = (): number => {
    return tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => (dp ? dp.supConLoss(features(), labels, options) : (supConLoss(features(), labels, options) as tf.Scalar)), variables);
      if (dp) {
        const averaged = dp.averageGradients(grads, [value.dataSync()[0]], false);
        optimizer.applyGradients(averaged.grads);
        return averaged.scalars[0];
      }
      optimizer.applyGradients(grads);
      return value.dataSync()[0];
    });
  };
  for (let i = 0; i < 2; i++) step();
  const stepMs: number[] = [];
  const gatherMs: number[] = [];
  const scatterMs: number[] = [];
  const allreduceMs: number[] = [];
  for (let i = 0; i < steps; i++) {
    dp?.comm.barrier(); // every rank starts the step together: the collectives then time transfers and imbalance, not a late start
    const t0 = performance.now();
    step();
    stepMs.push(performance.now() - t0);
    if (dp) {
      gatherMs.push(dp.times.gatherMs);
      scatterMs.push(dp.times.scatterMs);
      allreduceMs.push(dp.times.allreduceMs);
    }
  }

  // Returning the contrast rows' gradients to their owners: reduce-scatter (what the trainer does)
  // or recompute (every rank takes the loss of all anchors, so its own rows' gradient needs no
  // message). The loss alone on fixed features, this rank's share vs the whole batch.
  const dim = 128;
  const all = tf.randomNormal([globalBatch, 2, dim], 0, 1, 'float32', 9);
  const allLabels = Int32Array.from({ length: globalBatch }, (_, i) => i % 10);
  const begin = records[0];
  const mine = tf.slice(all, [begin, 0, 0], [local, 2, dim]);
  const others = tf.reshape(tf.concat([tf.slice(all, [0, 0, 0], [begin, 2, dim]), tf.slice(all, [begin + local, 0, 0], [globalBatch - begin - local, 2, dim])], 0), [-1, dim]);
  const otherLabels = Int32Array.from({ length: 2 * (globalBatch - local) }, (_, r) => allLabels[(r >> 1) < begin ? r >> 1 : (r >> 1) + local]);
  const timeGrad = (f: (x: tf.Tensor) => tf.Scalar, x: tf.Tensor) => {
    const times: number[] = [];
    for (let i = 0; i < steps + 2; i++) {
      const t0 = performance.now();
      tf.tidy(() => tf.grad(f)(x).dataSync());
      times.push(performance.now() - t0);
    }
    return median(times.slice(2));
  };
  const shareLossMs =
    size === 1
      ? timeGrad((x) => supConLoss(x, allLabels, options) as tf.Scalar, all)
      : timeGrad((x) => supConLoss(x, labels, { ...options, reduction: 'sum', contrast: { features: others, labels: otherLabels, gradient: true } }) as tf.Scalar, mine);
  const wholeLossMs = timeGrad((x) => supConLoss(x, allLabels, options) as tf.Scalar, all);

  // The collectives alone, every rank starting together (no compute imbalance in the wait).
  const isolated = (run: () => void) => {
    const times: number[] = [];
    for (let i = 0; i < steps + 2; i++) {
      dp!.comm.barrier();
      const t0 = performance.now();
      run();
      times.push(performance.now() - t0);
    }
    return median(times.slice(2));
  };
  const gradientFloats = variables.reduce((a, v) => a + v.size, 0);
  const featureCounts = dp ? shardSizesOf(globalBatch, size).map((b) => b * 2 * dim) : [];
  const allreduceAloneMs = dp ? isolated(() => dp.comm.allreduceSum(new Float32Array(gradientFloats + 2))) : 0;
  const gatherAloneMs = dp ? isolated(() => dp.comm.allgatherv(new Float32Array(featureCounts[rank]), featureCounts)) : 0;

  const row = {
    rank,
    size,
    threads: supcon.info().cpu.threads,
    localBatch: local,
    stepMs: median(stepMs),
    gatherMs: dp ? median(gatherMs) : 0,
    scatterMs: dp ? median(scatterMs) : 0,
    allreduceMs: dp ? median(allreduceMs) : 0,
    allreduceAloneMs,
    gatherAloneMs,
    gradientFloats,
    shareLossMs,
    wholeLossMs,
  };
  if (dp) {
    // Every rank's row to rank 0, as JSON bytes of equal length.
    const bytes = new TextEncoder().encode(JSON.stringify(row).padEnd(1024));
    const rows = dp.comm.allgather(bytes);
    if (dp.isRoot) {
      const parsed = Array.from({ length: size }, (_, r) => JSON.parse(new TextDecoder().decode(rows.subarray(r * 1024, (r + 1) * 1024))));
      console.log(JSON.stringify(parsed));
    }
    dp.close();
  } else {
    console.log(JSON.stringify([row]));
  }
  tf.dispose([images, all, mine, others]);
  optimizer.dispose();
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
