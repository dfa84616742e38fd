/**
 * One data-parallel step against one process on the concatenated global batch, run under
 * `mpirun -np 2` by test/distributed/mpi.test.ts:
 *   mpirun -np 2 node --import tsx test/distributed/step_worker.ts <out.json>
 *
 * Every rank builds the same model (rank 0's weights broadcast), takes its shard of a fixed
 * global batch, and computes the loss share and gradients through DataParallel (the global batch
 * in the loss, one allreduce of the gradients, synchronized batch norm when the case asks).
 * Rank 0 then computes the single-process loss and gradients of the whole batch with the same
 * weights (no collectives) and writes both, per case, to out.json; the test compares them.
 */
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { createEncoder, createSupConModel } from '../../src/models';
import { supConLoss } from '../../src/loss/op';
import { enableFastKernels } from '../../src/train/fast_kernels';
import { joinDataParallel, shardOf, type DataParallel } from '../../src/train/distributed';
import { createOptimizer } from '../../src/train/optimizers';
import type { ContrastMode, SupConVariant } from '../../src/loss/options';

interface Case {
  name: string;
  model: 'resnet' | 'mlp';
  syncBatchNorm: boolean;
  labeled: boolean;
  contrastMode: ContrastMode;
  /** Cross-entropy on the first view's outputs as logits instead of SupCon (--method ce). */
  crossEntropy?: boolean;
  /** Views per image (default 2; the trainer's SupCon default is 1). */
  views?: number;
  /** The loss's variant (default 'out'). */
  variant?: SupConVariant;
  globalBatch: number;
}

const CASES: Case[] = [
  { name: 'supcon all, ResNet, sync-bn', model: 'resnet', syncBatchNorm: true, labeled: true, contrastMode: 'all', globalBatch: 12 },
  { name: 'supcon one, ResNet, sync-bn', model: 'resnet', syncBatchNorm: true, labeled: true, contrastMode: 'one', globalBatch: 12 },
  { name: 'simclr all, ResNet, sync-bn', model: 'resnet', syncBatchNorm: true, labeled: false, contrastMode: 'all', globalBatch: 12 },
  { name: 'simclr one, ResNet, sync-bn, uneven shards 7 + 6', model: 'resnet', syncBatchNorm: true, labeled: false, contrastMode: 'one', globalBatch: 13 },
  { name: 'supcon all, no batch norm', model: 'mlp', syncBatchNorm: false, labeled: true, contrastMode: 'all', globalBatch: 12 },
  { name: 'simclr all, no batch norm', model: 'mlp', syncBatchNorm: false, labeled: false, contrastMode: 'all', globalBatch: 12 },
  { name: 'supcon all, 1 view, ResNet, sync-bn', model: 'resnet', syncBatchNorm: true, labeled: true, contrastMode: 'all', globalBatch: 12, views: 1 },
  { name: 'supcon all, 3 views, L_in variant, ResNet, sync-bn, uneven shards 7 + 6', model: 'resnet', syncBatchNorm: true, labeled: true, contrastMode: 'all', globalBatch: 13, views: 3, variant: 'in' },
  { name: 'cross-entropy, ResNet, sync-bn, uneven shards 7 + 6', model: 'resnet', syncBatchNorm: true, labeled: true, contrastMode: 'all', globalBatch: 13, crossEntropy: true },
  // Per-rank batch norm is not the single-process computation: the test expects a difference.
  { name: 'supcon all, ResNet, per-rank batch norm', model: 'resnet', syncBatchNorm: false, labeled: true, contrastMode: 'all', globalBatch: 12 },
];

const SHAPE: [number, number, number] = [12, 12, 1];

function buildModel(kind: Case['model']): tf.LayersModel {
  if (kind === 'resnet') {
    const encoder = createEncoder({ arch: 'resnet8', widthMultiplier: 0.5, inputShape: SHAPE, seed: 11 });
    return createSupConModel({ encoder, head: { kind: 'mlp', outputDim: 16, seed: 12 } }).model;
  }
  const input = tf.input({ shape: SHAPE });
  let x = tf.layers.flatten().apply(input) as tf.SymbolicTensor;
  x = tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 13 }) }).apply(x) as tf.SymbolicTensor;
  const encoder = tf.model({ inputs: input, outputs: x });
  return createSupConModel({ encoder, head: { kind: 'mlp', outputDim: 16, seed: 14 } }).model;
}

/** Deterministic inputs of the global batch: `count` views of each image and labels (3 classes). */
function globalBatch(n: number, seed: number, count: number): { views: Float32Array[]; labels: Int32Array } {
  let state = seed >>> 0;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const size = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const views = Array.from({ length: count }, () => Float32Array.from({ length: n * size }, next));
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 7) % 3);
  return { views, labels };
}

/** Features [B, V, D] of samples [begin, end) of the global batch: view-major images through the model. */
function features(model: tf.LayersModel, views: Float32Array[], begin: number, end: number): tf.Tensor3D {
  const size = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const b = end - begin;
  const x = tf.concat(views.map((v) => tf.tensor4d(v.subarray(begin * size, end * size), [b, ...SHAPE])), 0);
  const projections = model.apply(x, { training: true }) as tf.Tensor2D;
  return tf.transpose(tf.reshape(projections, [views.length, b, -1]), [1, 0, 2]) as tf.Tensor3D;
}

