/**
 * The memory queue's benchmark row (issue 12): SupCon at batch 64 on the embedded Fashion-MNIST
 * subset (ResNet-8), without and with a queue of 4,096 rows (`--queue-size 4096`), the same seed,
 * epochs and linear evaluation; reports the linear-evaluation test accuracy and the wall time.
 * A short run (a few epochs) on a shared 2-core host: the numbers compare the two settings, they
 * are not converged accuracies.
 *
 *   npx tsx bench/queue.ts [--epochs 2] [--linear-epochs 10] [--queue 4096] [--batch 64]
 *                          [--json bench/results/queue.json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { trainRun } from '../src/train/trainer';
import { machine, printTable, writeJson } from './util';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main() {
  await tf.setBackend('cpu');
  const epochs = flag('--epochs', 2);
  const linearEpochs = flag('--linear-epochs', 10);
  const queue = flag('--queue', 4096);
  const batchSize = flag('--batch', 64);
  const jsonAt = process.argv.indexOf('--json');
  const json = jsonAt >= 0 ? process.argv[jsonAt + 1] : 'bench/results/queue.json';
  const root = await mkdtemp(join(tmpdir(), 'supcon-queue-bench-'));
  const rows: Array<Record<string, number | string>> = [];
  try {
    for (const queueSize of [0, queue]) {
      const started = performance.now();
      const run = await trainRun(
        // Two views per image, as measured (the trainer's default for SupCon is now one).
        { method: 'supcon', arch: 'resnet8', views: 2, batchSize, epochs, warmupEpochs: 0, queueSize, linearEpochs, knnBank: 0, seed: 0 },
        { outDir: join(root, `q${queueSize}`), tensorboard: false },
      );
      const seconds = (performance.now() - started) / 1000;
      rows.push({
        queueSize,
        batchSize,
        epochs,
        linearEpochs,
        testAccuracy: run.result!.testAccuracy,
        finalLoss: run.metrics[run.metrics.length - 1].loss,
        seconds: Math.round(seconds),
      });
      console.log(JSON.stringify(rows[rows.length - 1]));
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  printTable(
    `SupCon, ResNet-8, fashion-mnist-mini, batch ${batchSize}, ${epochs} epochs + ${linearEpochs} linear epochs`,
    ['queue', 'test accuracy', 'last epoch loss', 'seconds'],
    rows.map((r) => [r.queueSize, (100 * (r.testAccuracy as number)).toFixed(2) + '%', (r.finalLoss as number).toFixed(4), r.seconds]),
  );
  writeJson(json, { machine: machine(), rows });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
