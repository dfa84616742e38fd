/**
 * Using a saved run: rebuilding its models from state.json with the checkpoint's weights,
 * scoring it on the test set, embedding images, and drawing its curves.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { datasetInfo, firstPerClass, Rng, SPLITS, loadDataset, subsetDataset, type ImageDataset, type Split } from '../data';
import { createLinearClassifier } from '../models';
import { CHECKPOINT_FILES, loadWeightsInto } from './checkpoint';
import { resolveTrainConfig, type TrainConfig } from './config';
import { CheckpointError } from './errors';
import { enableFastKernels } from './fast_kernels';
import { accuracyOfLogits, firstRecords, predictDataset } from './features';
import { classifierAccuracy, trainLinearOnEncoder } from './linear_eval';
import { latestEpochs, readMetrics, type ResultRecord } from './metrics';
import { curvesSpec, embeddingMapSpec, writeChart } from './plots';
import { buildRunModels, derivedSeed, disposeRunModels, SEED_STREAMS, type EncoderBuilder, type RunModels } from './run_models';
import { readTrainingState, RUN_FILES, type TrainingState } from './run_state';

/** Options shared by the functions that open a checkpoint. */
export interface OpenCheckpointOptions {
  /** Folder of the dataset files, when they moved since training. */
  dataDir?: string;
  /** Builds the encoder of runs whose arch is 'custom'. */
  buildEncoder?: EncoderBuilder;
  /** Register the native tfjs kernels when available (default true). */
  fastKernels?: boolean;
}

/** A checkpoint opened for inference. Dispose `models` with `disposeRunModels`. */
export interface OpenedCheckpoint {
  dir: string;
  config: TrainConfig;
  state: TrainingState;
  models: RunModels;
}

/**
 * Rebuilds a run's models from its state.json and loads the checkpoint's weights.
 * @throws {@link CheckpointError} when the directory holds no usable checkpoint.
 */
export async function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): Promise<OpenedCheckpoint> {
  validate.string('dir', dir);
  const o = validate.options('options', options, ['dataDir', 'buildEncoder', 'fastKernels']);
  if (!existsSync(dir)) throw new CheckpointError(dir, 'no such directory');
  if (o.fastKernels !== false) enableFastKernels();
  const state = await readTrainingState(dir);
  const config = resolveTrainConfig({ ...state.config, ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }) });
  const info = datasetInfo(config.dataset);
  const models = buildRunModels(config, [info.height, info.width, info.channels], info.numClasses, o.buildEncoder as EncoderBuilder | undefined);
  try {
    await loadWeightsInto(models.trainModel, dir);
  } catch (e) {
    disposeRunModels(models);
    throw e;
  }
  return { dir, config, state, models };
}

/** One split of a run's dataset, from the run's data folder. */
export async function loadSplit(config: TrainConfig, split: Split): Promise<ImageDataset> {
  return loadDataset(config.dataset, { split, ...(config.dataDir === undefined ? {} : { dataDir: config.dataDir }) });
}

/** Options of {@link evaluateCheckpoint}. */
export interface EvaluateOptions extends OpenCheckpointOptions {
  /** Test images to score (default: the run's own limit, else all). */
  limitTest?: number;
  /** Train a new linear classifier even when the run saved one (default false). */
  retrain?: boolean;
  /** Epochs of a newly trained linear classifier (default: the run's). */
  linearEpochs?: number;
}

/** What {@link evaluateCheckpoint} measured. */
export interface EvaluationResult extends Omit<ResultRecord, 'type' | 'epochs' | 'time' | 'trainAccuracy'> {
  /** Pre-training epochs completed in the checkpoint. */
  epochs: number;
  /** Where the classifier came from. */
  classifier: 'ce-head' | 'saved-linear' | 'trained-linear';
  trainAccuracy?: number;
}

/** Scores datasets with an opened checkpoint's classifier; see {@link checkpointScorer}. */
export interface CheckpointScorer {
  /** Where the classifier came from. */
  classifier: EvaluationResult['classifier'];
  /** 'linear' (a linear classifier on the frozen encoder) or 'classifier' (the CE head). */
  evaluation: ResultRecord['evaluation'];
  /** Accuracy of the training features when a linear classifier was trained just now. */
  trainAccuracy?: number;
  /** Fraction of the dataset's images classified correctly. */
  accuracy(dataset: ImageDataset): number;
  /** Frees the classifier it holds (not the checkpoint's models). */
  dispose(): void;
}

