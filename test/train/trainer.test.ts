import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalize, Rng, twoViews, type ImageDataset } from '../../src/data';
import { supConLoss } from '../../src/loss/op';
import { InvalidArgumentError } from '../../src/errors';
import { CHECKPOINT_FILES } from '../../src/train/checkpoint';
import { resolveTrainConfig, type TrainConfig } from '../../src/train/config';
import { CheckpointError } from '../../src/train/errors';
import { embedCheckpoint, evaluateCheckpoint, openCheckpoint, plotRun, writeEmbedding } from '../../src/train/evaluate';
import { readMetrics } from '../../src/train/metrics';
import { buildRunModels, disposeRunModels } from '../../src/train/run_models';
import { readTrainingState, RUN_FILES, type StartInfo } from '../../src/train/run_state';
import { resumeRun, trainRun, type TrainRunResult } from '../../src/train/trainer';
import { smallSplits, tinyConfig, tinyEncoder } from './helpers';

let root: string;
let data: { train: ImageDataset; test: ImageDataset };
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'supcon-train-'));
  data = await smallSplits(64, 64);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const common = { buildEncoder: tinyEncoder, fastKernels: false } as const;
const slice = (n: number) => ({ train: { ...data.train, count: n, images: data.train.images.subarray(0, n * 784), labels: data.train.labels.subarray(0, n) }, test: data.test });

/** SupCon loss of `model` on two fixed augmented views of the training images (BatchNorm on batch statistics). */
function fixedViewLoss(model: tf.LayersModel, train: ImageDataset): number {
  return tf.tidy(() => {
    const images = tf.tensor4d(Float32Array.from(train.images, (v) => v / 255), [train.count, 28, 28, 1]);
    const [a, b] = twoViews(images, new Rng(123));
    const z = model.apply(normalize(tf.concat([a, b]), train.normalization), { training: true }) as tf.Tensor2D;
    const features = tf.transpose(tf.reshape(z, [2, train.count, -1]), [1, 0, 2]);
    return supConLoss(features, train.labels, { temperature: 0.1 }).dataSync()[0];
  });
}

