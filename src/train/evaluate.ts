/**
 * Using a saved run: rebuilding its models from state.json with the checkpoint's weights,
 * scoring it on the test set, embedding images, and drawing its curves.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, extname, join, resolve as resolvePath } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { firstPerClass, Rng, SPLITS, subsetDataset, type ImageDataset, type Split } from '../data';
import { createLinearClassifier } from '../models';
import { CHECKPOINT_FILES, loadWeightsInto } from './checkpoint';
import { resolveTrainConfig, type TrainConfig } from './config';
import { CheckpointError } from './errors';
import { enableFastKernels } from './fast_kernels';
import { accuracyOfLogits, firstRecords, predictDataset } from './features';
import { classifierAccuracy, trainLinearOnEncoder } from './linear_eval';
import { latestEpochs, readMetrics, type ResultRecord } from './metrics';
import { encodeNpy } from './npy';
import { curvesSpec, embeddingMapSpec, writeChart } from './plots';
import { buildRunModels, derivedSeed, disposeRunModels, SEED_STREAMS, type EncoderBuilder, type RunModels } from './run_models';
import { loadConfigSplit, readRunDataset, type DataHooks, type RunDatasetInfo } from './run_dataset';
import { readTrainingState, RUN_FILES, type TrainingState } from './run_state';

/** Options shared by the functions that open a checkpoint (the hooks see image-folder decoding). */
export interface OpenCheckpointOptions extends DataHooks {
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
  /** The run's training data: image shape, classes, normalization. */
  dataset: RunDatasetInfo;
}

const OPEN_KEYS = ['dataDir', 'buildEncoder', 'fastKernels', 'onDataProgress', 'onDataWarning'] as const;

/** The {@link OpenCheckpointOptions} among a function's options. */
function openOptions(o: Partial<Record<string, unknown>>): OpenCheckpointOptions {
  const picked: Record<string, unknown> = {};
  for (const key of OPEN_KEYS) if (o[key] !== undefined) picked[key] = o[key];
  return picked as OpenCheckpointOptions;
}

/**
 * Rebuilds a run's models from its state.json and loads the checkpoint's weights.
 * @throws {@link CheckpointError} when the directory holds no usable checkpoint.
 */
export async function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): Promise<OpenedCheckpoint> {
  validate.string('dir', dir);
  const o = validate.options('options', options, OPEN_KEYS);
  for (const key of ['onDataProgress', 'onDataWarning'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'function') validate.fail(`options.${key}`, 'a function', o[key]);
  }
  if (!existsSync(dir)) throw new CheckpointError(dir, 'no such directory');
  if (o.fastKernels !== false) enableFastKernels();
  const state = await readTrainingState(dir);
  const config = resolveTrainConfig({ ...state.config, ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }) });
  const info = await readRunDataset(dir, config);
  const models = buildRunModels(config, [info.height, info.width, info.channels], info.numClasses, o.buildEncoder as EncoderBuilder | undefined);
  try {
    await loadWeightsInto(models.trainModel, dir);
  } catch (e) {
    disposeRunModels(models);
    throw e;
  }
  return { dir, config, state, models, dataset: info };
}

