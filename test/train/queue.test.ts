// The cross-batch memory queue (src/train/queue.ts, `--queue-size`): first in first out, its
// contents across steps, its checkpoint bytes, and a resumed run that continues with exactly the
// rows an uninterrupted one holds.
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageDataset } from '../../src/data';
import { InvalidArgumentError } from '../../src/errors';
import { CHECKPOINT_FILES } from '../../src/train/checkpoint';
import { resolveTrainConfig } from '../../src/train/config';
import { CheckpointError } from '../../src/train/errors';
import { decodeQueue, encodeQueue, MemoryQueue, QUEUE_FILE } from '../../src/train/queue';
import { readTrainingState } from '../../src/train/run_state';
import { resumeRun, trainRun } from '../../src/train/trainer';
import { smallSplits, tinyConfig, tinyEncoder } from './helpers';

/** Rows whose every entry is the row's number (r, r, ...), labels 100 + r. */
function rows(first: number, n: number, dim: number): { features: Float32Array; labels: Int32Array } {
  const features = new Float32Array(n * dim);
  for (let r = 0; r < n; r++) features.fill(first + r, r * dim, (r + 1) * dim);
  return { features, labels: Int32Array.from({ length: n }, (_, r) => 100 + first + r) };
}

describe('MemoryQueue', () => {
  it('keeps the last `size` rows, oldest first, with their labels, across pushes that wrap', () => {
    const q = new MemoryQueue(5, 3, true);
    expect(q.rows).toBe(0);
    expect(q.contrastSet()).toBeUndefined();
    const a = rows(0, 3, 3);
    q.push(a.features, a.labels);
    expect(Array.from((q.contents().labels as Int32Array))).toEqual([100, 101, 102]);
    const b = rows(3, 4, 3);
    q.push(b.features, b.labels); // 7 rows seen: 2..6 stay
    const c = q.contents();
    expect(c.rows).toBe(5);
    expect(Array.from(c.labels as Int32Array)).toEqual([102, 103, 104, 105, 106]);
    expect(Array.from(c.features.filter((_, i) => i % 3 === 0))).toEqual([2, 3, 4, 5, 6]);
    const d = rows(7, 12, 3); // more than the queue holds at once: its last 5
    q.push(d.features, d.labels);
    expect(Array.from((q.contents().labels as Int32Array))).toEqual([114, 115, 116, 117, 118]);
    const set = q.contrastSet()!;
    expect(set.features.shape).toEqual([5, 3]);
    expect(Array.from(set.features.dataSync().filter((_, i) => i % 3 === 0))).toEqual([14, 15, 16, 17, 18]);
    set.features.dispose();
  });

  it('round-trips through its checkpoint bytes, and a restored queue continues like the original', () => {
    for (const labeled of [true, false]) {
      const q = new MemoryQueue(4, 2, labeled);
      const a = rows(0, 6, 2);
      q.push(a.features, labeled ? a.labels : null);
      const { info, data } = encodeQueue(q);
      expect(info).toEqual({ size: 4, dim: 2, labeled, rows: 4 });
      const back = decodeQueue(info, data, 'queue.bin');
      expect(back.contents()).toEqual(q.contents());
      const more = rows(6, 3, 2);
      q.push(more.features, labeled ? more.labels : null);
      back.push(more.features, labeled ? more.labels : null);
      expect(back.contents()).toEqual(q.contents());
      expect(() => decodeQueue(info, data.subarray(1), 'queue.bin')).toThrow(/queue\.bin holds/);
    }
  });

  it('holds label sets in a multi-label queue, through its checkpoint bytes too', () => {
    const q = new MemoryQueue(3, 2, true, 4);
    const a = rows(0, 4, 2);
    const sets = Uint8Array.from([1, 0, 0, 0, /**/ 0, 1, 0, 0, /**/ 0, 0, 1, 1, /**/ 1, 1, 1, 1]);
    q.push(a.features, { sets, numLabels: 4 });
    expect(q.contents().labels).toEqual({ sets: sets.subarray(4), numLabels: 4 });
    const { info, data } = encodeQueue(q);
    expect(info).toEqual({ size: 3, dim: 2, labeled: true, numLabels: 4, rows: 3 });
    expect(decodeQueue(info, data, 'queue.bin').contents()).toEqual(q.contents());
    expect(() => q.push(a.features, a.labels)).toThrow(/label sets of 4 labels.*class ids/);
    expect(() => q.push(a.features, { sets, numLabels: 2 })).toThrow(/sets of 2/);
  });

  it('refuses rows of another width, missing labels, and labels for an unlabeled queue', () => {
    const q = new MemoryQueue(4, 3, true);
    expect(() => q.push(new Float32Array(4), Int32Array.of(1))).toThrow(InvalidArgumentError);
    expect(() => q.push(new Float32Array(6), null)).toThrow(/Int32Array/);
    expect(() => new MemoryQueue(4, 3, false).push(new Float32Array(3), Int32Array.of(1))).toThrow(/unlabeled queue/);
    expect(() => new MemoryQueue(0, 3, true)).toThrow(/queue\.size/);
  });

  it('is a contrastive option: refused for the cross-entropy baseline', () => {
    expect(() => resolveTrainConfig({ method: 'ce', queueSize: 8 })).toThrow(/config\.queueSize/);
    expect(resolveTrainConfig({}).queueSize).toBe(0);
  });
});

