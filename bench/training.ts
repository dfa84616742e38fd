/**
 * Training-step benchmark: one SGD-momentum step (forward, backward, update) of the project's
 * ResNet encoders plus a dense classifier and softmax cross-entropy, on synthetic data:
 *
 * - `plain`: the encoder built from tfjs layers (conv2d, batchNormalization, add, reLU) with the
 *   native tfjs kernels registered (the project's previous training path);
 * - `fused`: the default encoder, whose conv + BN (+ residual) (+ ReLU) units are ConvBatchNorm
 *   layers (one native kernel forward, one backward);
 * - `pytorch`: the same network in PyTorch (bench/torch/resnet_step.py, channels_last), run in the
 *   same session when `python3 -c 'import torch'` works. A comparison only, never a dependency.
 *
 * Both tfjs rows use the project's SgdMomentum (one native call per step on the cpu backend).
 * Also measured: the main job's SupCon step as `npm start` trains it (two augmented views of a
 * batch, ResNet-8, projection head, fused loss), through the trainer itself.
 *
 *   npx tsx bench/training.ts [--models resnet8,resnet20,resnet18] [--steps 10] [--no-torch]
 *                             [--json bench/results/training.json]
 * SUPCON_NUM_THREADS sets this side's threads; PyTorch gets the same count.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useNativeKernels } from '../src/kernels';
import { createEncoder, type EncoderArch } from '../src/models';
import { requireNative } from '../src/native';
import { trainRun } from '../src/train';
import { SgdMomentum } from '../src/train/optimizers';
import { machine, median, printTable, writeJson } from './util';

/** One benchmarked network: the sizes. */
interface Network {
  name: string;
  arch: EncoderArch;
  batch: number;
  inputShape: [number, number, number];
}

const NETWORKS: Record<string, Network> = {
  resnet8: { name: 'ResNet-8 (28x28x1)', arch: 'resnet8', batch: 128, inputShape: [28, 28, 1] },
  resnet20: { name: 'ResNet-20 (32x32x3)', arch: 'resnet20', batch: 64, inputShape: [32, 32, 3] },
  resnet18: { name: 'ResNet-18 (CIFAR stem, 32x32x3)', arch: 'resnet18', batch: 64, inputShape: [32, 32, 3] },
};

export interface StepTimes {
  /** Median and fastest step, ms. */
  medianMs: number;
  minMs: number;
  imagesPerSecond: number;
}

export interface TrainingBenchRow {
  network: string;
  arch: string;
  batch: number;
  plain: StepTimes;
  fused: StepTimes;
  pytorch: (StepTimes & { version: string; threads: number }) | null;
  /** fused median / pytorch median (< 1: faster than PyTorch). */
  fusedOverPytorch: number | null;
  /** plain median / fused median. */
  fusedSpeedup: number;
}

function stats(times: number[], batch: number): StepTimes {
  const m = median(times);
  return { medianMs: m, minMs: Math.min(...times), imagesPerSecond: (batch * 1000) / m };
}

