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
 *   npx tsx bench/training.ts [--models resnet8,resnet20,resnet18] [--steps 10] [--rounds 3]
 *                             [--no-torch] [--baseline-tree DIR] [--json bench/results/training.json]
 * --baseline-tree DIR also times the main job with the trainer of another checkout (built, with
 * its node_modules), e.g. the commit before a change: `git worktree add DIR <commit> && (cd DIR
 * && npm ci)`.
 * Each round runs fused, PyTorch and plain one after the other; medians are over every round's
 * steps (a shared host's load varies from second to second).
 * SUPCON_NUM_THREADS sets this side's threads; PyTorch gets the same count.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useNativeKernels } from '../src/kernels';
import { createEncoder, type EncoderArch } from '../src/models';
import { requireNative } from '../src/native';
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

/** `steps` timed training steps (ms) after 3 untimed ones. */
function timeTfjs(net: Network, fused: boolean, steps: number): number[] {
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
  return times;
}

/** Timed steps (ms) of the same network in PyTorch, or null when torch is not importable. */
function timeTorch(net: Network, steps: number, threads: number): { ms: number[]; version: string; threads: number } | null {
  const r = spawnSync(
    'python3',
    ['bench/torch/resnet_step.py', '--model', net.arch, '--batch', String(net.batch), '--threads', String(threads), '--steps', String(steps)],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return null;
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { torch: string; threads: number; ms: number[] };
  return { ms: out.ms, version: out.torch, threads: out.threads };
}

/** Whether PyTorch is importable here (a benchmark comparison only). */
export function torchAvailable(): boolean {
  return spawnSync('python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

export interface MainJobRow {
  /** Pre-training images per second (two views per sample): the median step after two warm-up steps. */
  imagesPerSecond: number;
  steps: number;
  batch: number;
}

/**
 * The main job's SupCon step through the trainer: one epoch of `steps` batches, no kNN / eval,
 * in a fresh Node process of the checkout `tree` (this one by default; another one, built, for a
 * before / after comparison: two copies of tfjs in one process would share one kernel registry).
 */
async function timeMainJob(steps: number, tree = resolvePath(__dirname, '..')): Promise<MainJobRow> {
  const dir = await mkdtemp(join(tmpdir(), 'supcon-bench-'));
  const batch = 256;
  try {
    const script = join(dir, 'main_job.ts');
    const config = { epochs: 1, limitTrain: batch * (steps + 2), limitTest: 16, knnBank: 0, knnQueries: 0, linearEpochs: 1 };
    const stepsFile = join(dir, 'steps.json');
    await writeFile(
      script,
      // As the CLI does: the cpu backend first (older trainers needed it to find the native kernels).
      `import { writeFileSync } from 'node:fs';\n` +
        `import * as tf from ${JSON.stringify(resolvePath(tree, 'node_modules/@tensorflow/tfjs'))};\n` +
        `import { trainRun } from ${JSON.stringify(resolvePath(tree, 'src/train'))};\n` +
        `const seconds: number[] = [];\n` +
        `tf.setBackend('cpu').then(() => trainRun(${JSON.stringify(config)}, { outDir: ${JSON.stringify(join(dir, 'run'))}, ` +
        `callbacks: { onStep: (s: { seconds: number }) => void seconds.push(s.seconds) } }))\n` +
        `  .then(() => { writeFileSync(${JSON.stringify(stepsFile)}, JSON.stringify(seconds)); process.exit(0); });\n`,
    );
    const r = spawnSync(process.execPath, [resolvePath(tree, 'node_modules/tsx/dist/cli.mjs'), script], { cwd: tree, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`the main job in ${tree} failed: ${r.stderr.slice(-2000)}`);
    // Steady state: the first two steps grow the output pool and warm the JIT.
    const seconds = (JSON.parse(await readFile(stepsFile, 'utf8')) as number[]).slice(2);
    return { imagesPerSecond: (2 * batch) / median(seconds), steps: seconds.length, batch };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface TrainingBenchResult {
  machine: ReturnType<typeof machine>;
  torch: string | null;
  rows: TrainingBenchRow[];
  mainJob: MainJobRow;
  /** The same measurement with another checkout's trainer (--baseline-tree), when given. */
  mainJobBaseline?: MainJobRow & { tree: string; commit: string; speedup: number };
}

export async function runTrainingBench(
  options: { models?: string[]; steps?: number; rounds?: number; torch?: boolean; baselineTree?: string } = {},
): Promise<TrainingBenchResult> {
  await tf.setBackend('cpu');
  requireNative();
  useNativeKernels();
  const steps = options.steps ?? 10;
  const rounds = options.rounds ?? 3;
  const threads = requireNative().info().cpu.threads;
  const withTorch = (options.torch ?? true) && torchAvailable();
  const rows: TrainingBenchRow[] = [];
  for (const key of options.models ?? Object.keys(NETWORKS)) {
    const net = NETWORKS[key];
    if (!net) throw new Error(`unknown model '${key}' (one of ${Object.keys(NETWORKS).join(', ')})`);
    const n = net.arch === 'resnet18' ? Math.max(3, Math.ceil(steps / 2)) : steps;
    // Rounds of the three, interleaved, so that a change in the machine's load (other tenants of
    // a shared host) hits every column alike; medians over all rounds' steps.
    const times = { fused: [] as number[], plain: [] as number[], torch: [] as number[] };
    let torchInfo: { version: string; threads: number } | null = null;
    for (let round = 0; round < rounds; round++) {
      times.fused.push(...timeTfjs(net, true, n));
      const t = withTorch ? timeTorch(net, n, threads) : null;
      if (t) {
        times.torch.push(...t.ms);
        torchInfo = { version: t.version, threads: t.threads };
      }
      times.plain.push(...timeTfjs(net, false, n));
    }
    const fused = stats(times.fused, net.batch);
    const plain = stats(times.plain, net.batch);
    const pytorch = torchInfo ? { ...stats(times.torch, net.batch), ...torchInfo } : null;
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
  // Interleaved with the baseline when there is one: current, baseline, current, baseline.
  const mainJobs: MainJobRow[] = [];
  const baselines: MainJobRow[] = [];
  for (let round = 0; round < (options.baselineTree ? 2 : 1); round++) {
    mainJobs.push(await timeMainJob(steps));
    if (options.baselineTree) baselines.push(await timeMainJob(steps, options.baselineTree));
  }
  const best = (rows: MainJobRow[]) => ({ ...rows[0], imagesPerSecond: median(rows.map((r) => r.imagesPerSecond)) });
  const mainJob = best(mainJobs);
  const result: TrainingBenchResult = { machine: machine(), torch: rows.find((r) => r.pytorch)?.pytorch?.version ?? null, rows, mainJob };
  if (options.baselineTree) {
    const commit = spawnSync('git', ['-C', options.baselineTree, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
    const baseline = best(baselines);
    result.mainJobBaseline = { ...baseline, tree: options.baselineTree, commit, speedup: mainJob.imagesPerSecond / baseline.imagesPerSecond };
  }
  return result;
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
  if (r.mainJobBaseline) {
    console.log(
      `Main job with the trainer of ${r.mainJobBaseline.commit} (${r.mainJobBaseline.tree}): ` +
        `${r.mainJobBaseline.imagesPerSecond.toFixed(0)} images/s; this tree is ${r.mainJobBaseline.speedup.toFixed(2)}x`,
    );
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : undefined);
  const result = await runTrainingBench({
    ...(arg('models') ? { models: arg('models')!.split(',') } : {}),
    ...(arg('steps') ? { steps: Number(arg('steps')) } : {}),
    ...(arg('rounds') ? { rounds: Number(arg('rounds')) } : {}),
    torch: !argv.includes('--no-torch'),
    ...(arg('baseline-tree') ? { baselineTree: arg('baseline-tree') } : {}),
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