describe('SupCon training run', () => {
  let run: TrainRunResult;
  let config: TrainConfig;
  let initialLoss: number;
  const tensorsPerStep: number[] = [];
  let tensorsBefore = 0;
  let start: StartInfo | undefined;

  beforeAll(async () => {
    config = resolveTrainConfig(tinyConfig({ epochs: 3, batchSize: 32, lr: 0.2 }));
    const initial = buildRunModels(config, [28, 28, 1], 10, tinyEncoder);
    initialLoss = fixedViewLoss(initial.trainModel, data.train);
    disposeRunModels(initial);
    tensorsBefore = tf.memory().numTensors;
    run = await trainRun(config, {
      ...common,
      outDir: join(root, 'supcon'),
      datasets: data,
      callbacks: { onStep: () => tensorsPerStep.push(tf.memory().numTensors), onStart: (info) => (start = info) },
    });
  });

  it("augments 28-pixel grayscale images with the crop-flip preset when the config says 'auto'", async () => {
    expect(config.augment).toBe('auto');
    expect(start?.augmentation).toBe('flip');
    expect((await readTrainingState(run.outDir)).config.augment).toBe('auto');
  });

  it('completes, lowers the loss on fixed views, and the kNN monitor beats chance', async () => {
    expect(run.status).toBe('complete');
    expect(run.epochs).toBe(3);
    expect(run.step).toBe(6);
    const trained = await openCheckpoint(run.outDir, { buildEncoder: tinyEncoder, fastKernels: false });
    const trainedLoss = fixedViewLoss(trained.models.trainModel, data.train);
    disposeRunModels(trained.models);
    expect(trainedLoss).toBeLessThan(initialLoss - 0.05);
    const knn = run.metrics.map((m) => m.knnAccuracy!);
    expect(knn).toHaveLength(3);
    expect(knn[2]).toBeGreaterThan(0.1); // 10 classes: chance is 0.1
    expect(run.result!.evaluation).toBe('linear');
    expect(run.result!.testCount).toBe(64);
  });

  it('leaks no tensors: the count is the same after every step and after the run', () => {
    expect(tensorsPerStep).toHaveLength(6);
    expect(new Set(tensorsPerStep.slice(1)).size).toBe(1);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('writes metrics.jsonl (one line per epoch and the result), result.json and state.json', async () => {
    const records = await readMetrics(join(run.outDir, RUN_FILES.metrics));
    expect(records.map((r) => r.type)).toEqual(['epoch', 'epoch', 'epoch', 'result']);
    expect(records.slice(0, 3)).toEqual(run.metrics);
    expect(records[3]).toEqual(run.result);
    const result = JSON.parse(await readFile(join(run.outDir, RUN_FILES.result), 'utf8'));
    expect(result.testAccuracy).toBe(run.result!.testAccuracy);
    expect(result.config).toEqual(config);
    const state = await readTrainingState(run.outDir);
    expect(state).toMatchObject({ epoch: 3, batch: 0, step: 6, stepsPerEpoch: 2, pretrainingDone: true, trainCount: 64 });
    expect(state.rng).toMatchObject({ seed: 0, epoch: 3, batch: 0 });
    // The learning rate follows the cosine schedule: the last step of epoch 3 is step 5 of 6.
    expect(run.metrics[2].lr).toBeCloseTo(0.2 * 0.5 * (1 + Math.cos((Math.PI * 5) / 6)), 10);
  });

  it('eval reports the test accuracy of the saved linear classifier, equal to the run\'s result', async () => {
    const evaluation = await evaluateCheckpoint(run.outDir, { ...common, limitTest: 64 });
    expect(evaluation.classifier).toBe('saved-linear');
    expect(evaluation.testAccuracy).toBe(run.result!.testAccuracy);
    expect(evaluation.epochs).toBe(3);
  });

  it('embeds images, maps them with UMAP and draws the map and the curves', async () => {
    const embedding = await embedCheckpoint(run.outDir, { ...common, limit: 30, neighbors: 5 });
    expect(embedding).toMatchObject({ count: 30, dim: 16, kind: 'encoder', split: 'test' });
    // Class-balanced: 3 of each of the 10 classes.
    expect(new Set(embedding.labels).size).toBe(10);
    expect(embedding.map).toHaveLength(60);
    expect(embedding.map!.every(Number.isFinite)).toBe(true);
    const files = await writeEmbedding(embedding, join(root, 'emb.json'));
    expect(files).toEqual([join(root, 'emb.json'), join(root, 'emb.umap.svg'), join(root, 'emb.umap.png')]);
    const json = JSON.parse(await readFile(files[0], 'utf8'));
    expect(json.vectors).toHaveLength(30);
    expect(json.vectors[0]).toHaveLength(16);
    const svg = await readFile(files[1], 'utf8');
    expect(svg).toContain('<svg');
    expect(svg).toContain('Ankle boot');
    const png = await readFile(files[2]);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    const tsv = await writeEmbedding({ ...embedding, map: undefined }, join(root, 'emb.tsv'));
    expect(tsv).toEqual([join(root, 'emb.tsv'), join(root, 'emb.labels.tsv')]);
    expect((await readFile(tsv[0], 'utf8')).trim().split('\n')).toHaveLength(30);
    const projection = await embedCheckpoint(run.outDir, { ...common, limit: 10, kind: 'projection', map: false });
    expect(projection.dim).toBe(16);
    const [curvesSvg, curvesPng] = await plotRun(run.outDir);
    expect(await readFile(curvesSvg, 'utf8')).toContain('kNN accuracy');
    expect((await stat(curvesPng)).size).toBeGreaterThan(1000);
  });

  it('refuses to start a new run over an existing checkpoint', async () => {
    await expect(trainRun(config, { ...common, outDir: run.outDir, datasets: data })).rejects.toThrow(InvalidArgumentError);
  });

  it('refuses an output path that is a file, naming options.outDir', async () => {
    const file = join(run.outDir, CHECKPOINT_FILES.state);
    await expect(trainRun(config, { ...common, outDir: file, datasets: data })).rejects.toThrow(
      /^Expected a directory, or a path to create one at for options\.outDir but received .*which is a file$/,
    );
  });

  it('resuming a finished run returns its result without training', async () => {
    let steps = 0;
    const again = await resumeRun({ ...common, outDir: run.outDir, datasets: data, callbacks: { onStep: () => steps++ } });
    expect(steps).toBe(0);
    expect(again.result).toEqual(run.result);
  });
});

describe('interrupt and resume', () => {
  it('continues an interrupted SimCLR run exactly where it stopped: same weights, optimizer state and metrics', async () => {
    const datasets = slice(32);
    const config = tinyConfig({ method: 'simclr', epochs: 2, batchSize: 16, knnBank: 16, knnQueries: 16, linearEpochs: 2, optimizer: 'lars', lr: 1 });
    const straight = await trainRun(config, { ...common, outDir: join(root, 'straight'), datasets });
    expect(straight.status).toBe('complete');

    // Stop after step 3: the middle of epoch 2.
    const controller = new AbortController();
    const stopped = await trainRun(config, {
      ...common,
      outDir: join(root, 'resumed'),
      datasets,
      signal: controller.signal,
      callbacks: { onStep: (s) => s.step === 3 && controller.abort() },
    });
    expect(stopped.status).toBe('interrupted');
    const state = await readTrainingState(stopped.outDir);
    expect(state).toMatchObject({ epoch: 1, batch: 1, step: 3 });
    expect(state.partialEpoch.steps).toBe(1);

    const steps: number[] = [];
    const resumed = await resumeRun({ ...common, outDir: stopped.outDir, datasets, callbacks: { onStep: (s) => steps.push(s.step) } });
    expect(steps).toEqual([4]);
    expect(resumed.status).toBe('complete');
    for (const file of [CHECKPOINT_FILES.weights, CHECKPOINT_FILES.optimizerWeights]) {
      expect((await readFile(join(stopped.outDir, file))).equals(await readFile(join(straight.outDir, file)))).toBe(true);
    }
    const strip = (r: object) => ({ ...r, time: undefined, seconds: undefined, imagesPerSecond: undefined });
    expect(resumed.metrics.map(strip)).toEqual(straight.metrics.map(strip));
    expect(resumed.result!.testAccuracy).toBe(straight.result!.testAccuracy);
  });

  it('resumes at the next epoch after a stop at an epoch boundary', async () => {
    const datasets = slice(32);
    const config = tinyConfig({ epochs: 2, batchSize: 16, knnBank: 0, linearEpochs: 1 });
    const controller = new AbortController();
    const stopped = await trainRun(config, {
      ...common,
      outDir: join(root, 'boundary'),
      datasets,
      signal: controller.signal,
      callbacks: { onStep: (s) => s.step === 2 && controller.abort() },
    });
    expect(stopped.status).toBe('interrupted');
    expect(await readTrainingState(stopped.outDir)).toMatchObject({ epoch: 1, batch: 0, step: 2 });
    const epochsStarted: Array<[number, number]> = [];
    const resumed = await resumeRun({ ...common, outDir: stopped.outDir, datasets, callbacks: { onEpochStart: (e, b) => epochsStarted.push([e, b]) } });
    expect(epochsStarted).toEqual([[1, 0]]);
    expect(resumed.metrics.map((m) => m.epoch)).toEqual([1, 2]);
    expect(resumed.metrics[0].knnAccuracy).toBeUndefined();
  });

  it('refuses to resume without a checkpoint, or on a dataset of another size', async () => {
    await expect(resumeRun({ ...common, outDir: join(root, 'none') })).rejects.toThrow(
      `Cannot use checkpoint file ${join(root, 'none', 'state.json')}: no such file`,
    );
    await expect(resumeRun({ ...common, outDir: join(root, 'boundary'), datasets: slice(48) })).rejects.toThrow(
      /was saved for 32 training \/ 64 test images, but the dataset now gives 48 \/ 64/,
    );
    await expect(resumeRun({ ...common, outDir: join(root, 'boundary'), datasets: slice(48) })).rejects.toBeInstanceOf(CheckpointError);
  });
});

describe('augmentation and loss variant settings', () => {
  /** Weights after one epoch on 32 images, and the first step's loss. */
  async function oneEpoch(name: string, overrides: Partial<TrainConfig>): Promise<{ weights: Buffer; firstLoss: number; augmentation?: string }> {
    let firstLoss = NaN;
    let augmentation: string | undefined;
    const run = await trainRun(tinyConfig({ epochs: 1, batchSize: 16, knnBank: 0, linearEpochs: 1, ...overrides }), {
      ...common,
      outDir: join(root, name),
      datasets: slice(32),
      callbacks: { onStep: (s) => s.step === 1 && (firstLoss = s.loss), onStart: (i) => (augmentation = i.augmentation) },
    });
    return { weights: await readFile(join(run.outDir, CHECKPOINT_FILES.weights)), firstLoss, augmentation };
  }

  it('the augmentation the config names is the one the steps use; the same setting repeats exactly', async () => {
    const none = await oneEpoch('aug-none', { augment: 'none' });
    const again = await oneEpoch('aug-none-again', { augment: 'none' });
    const shifted = await oneEpoch('aug-pad', { augment: { padding: 4, cropScale: [1, 1], jitterProbability: 0, flipProbability: 0 } });
    expect(none.augmentation).toBe('none');
    expect(shifted.augmentation).toBe('custom');
    expect(none.weights.equals(again.weights)).toBe(true);
    expect(none.weights.equals(shifted.weights)).toBe(false);
  });

  it('lossVariant reaches the loss: L_in and L_out differ on the same first batch', async () => {
    const out = await oneEpoch('variant-out', { augment: 'none', lossVariant: 'out' });
    const inside = await oneEpoch('variant-in', { augment: 'none', lossVariant: 'in' });
    expect(Number.isFinite(out.firstLoss) && Number.isFinite(inside.firstLoss)).toBe(true);
    // Jensen: log of a mean >= mean of logs, so L_in <= L_out.
    expect(inside.firstLoss).toBeLessThan(out.firstLoss);
  });

  it("reads a state.json saved before the 'augment' setting existed as the paper's recipe", async () => {
    const dir = join(root, 'aug-none');
    const path = join(dir, CHECKPOINT_FILES.state);
    const state = JSON.parse(await readFile(path, 'utf8'));
    delete state.config.augment;
    await writeFile(path, JSON.stringify(state));
    expect((await readTrainingState(dir)).config.augment).toBe('paper');
  });

  it('trains SupCon on one view per image (positives: the other images of the class)', async () => {
    const one = await oneEpoch('views-1', { augment: 'none', views: 1 });
    const two = await oneEpoch('views-2', { augment: 'none', views: 2 });
    expect(Number.isFinite(one.firstLoss)).toBe(true);
    // Without augmentation the second view is a copy: every anchor has one more (identical) positive.
    expect(one.firstLoss).not.toBe(two.firstLoss);
    expect(() => resolveTrainConfig({ method: 'simclr', views: 1 })).toThrow(/at least 2 with method 'simclr' \(its only positives are other views\) for config\.views/);
  });

  it('rejects a bad setting naming it', () => {
    expect(() => resolveTrainConfig({ augment: 'strong' as never })).toThrow(/for config\.augment but/);
    expect(() => resolveTrainConfig({ augment: { padding: -1 } })).toThrow(/for config\.augment\.padding/);
    expect(() => resolveTrainConfig({ lossVariant: 'mid' as never })).toThrow(/for config\.lossVariant/);
  });
});

describe('cross-entropy baseline', () => {
  it('trains encoder and classifier head and scores the head on the test set', async () => {
    const run = await trainRun(tinyConfig({ method: 'ce', epochs: 1, batchSize: 16, knnBank: 16, knnQueries: 16 }), {
      ...common,
      outDir: join(root, 'ce'),
      datasets: slice(32),
    });
    expect(run.result).toMatchObject({ method: 'ce', evaluation: 'classifier', testCount: 64 });
    const evaluation = await evaluateCheckpoint(run.outDir, { ...common, limitTest: 64 });
    expect(evaluation).toMatchObject({ classifier: 'ce-head', testAccuracy: run.result!.testAccuracy });
    await expect(embedCheckpoint(run.outDir, { ...common, kind: 'projection' })).rejects.toThrow(/options\.kind/);
  });
});