/** Median of `steps` timed training steps after 3 untimed ones. */
function timeTfjs(net: Network, fused: boolean, steps: number): StepTimes {
  const encoder = createEncoder({ arch: net.arch, inputShape: net.inputShape, stem: 'cifar', fused, seed: 1 });
  const head = tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) });
  const images = tf.randomNormal([net.batch, ...net.inputShape], 0, 1, 'float32', 3);
  const labels = tf.tidy(() => tf.oneHot(tf.randomUniform([net.batch], 0, 10, 'int32', 4) as tf.Tensor1D, 10));
  const optimizer = new SgdMomentum({ learningRate: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const step = () => {
    const loss = optimizer.minimize(
      () => tf.losses.softmaxCrossEntropy(labels, head.apply(encoder.apply(images, { training: true })) as tf.Tensor) as tf.Scalar,
      true,
    )!;
    loss.dataSync();
    loss.dispose();
  };
  for (let i = 0; i < 3; i++) step();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  tf.dispose([images, labels]);
  optimizer.dispose();
  encoder.dispose();
  head.dispose();
  return stats(times, net.batch);
}

/** The PyTorch step of the same network, or null when torch is not importable. */
function timeTorch(net: Network, steps: number, threads: number): TrainingBenchRow['pytorch'] {
  const r = spawnSync(
    'python3',
    ['bench/torch/resnet_step.py', '--model', net.arch, '--batch', String(net.batch), '--threads', String(threads), '--steps', String(steps)],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return null;
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { torch: string; threads: number; ms: number[] };
  return { ...stats(out.ms, net.batch), version: out.torch, threads: out.threads };
}

/** Whether PyTorch is importable here (a benchmark comparison only). */
export function torchAvailable(): boolean {
  return spawnSync('python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

export interface MainJobRow {
  /** Pre-training images per second (two views per sample) over the timed epoch, from the trainer. */
  imagesPerSecond: number;
  steps: number;
  batch: number;
}

/** The main job's SupCon step through the trainer: one epoch of `steps` batches, no kNN / eval. */
async function timeMainJob(steps: number): Promise<MainJobRow> {
  const dir = await mkdtemp(join(tmpdir(), 'supcon-bench-'));
  const batch = 256;
  try {
    await trainRun(
      { epochs: 1, limitTrain: batch * (steps + 2), limitTest: 16, knnBank: 0, knnQueries: 0, linearEpochs: 1 },
      { outDir: dir },
    );
    const lines = (await readFile(join(dir, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    const epoch = lines.find((l) => l.type === 'epoch');
    return { imagesPerSecond: epoch.imagesPerSecond, steps: steps + 2, batch };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface TrainingBenchResult {
  machine: ReturnType<typeof machine>;
  torch: string | null;
  rows: TrainingBenchRow[];
  mainJob: MainJobRow;
}

export async function runTrainingBench(options: { models?: string[]; steps?: number; torch?: boolean } = {}): Promise<TrainingBenchResult> {
  await tf.setBackend('cpu');
  requireNative();
  useNativeKernels();
  const steps = options.steps ?? 10;
  const threads = requireNative().info().cpu.threads;
  const withTorch = (options.torch ?? true) && torchAvailable();
  const rows: TrainingBenchRow[] = [];
  for (const key of options.models ?? Object.keys(NETWORKS)) {
    const net = NETWORKS[key];
    if (!net) throw new Error(`unknown model '${key}' (one of ${Object.keys(NETWORKS).join(', ')})`);
    const n = net.arch === 'resnet18' ? Math.max(3, Math.ceil(steps / 2)) : steps;
    // Interleaved so that a change in machine load hits every row alike.
    const fused = timeTfjs(net, true, n);
    const pytorch = withTorch ? timeTorch(net, n, threads) : null;
    const plain = timeTfjs(net, false, n);
    rows.push({
      network: net.name,
      arch: net.arch,
      batch: net.batch,
      plain,
      fused,
      pytorch,
      fusedOverPytorch: pytorch ? fused.medianMs / pytorch.medianMs : null,
      fusedSpeedup: plain.medianMs / fused.medianMs,
    });
    console.error(`  ${net.name}: fused ${fused.medianMs.toFixed(1)} ms, plain ${plain.medianMs.toFixed(1)} ms` +
      (pytorch ? `, pytorch ${pytorch.medianMs.toFixed(1)} ms` : ''));
  }
  const mainJob = await timeMainJob(steps);
  return { machine: machine(), torch: rows.find((r) => r.pytorch)?.pytorch?.version ?? null, rows, mainJob };
}

export function printTrainingTable(r: TrainingBenchResult): void {
  printTable(
    `Training step (forward, backward, SGD-momentum update), ${r.machine.threads} threads; median ms (images/s)` +
      (r.torch ? `; PyTorch ${r.torch} with the same thread count, channels_last` : '; PyTorch not available'),
    ['network', 'batch', 'plain tfjs layers + native kernels', 'fused layers', 'PyTorch', 'fused / PyTorch', 'fused speedup'],
    r.rows.map((row) => [
      row.network,
      String(row.batch),
      `${row.plain.medianMs.toFixed(1)} (${row.plain.imagesPerSecond.toFixed(0)})`,
      `${row.fused.medianMs.toFixed(1)} (${row.fused.imagesPerSecond.toFixed(0)})`,
      row.pytorch ? `${row.pytorch.medianMs.toFixed(1)} (${row.pytorch.imagesPerSecond.toFixed(0)})` : '-',
      row.fusedOverPytorch === null ? '-' : `${row.fusedOverPytorch.toFixed(2)}x`,
      `${row.fusedSpeedup.toFixed(2)}x`,
    ]),
  );
  console.log(
    `\nMain job (SupCon, ResNet-8, batch ${r.mainJob.batch} x 2 views, augmentation, projection head, fused loss), ` +
      `through the trainer: ${r.mainJob.imagesPerSecond.toFixed(0)} images/s over ${r.mainJob.steps} steps`,
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : undefined);
  const result = await runTrainingBench({
    ...(arg('models') ? { models: arg('models')!.split(',') } : {}),
    ...(arg('steps') ? { steps: Number(arg('steps')) } : {}),
    torch: !argv.includes('--no-torch'),
  });
  printTrainingTable(result);
  writeJson(arg('json') ?? 'bench/results/training.json', result);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