/**
 * The classifier of an opened checkpoint, ready to score any split or a corrupted copy of one:
 * the cross-entropy head of a CE run; for a contrastive run the linear classifier its final
 * evaluation saved, or (when there is none, or `retrain` is set) a new one trained on the frozen
 * encoder's features of the run's training images.
 */
export async function checkpointScorer(
  opened: OpenedCheckpoint,
  options: { retrain?: boolean; linearEpochs?: number } = {},
): Promise<CheckpointScorer> {
  const o = validate.options('options', options, ['retrain', 'linearEpochs']);
  const retrain = o.retrain === undefined ? false : validate.boolean('options.retrain', o.retrain);
  const linearEpochs = o.linearEpochs === undefined ? undefined : validate.integer('options.linearEpochs', o.linearEpochs, 1);
  const { config, models, dir } = opened;
  if (config.method === 'ce') {
    return {
      classifier: 'ce-head',
      evaluation: 'classifier',
      accuracy: (dataset) => {
        const logits = predictDataset(models.trainModel, dataset) as tf.Tensor2D;
        try {
          return accuracyOfLogits(logits, dataset.labels);
        } finally {
          logits.dispose();
        }
      },
      dispose: () => undefined,
    };
  }
  const linearScorer = (classifier: tf.LayersModel, source: 'saved-linear' | 'trained-linear', trainAccuracy?: number): CheckpointScorer => ({
    classifier: source,
    evaluation: 'linear',
    ...(trainAccuracy === undefined ? {} : { trainAccuracy }),
    accuracy: (dataset) => {
      const features = predictDataset(models.encoder, dataset) as tf.Tensor2D;
      try {
        return classifierAccuracy(classifier, features, dataset.labels);
      } finally {
        features.dispose();
      }
    },
    dispose: () => classifier.dispose(),
  });
  const linearDir = join(dir, RUN_FILES.linearClassifier);
  if (!retrain && existsSync(join(linearDir, CHECKPOINT_FILES.model))) {
    const featureDim = models.encoder.outputs[0].shape[1] as number;
    const classifier = createLinearClassifier({ inputDim: featureDim, numClasses: datasetInfo(config.dataset).numClasses });
    try {
      await loadWeightsInto(classifier, linearDir);
    } catch (e) {
      classifier.dispose();
      throw e;
    }
    return linearScorer(classifier, 'saved-linear');
  }
  const train = firstRecords(await loadSplit(config, 'train'), config.limitTrain);
  const trained = trainLinearOnEncoder(models.encoder, train, {
    epochs: linearEpochs ?? config.linearEpochs,
    learningRate: config.linearLr,
    seed: derivedSeed(config.seed, SEED_STREAMS.linear),
  });
  return linearScorer(trained.classifier, 'trained-linear', trained.trainAccuracy);
}

/**
 * Test accuracy of a checkpoint: the cross-entropy head of a CE run, or for a contrastive run
 * the linear classifier saved by its final evaluation (or a new one trained on the frozen
 * encoder when there is none, or when `retrain` is set); see {@link checkpointScorer}.
 */
export async function evaluateCheckpoint(dir: string, options: EvaluateOptions = {}): Promise<EvaluationResult> {
  const o = validate.options('options', options, ['dataDir', 'buildEncoder', 'fastKernels', 'limitTest', 'retrain', 'linearEpochs']);
  const limitTest = o.limitTest === undefined ? undefined : validate.integer('options.limitTest', o.limitTest, 1);
  const opened = await openCheckpoint(dir, {
    ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }),
    ...(o.buildEncoder === undefined ? {} : { buildEncoder: o.buildEncoder as EncoderBuilder }),
    ...(o.fastKernels === undefined ? {} : { fastKernels: o.fastKernels as boolean }),
  });
  const { config, models, state } = opened;
  try {
    const scorer = await checkpointScorer(opened, {
      ...(o.retrain === undefined ? {} : { retrain: o.retrain as boolean }),
      ...(o.linearEpochs === undefined ? {} : { linearEpochs: o.linearEpochs as number }),
    });
    try {
      const test = firstRecords(await loadSplit(config, 'test'), limitTest ?? config.limitTest);
      return {
        method: config.method,
        testCount: test.count,
        epochs: state.epoch,
        evaluation: scorer.evaluation,
        classifier: scorer.classifier,
        testAccuracy: scorer.accuracy(test),
        ...(scorer.trainAccuracy === undefined ? {} : { trainAccuracy: scorer.trainAccuracy }),
      };
    } finally {
      scorer.dispose();
    }
  } finally {
    disposeRunModels(models);
  }
}

