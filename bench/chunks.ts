/**
 * Gradient caching's memory (issue 12): one SupCon step of ResNet-18 (+ the MLP projection head)
 * on a global batch of synthetic 32x32x3 images (two views each), with the model run in chunks
 * (`--chunk-size`, src/train/grad_cache.ts) or in one piece (`--chunk 0`). Reports the step's wall
 * time and the process's peak resident memory (getrusage maxrss), and the resident memory before
 * the step (the inputs and the model). Run one configuration per process, so each peak is its own.
 *
 *   npx tsx bench/chunks.ts --batch 8192 --chunk 256 [--stem imagenet|cifar] [--width 1]
 *                           [--json bench/results/chunks.jsonl] (appends a line)
 */
import { appendFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { supConLoss } from '../src/loss/op';
import { resolveTrainConfig } from '../src/train/config';
import { enableFastKernels } from '../src/train/fast_kernels';
import { chunkedGradients } from '../src/train/grad_cache';
import { createOptimizer } from '../src/train/optimizers';
import { buildRunModels } from '../src/train/run_models';
import { machine } from './util';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

async function main() {
  await tf.setBackend('cpu');
  enableFastKernels();
  const batch = Number(arg('--batch', '8192'));
  const chunk = Number(arg('--chunk', '256'));
  const stem = arg('--stem', 'imagenet') as 'imagenet' | 'cifar';
  const width = Number(arg('--width', '1'));
  const config = resolveTrainConfig({ arch: 'resnet18', stem, width, batchSize: batch, chunkSize: chunk });
  const models = buildRunModels(config, [32, 32, 3], 10);
  const variables = models.trainModel.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = createOptimizer('sgd', { learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4 });
  // Two views of every image, view-major, as the trainer feeds the model (values: any image-like noise).
  const x = tf.randomUniform([2 * batch, 32, 32, 3], -1, 1, 'float32', 1);
  const labels = tf.tensor1d(Int32Array.from({ length: batch }, (_, i) => (i * 7) % 10), 'int32');
  const loss = (z: tf.Tensor2D) =>
    supConLoss(tf.transpose(tf.reshape(z, [2, batch, -1]), [1, 0, 2]), labels, { temperature: 0.1 }) as tf.Scalar;
  const rssBefore = process.memoryUsage().rss;
  const started = performance.now();
  let value: number;
  if (chunk > 0) {
    const r = chunkedGradients(models.trainModel, x, chunk, variables, loss);
    value = r.value;
    optimizer.applyGradients(r.grads);
    tf.dispose(Object.values(r.grads));
  } else {
    const r = tf.variableGrads(() => loss(models.trainModel.apply(x, { training: true }) as tf.Tensor2D), variables);
    value = r.value.dataSync()[0];
    optimizer.applyGradients(r.grads);
    tf.dispose([r.value, ...Object.values(r.grads)]);
  }
  const seconds = (performance.now() - started) / 1000;
  const peak = process.resourceUsage().maxRSS * 1024;
  const row = {
    model: `resnet18 (${stem} stem, width ${width}) + mlp head`,
    batch,
    views: 2 * batch,
    chunk,
    loss: value,
    seconds: Math.round(seconds),
    rssBeforeStepMiB: mib(rssBefore),
    peakRssMiB: mib(peak),
    inputMiB: mib(2 * batch * 32 * 32 * 3 * 4),
    machine: machine(),
  };
  console.log(JSON.stringify(row));
  const json = arg('--json', '');
  if (json) appendFileSync(json, JSON.stringify(row) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
