/**
 * Kernel-level profile of one ResNet training step on tfjs's cpu backend: which kernels the
 * step spends its time in, with or without the native kernels.
 *   npx tsx bench/profile_resnet.ts [--batch 16] [--model resnet8|resnet18] [--native]
 */
import * as tf from '@tensorflow/tfjs';
import { RESNET18_CIFAR, RESNET8, buildResNet, syntheticBatch, trainingLoss } from './resnet';

/** Time per kernel name over one step. */
export interface KernelProfileRow {
  kernel: string;
  calls: number;
  totalMs: number;
  share: number;
}

/** Profiles one training step (after one warm-up step) and returns per-kernel totals. */
export async function profileTrainingStep(options: {
  model: 'resnet8' | 'resnet18';
  batch: number;
}): Promise<{ rows: KernelProfileRow[]; stepMs: number }> {
  const spec = options.model === 'resnet8' ? RESNET8 : RESNET18_CIFAR;
  const model = buildResNet(spec);
  const { images, oneHot } = syntheticBatch(spec, options.batch);
  const optimizer = tf.train.sgd(0.01);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const step = () => {
    const loss = optimizer.minimize(() => trainingLoss(model, images, oneHot), true, vars);
    loss?.dataSync();
    loss?.dispose();
  };
  step();
  const start = performance.now();
  const info = await tf.profile(step);
  const stepMs = performance.now() - start;
  const byName = new Map<string, KernelProfileRow>();
  let total = 0;
  for (const k of info.kernels) {
    if (k.name.endsWith("__op")) continue;  // custom-gradient wrappers: their kernels are listed too
    const ms = k.kernelTimeMs as number;
    const row = byName.get(k.name) ?? { kernel: k.name, calls: 0, totalMs: 0, share: 0 };
    row.calls += 1;
    row.totalMs += ms;
    total += ms;
    byName.set(k.name, row);
  }
  const rows = [...byName.values()].sort((a, b) => b.totalMs - a.totalMs);
  for (const r of rows) r.share = r.totalMs / total;
  tf.dispose([images, oneHot]);
  model.dispose();
  optimizer.dispose();
  return { rows, stepMs };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  await tf.setBackend('cpu');
  if (argv.includes('--native')) {
    const { useNativeKernels } = await import('../src/kernels');
    console.log('native kernels:', useNativeKernels().join(', '));
  }
  const model = arg('model', 'resnet8') as 'resnet8' | 'resnet18';
  const batch = Number(arg('batch', '16'));
  const { rows, stepMs } = await profileTrainingStep({ model, batch });
  console.log(`${model}, batch ${batch}: profiled step ${stepMs.toFixed(0)} ms (profiling adds a data read per kernel)`);
  console.log('kernel'.padEnd(28) + 'calls'.padStart(7) + 'ms'.padStart(12) + 'share'.padStart(9));
  for (const r of rows) {
    if (r.share < 0.001) continue;
    console.log(
      r.kernel.padEnd(28) + String(r.calls).padStart(7) + r.totalMs.toFixed(1).padStart(12) + `${(100 * r.share).toFixed(1)}%`.padStart(9),
    );
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