/** Which vectors {@link embedCheckpoint} returns. */
export const EMBEDDING_KINDS = ['encoder', 'projection'] as const;
export type EmbeddingKind = (typeof EMBEDDING_KINDS)[number];

/** Options of {@link embedCheckpoint}. */
export interface EmbedOptions extends OpenCheckpointOptions {
  /** Split to embed (default 'test'). */
  split?: Split;
  /** Images to embed, class-balanced when possible (default 2000). */
  limit?: number;
  /** Encoder features (default) or the projection head's output (contrastive runs). */
  kind?: EmbeddingKind;
  /** Compute a 2-D UMAP of the embeddings (default true). */
  map?: boolean;
  /** UMAP neighbours (default 15). */
  neighbors?: number;
  /** Seed of UMAP's randomness (default: derived from the run's seed). */
  seed?: number;
}

/** Embeddings of a split. */
export interface Embedding {
  dataset: string;
  split: Split;
  kind: EmbeddingKind;
  count: number;
  dim: number;
  /** Row-major [count, dim]. */
  vectors: Float32Array;
  labels: Int32Array;
  classNames: readonly string[];
  /** Row-major [count, 2] UMAP coordinates, when computed. */
  map?: Float32Array;
}

/** Indices of up to `limit` records, balanced over classes when every class has enough. */
function balancedIndices(dataset: ImageDataset, limit: number): Int32Array {
  if (limit >= dataset.count) return Int32Array.from({ length: dataset.count }, (_, i) => i);
  const perClass = Math.floor(limit / dataset.numClasses);
  try {
    if (perClass > 0) return firstPerClass(dataset.labels, dataset.numClasses, perClass);
  } catch {
    // some class is short: fall back to the first records
  }
  return Int32Array.from({ length: limit }, (_, i) => i);
}

/** Runs UMAP (umap-js) on row-major vectors and returns row-major 2-D coordinates. */
export function umap2d(vectors: Float32Array, count: number, dim: number, options: { neighbors?: number; seed?: number } = {}): Float32Array {
  validate.typedArray('vectors', vectors, Float32Array, count * dim);
  const neighbors = validate.integer('options.neighbors', options.neighbors ?? 15, 2);
  if (count < 3) throw new CheckpointError('(embeddings)', `UMAP needs at least 3 points, got ${count}`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { UMAP } = require('umap-js') as typeof import('umap-js'); // loaded on first use
  const rng = new Rng(options.seed ?? 0);
  const rows: number[][] = [];
  for (let i = 0; i < count; i++) rows.push(Array.from(vectors.subarray(i * dim, (i + 1) * dim)));
  const umap = new UMAP({ nComponents: 2, nNeighbors: Math.min(neighbors, count - 1), minDist: 0.1, random: () => rng.next() });
  const coords = umap.fit(rows);
  const out = new Float32Array(count * 2);
  coords.forEach((p, i) => {
    out[2 * i] = p[0];
    out[2 * i + 1] = p[1];
  });
  return out;
}

/** Embeds images of a split with a checkpoint's encoder (or projection head), and maps them to 2-D. */
export async function embedCheckpoint(dir: string, options: EmbedOptions = {}): Promise<Embedding> {
  const o = validate.options('options', options, ['dataDir', 'buildEncoder', 'fastKernels', 'split', 'limit', 'kind', 'map', 'neighbors', 'seed']);
  const split = o.split === undefined ? 'test' : validate.oneOf('options.split', o.split, SPLITS);
  const limit = o.limit === undefined ? 2000 : validate.integer('options.limit', o.limit, 1);
  const kind = o.kind === undefined ? 'encoder' : validate.oneOf('options.kind', o.kind, EMBEDDING_KINDS);
  const map = o.map === undefined ? true : validate.boolean('options.map', o.map);
  const opened = await openCheckpoint(dir, {
    ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }),
    ...(o.buildEncoder === undefined ? {} : { buildEncoder: o.buildEncoder as EncoderBuilder }),
    ...(o.fastKernels === undefined ? {} : { fastKernels: o.fastKernels as boolean }),
  });
  const { config, models } = opened;
  try {
    if (kind === 'projection' && config.method === 'ce') {
      validate.fail('options.kind', "'encoder' (a cross-entropy run has no projection head)", kind);
    }
    const full = await loadSplit(config, split);
    const dataset = subsetDataset(full, balancedIndices(full, limit));
    const model = kind === 'encoder' ? models.encoder : models.trainModel;
    const output = predictDataset(model, dataset) as tf.Tensor2D;
    const vectors = Float32Array.from(output.dataSync());
    const dim = output.shape[1];
    output.dispose();
    const embedding: Embedding = {
      dataset: config.dataset,
      split,
      kind,
      count: dataset.count,
      dim,
      vectors,
      labels: dataset.labels,
      classNames: dataset.classNames,
    };
    if (map) {
      const seed = o.seed === undefined ? derivedSeed(config.seed, SEED_STREAMS.umap) : validate.integer('options.seed', o.seed, 0);
      embedding.map = umap2d(vectors, dataset.count, dim, {
        ...(o.neighbors === undefined ? {} : { neighbors: o.neighbors as number }),
        seed,
      });
    }
    return embedding;
  } finally {
    disposeRunModels(models);
  }
}