describe('training with a queue', () => {
  let root: string;
  let datasets: { train: ImageDataset; test: ImageDataset };
  const common = { buildEncoder: tinyEncoder, fastKernels: false, tensorboard: false } as const;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    root = await mkdtemp(join(tmpdir(), 'supcon-queue-'));
    datasets = await smallSplits(32, 16);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('saves the queue in each checkpoint and resumes with the same rows: same weights, optimizer and queue as a straight run', async () => {
    // 2 steps of 16 images x 2 views per epoch: 32 rows a step, a queue of 40 wraps in step 2.
    const config = tinyConfig({ epochs: 2, batchSize: 16, views: 2, queueSize: 40, knnBank: 0, linearEpochs: 1 });
    const straight = await trainRun(config, { ...common, outDir: join(root, 'straight'), datasets });
    expect(straight.status).toBe('complete');
    const state = await readTrainingState(straight.outDir);
    expect(state.queue).toEqual({ size: 40, dim: 16, labeled: true, rows: 40 });
    const saved = await readFile(join(straight.outDir, QUEUE_FILE));
    expect(saved.byteLength).toBe(40 * 16 * 4 + 40 * 4);
    // The labels are those of the last steps' samples: every row's label a class of the dataset.
    const labels = new Int32Array(saved.buffer.slice(saved.byteOffset + 40 * 16 * 4, saved.byteOffset + saved.byteLength));
    const classes = new Set(datasets.train.labels);
    for (const l of labels) expect(classes.has(l)).toBe(true);
    // Each view's rows are unit vectors (the projection head normalizes): detached projections.
    const features = new Float32Array(saved.buffer.slice(saved.byteOffset, saved.byteOffset + 40 * 16 * 4));
    for (let r = 0; r < 40; r++) {
      let ss = 0;
      for (let k = 0; k < 16; k++) ss += features[r * 16 + k] ** 2;
      expect(Math.abs(Math.sqrt(ss) - 1)).toBeLessThan(1e-4);
    }

    // Stop after step 3 (epoch 2, batch 1) and resume.
    const controller = new AbortController();
    const stopped = await trainRun(config, {
      ...common,
      outDir: join(root, 'resumed'),
      datasets,
      signal: controller.signal,
      callbacks: { onStep: (s) => s.step === 3 && controller.abort() },
    });
    expect(stopped.status).toBe('interrupted');
    expect((await readTrainingState(stopped.outDir)).queue).toEqual({ size: 40, dim: 16, labeled: true, rows: 40 });
    const resumed = await resumeRun({ ...common, outDir: stopped.outDir, datasets });
    expect(resumed.status).toBe('complete');
    for (const file of [CHECKPOINT_FILES.weights, CHECKPOINT_FILES.optimizerWeights, QUEUE_FILE]) {
      expect((await readFile(join(stopped.outDir, file))).equals(await readFile(join(straight.outDir, file))), file).toBe(true);
    }
    expect(resumed.metrics.map((m) => m.loss)).toEqual(straight.metrics.map((m) => m.loss));
  });

  it('changes training (the queue is in the loss), and a checkpoint without its queue is refused on resume', async () => {
    const config = tinyConfig({ epochs: 1, batchSize: 16, knnBank: 0, linearEpochs: 1 });
    const plain = await trainRun(config, { ...common, outDir: join(root, 'plain'), datasets });
    const queued = await trainRun({ ...config, queueSize: 64 }, { ...common, outDir: join(root, 'queued'), datasets });
    // Step 1 has an empty queue, so the first losses agree; step 2 contrasts against 32 more rows.
    expect(queued.metrics[0].loss).not.toBe(plain.metrics[0].loss);
    expect((await readFile(join(queued.outDir, CHECKPOINT_FILES.weights))).equals(await readFile(join(plain.outDir, CHECKPOINT_FILES.weights)))).toBe(false);

    const controller = new AbortController();
    const stopped = await trainRun({ ...config, epochs: 2, queueSize: 64 }, {
      ...common,
      outDir: join(root, 'lost'),
      datasets,
      signal: controller.signal,
      callbacks: { onStep: (s) => s.step === 1 && controller.abort() },
    });
    expect(stopped.status).toBe('interrupted');
    await unlink(join(stopped.outDir, QUEUE_FILE));
    await expect(resumeRun({ ...common, outDir: stopped.outDir, datasets })).rejects.toBeInstanceOf(CheckpointError);
  });
});