/** Mean softmax cross-entropy of samples [begin, end), the model's 16 outputs as logits (as the trainer's ce step). */
function crossEntropy(model: tf.LayersModel, images: Float32Array, labels: Int32Array, begin: number, end: number): tf.Scalar {
  const size = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const x = tf.tensor4d(images.subarray(begin * size, end * size), [end - begin, ...SHAPE]);
  const logits = model.apply(x, { training: true }) as tf.Tensor2D;
  return tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(labels.slice(begin, end), 'int32'), 16), logits) as tf.Scalar;
}

function snapshot(model: tf.LayersModel): Float32Array[] {
  return model.weights.map((w) => Float32Array.from(w.read().dataSync()));
}

function restore(model: tf.LayersModel, values: Float32Array[]): void {
  model.weights.forEach((w, i) => w.write(tf.tensor(values[i], w.read().shape)));
}

function runCase(dp: DataParallel, c: Case, seed: number) {
  const model = buildModel(c.model);
  // Ranks other than 0 start from other weights: only the broadcast makes them rank 0's.
  if (!dp.isRoot) tf.tidy(() => model.weights.forEach((w) => w.write(tf.add(w.read(), 0.5 * dp.rank))));
  const tensorsBefore = tf.memory().numTensors;
  dp.broadcastWeights(model);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const initial = snapshot(model);
  const { views, labels } = globalBatch(c.globalBatch, seed, c.views ?? 2);
  const all = Int32Array.from({ length: c.globalBatch }, (_, i) => i);
  const shard = shardOf(all, dp.rank, dp.size);
  const begin = shard[0];
  const end = begin + shard.length;
  const options = { temperature: 0.2, contrastMode: c.contrastMode, variant: c.variant ?? 'out' };

  dp.setSyncBatchNorm(c.syncBatchNorm);
  const distributed = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(
      () =>
        c.crossEntropy
          ? dp.meanShare(crossEntropy(model, views[0], labels, begin, end), end - begin, c.globalBatch)
          : dp.supConLoss(features(model, views, begin, end), c.labeled ? labels.slice(begin, end) : null, options),
      variables,
    );
    const averaged = dp.averageGradients(grads, [value.dataSync()[0]], false);
    return { loss: averaged.scalars[0], grads: variables.map((v) => Array.from(averaged.grads[v.name].dataSync())) };
  });
  dp.setSyncBatchNorm(false);
  // Tensors the broadcast and the distributed step left behind, per rank (the moving statistics are replaced, not added).
  const leaked = Array.from(dp.comm.allgather(Int32Array.from([tf.memory().numTensors - tensorsBefore])));
  const movingDistributed = model.weights.filter((w) => !w.trainable).map((w) => Array.from(w.read().dataSync()));
  // The trainable weights every rank used (rank 0's, broadcast): a checksum per rank.
  let checksum = 0;
  variables.forEach((v) => v.dataSync().forEach((x, i) => (checksum += x * ((i % 97) + 1))));
  const checksums = Array.from(dp.comm.allgather(Float64Array.from([checksum])));

  let single: { loss: number; grads: number[][]; moving: number[][] } | null = null;
  if (dp.isRoot) {
    restore(model, initial);
    single = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(
        () =>
          c.crossEntropy
            ? crossEntropy(model, views[0], labels, 0, c.globalBatch)
            : (supConLoss(features(model, views, 0, c.globalBatch), c.labeled ? labels : null, options) as tf.Scalar),
        variables,
      );
      return {
        loss: value.dataSync()[0],
        grads: variables.map((v) => Array.from(grads[v.name].dataSync())),
        moving: model.weights.filter((w) => !w.trainable).map((w) => Array.from(w.read().dataSync())),
      };
    });
  }
  model.dispose();
  return { name: c.name, shard: [begin, end], distributed, movingDistributed, checksums, leaked, single };
}

/**
 * Rank 0's optimizer state (iterations, momentum) on every rank after broadcastOptimizer: rank 0
 * takes two steps, the others none; returns every rank's state as a list of numbers.
 */
async function optimizerBroadcast(dp: DataParallel): Promise<number[][]> {
  const variable = tf.variable(tf.tensor1d([1, -2, 3]), true, 'opt_probe');
  const optimizer = createOptimizer('sgd', { learningRate: 0.1, momentum: 0.9 });
  if (dp.isRoot) {
    for (const g of [[0.5, 0.25, -1], [1, 2, 3]]) optimizer.applyGradients({ opt_probe: tf.tensor1d(g) });
  }
  await dp.broadcastOptimizer(optimizer);
  const state = (await optimizer.getWeights()).flatMap((w) => Array.from(w.tensor.dataSync()));
  optimizer.dispose();
  variable.dispose();
  const all = dp.comm.allgather(Float64Array.from(state));
  return Array.from({ length: dp.size }, (_, r) => Array.from(all.subarray(r * state.length, (r + 1) * state.length)));
}

async function main(): Promise<void> {
  const out = process.argv[2];
  await tf.setBackend('cpu');
  enableFastKernels();
  const dp = joinDataParallel();
  if (!dp) throw new Error('step_worker.ts must run under mpirun with 2 or more processes');
  const results = CASES.map((c, i) => runCase(dp, c, 1000 + i));
  const optimizerStates = await optimizerBroadcast(dp);
  if (dp.isRoot) writeFileSync(out, JSON.stringify({ size: dp.size, results, optimizerStates }));
  dp.close();
}

main().catch((e) => {
  process.stderr.write(`step_worker: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