/**
 * Writes embeddings to `file`: `.json` (one object: labels, class names, vectors and map as
 * arrays of rows) or `.tsv` (vectors, one row per line, plus `<name>.labels.tsv` with the class
 * of each row: the TensorBoard projector's format). With a map, also draws it as
 * `<name>.umap.svg` and `<name>.umap.png`. Returns the paths written.
 */
export async function writeEmbedding(embedding: Embedding, file: string): Promise<string[]> {
  validate.string('file', file);
  const ext = extname(file).toLowerCase();
  if (ext !== '.json' && ext !== '.tsv') validate.fail('file', "a path ending in '.json' or '.tsv'", file);
  const base = file.slice(0, file.length - ext.length);
  const rows = (data: Float32Array, width: number): number[][] =>
    Array.from({ length: embedding.count }, (_, i) => Array.from(data.subarray(i * width, (i + 1) * width)));
  const written: string[] = [];
  if (ext === '.json') {
    const json = {
      dataset: embedding.dataset,
      split: embedding.split,
      kind: embedding.kind,
      count: embedding.count,
      dim: embedding.dim,
      classNames: embedding.classNames,
      labels: Array.from(embedding.labels),
      vectors: rows(embedding.vectors, embedding.dim),
      ...(embedding.map ? { map: rows(embedding.map, 2) } : {}),
    };
    await writeFile(file, JSON.stringify(json));
    written.push(file);
  } else {
    await writeFile(file, rows(embedding.vectors, embedding.dim).map((r) => r.join('\t')).join('\n') + '\n');
    const labelsFile = `${base}.labels.tsv`;
    await writeFile(labelsFile, Array.from(embedding.labels, (l) => embedding.classNames[l] ?? String(l)).join('\n') + '\n');
    written.push(file, labelsFile);
  }
  if (embedding.map) {
    const title = `UMAP of ${embedding.kind} embeddings (${embedding.dataset} ${embedding.split}, ${embedding.count} images)`;
    written.push(...(await writeChart(embeddingMapSpec(embedding.map, embedding.labels, embedding.classNames, title), `${base}.umap`)));
  }
  return written;
}

/**
 * Draws a run's training curves from its metrics.jsonl as `<base>.svg` and `<base>.png`
 * (default base: `<dir>/curves`). Returns the paths written.
 */
export async function plotRun(dir: string, basePath = join(dir, 'curves')): Promise<[string, string]> {
  const records = await readMetrics(join(dir, RUN_FILES.metrics));
  const epochs = latestEpochs(records);
  if (epochs.length === 0) throw new CheckpointError(join(dir, RUN_FILES.metrics), 'holds no epoch records yet');
  const results = records.filter((r): r is ResultRecord => r.type === 'result');
  let title = 'Training curves';
  try {
    const { config } = await readTrainingState(dir);
    title = `${config.method} ${config.arch} on ${config.dataset}`;
  } catch {
    // curves can be drawn from the metrics file alone
  }
  return writeChart(curvesSpec(epochs, results[results.length - 1], title), basePath);
}