/** One split of a run's dataset, from the run's data folder (the hooks see image-folder decoding). */
export async function loadSplit(config: TrainConfig, split: Split, hooks: DataHooks = {}): Promise<ImageDataset> {
  return loadConfigSplit(config, split, hooks);
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
  options: { retrain?: boolean; linearEpochs?: number; hooks?: DataHooks } = {},
): Promise<CheckpointScorer> {
  const o = validate.options('options', options, ['retrain', 'linearEpochs', 'hooks']);
  const hooks = (o.hooks ?? {}) as DataHooks;
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
    const classifier = createLinearClassifier({ inputDim: featureDim, numClasses: opened.dataset.numClasses });
    try {
      await loadWeightsInto(classifier, linearDir);
    } catch (e) {
      classifier.dispose();
      throw e;
    }
    return linearScorer(classifier, 'saved-linear');
  }
  const train = firstRecords(await loadSplit(config, 'train', hooks), config.limitTrain);
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
  const o = validate.options('options', options, [...OPEN_KEYS, 'limitTest', 'retrain', 'linearEpochs']);
  const limitTest = o.limitTest === undefined ? undefined : validate.integer('options.limitTest', o.limitTest, 1);
  const hooks = openOptions(o);
  const opened = await openCheckpoint(dir, hooks);
  const { config, models, state } = opened;
  try {
    const scorer = await checkpointScorer(opened, {
      ...(o.retrain === undefined ? {} : { retrain: o.retrain as boolean }),
      ...(o.linearEpochs === undefined ? {} : { linearEpochs: o.linearEpochs as number }),
      hooks,
    });
    try {
      const test = firstRecords(await loadSplit(config, 'test', hooks), limitTest ?? config.limitTest);
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

/** Embeddings of a split, or of image files (see `embedImages`). */
export interface Embedding {
  /** The dataset's name, or the folder (or file) the images came from. */
  dataset: string;
  /** The split embedded; null for image files. */
  split: Split | null;
  kind: EmbeddingKind;
  count: number;
  dim: number;
  /** Row-major [count, dim]. */
  vectors: Float32Array;
  /** Class of every row (an index into classNames), -1 for an image without a class. */
  labels: Int32Array;
  classNames: readonly string[];
  /** The file of every row, when the rows are image files. */
  paths?: readonly string[];
  /** The checkpoint state the vectors came from, to tell a stale index. */
  checkpoint?: EmbeddingSource;
  /** Row-major [count, 2] UMAP coordinates, when computed. */
  map?: Float32Array;
}

/** Which checkpoint (and which state of it) made an embedding. */
export interface EmbeddingSource {
  dir: string;
  step: number;
  savedAt: string;
}

/** The {@link EmbeddingSource} of an opened checkpoint. */
export function embeddingSource(opened: OpenedCheckpoint): EmbeddingSource {
  return { dir: resolvePath(opened.dir), step: opened.state.step, savedAt: opened.state.savedAt };
}

/** Throws when a run has no vectors of `kind` (a cross-entropy run has no projection head). */
export function checkEmbeddingKind(kind: EmbeddingKind, config: TrainConfig, argument = 'options.kind'): void {
  if (kind === 'projection' && config.method === 'ce') validate.fail(argument, "'encoder' (a cross-entropy run has no projection head)", kind);
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
  const o = validate.options('options', options, [...OPEN_KEYS, 'split', 'limit', 'kind', 'map', 'neighbors', 'seed']);
  const split = o.split === undefined ? 'test' : validate.oneOf('options.split', o.split, SPLITS);
  const limit = o.limit === undefined ? 2000 : validate.integer('options.limit', o.limit, 1);
  const kind = o.kind === undefined ? 'encoder' : validate.oneOf('options.kind', o.kind, EMBEDDING_KINDS);
  const map = o.map === undefined ? true : validate.boolean('options.map', o.map);
  const hooks = openOptions(o);
  const opened = await openCheckpoint(dir, hooks);
  const { config, models } = opened;
  try {
    checkEmbeddingKind(kind, config);
    const full = await loadSplit(config, split, hooks);
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
      ...((dataset as ImageDataset & { paths?: readonly string[] }).paths
        ? { paths: (dataset as ImageDataset & { paths: readonly string[] }).paths }
        : {}),
      checkpoint: embeddingSource(opened),
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

/** File types {@link writeEmbedding} writes. */
export const EMBEDDING_FILE_TYPES = ['.json', '.npy', '.tsv'] as const;

/** The file holding everything but the vectors of a `.npy` embedding: `<name>.meta.json`. */
export function npyMetadataFile(npyFile: string): string {
  return npyFile.slice(0, npyFile.length - extname(npyFile).length) + '.meta.json';
}

/** An embedding as JSON, vectors (and map) as arrays of rows unless left out. */
function embeddingJson(embedding: Embedding, withVectors: boolean): Record<string, unknown> {
  const rows = (data: Float32Array, width: number): number[][] =>
    Array.from({ length: embedding.count }, (_, i) => Array.from(data.subarray(i * width, (i + 1) * width)));
  return {
    format: 'supcon-embedding',
    dataset: embedding.dataset,
    split: embedding.split,
    kind: embedding.kind,
    count: embedding.count,
    dim: embedding.dim,
    classNames: embedding.classNames,
    labels: Array.from(embedding.labels),
    ...(embedding.paths ? { paths: embedding.paths } : {}),
    ...(embedding.checkpoint ? { checkpoint: embedding.checkpoint } : {}),
    ...(withVectors ? { vectors: rows(embedding.vectors, embedding.dim) } : {}),
    ...(embedding.map ? { map: rows(embedding.map, 2) } : {}),
  };
}

/**
 * Writes embeddings to `file`:
 * - `.json`: one object with the vectors and map as arrays of rows, the labels, class names,
 *   the file paths (for image files) and the checkpoint they came from;
 * - `.npy`: the vectors as a float32 [count, dim] NumPy array (`numpy.load`), with everything
 *   else in `<name>.meta.json` (the JSON form without `vectors`);
 * - `.tsv`: vectors, one row per line, plus `<name>.labels.tsv` with the class of each row (and
 *   its path, under a header, for image files): the TensorBoard projector's format.
 * With a map, also draws it as `<name>.umap.svg` and `<name>.umap.png`. Returns the paths written.
 * @throws {@link InvalidArgumentError} for another file type.
 */
export async function writeEmbedding(embedding: Embedding, file: string): Promise<string[]> {
  validate.string('file', file);
  const ext = extname(file).toLowerCase();
  if (!(EMBEDDING_FILE_TYPES as readonly string[]).includes(ext)) validate.fail('file', "a path ending in '.json', '.npy' or '.tsv'", file);
  const base = file.slice(0, file.length - ext.length);
  const written: string[] = [];
  if (ext === '.json') {
    await writeFile(file, JSON.stringify(embeddingJson(embedding, true)));
    written.push(file);
  } else if (ext === '.npy') {
    await writeFile(file, encodeNpy(embedding.vectors, [embedding.count, embedding.dim]));
    await writeFile(npyMetadataFile(file), JSON.stringify({ ...embeddingJson(embedding, false), vectorsFile: basename(file) }));
    written.push(file, npyMetadataFile(file));
  } else {
    const lines = Array.from({ length: embedding.count }, (_, i) => Array.from(embedding.vectors.subarray(i * embedding.dim, (i + 1) * embedding.dim)).join('\t'));
    await writeFile(file, lines.join('\n') + '\n');
    const labelsFile = `${base}.labels.tsv`;
    const className = (l: number) => (l < 0 ? '' : (embedding.classNames[l] ?? String(l)));
    const meta = embedding.paths
      ? ['class\tpath', ...Array.from(embedding.labels, (l, i) => `${className(l)}\t${embedding.paths![i]}`)]
      : Array.from(embedding.labels, className);
    await writeFile(labelsFile, meta.join('\n') + '\n');
    written.push(file, labelsFile);
  }
  if (embedding.map) {
    const title = `UMAP of ${embedding.kind} embeddings (${embedding.dataset}${embedding.split ? ` ${embedding.split}` : ''}, ${embedding.count} images)`;
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
