/**
 * Batching over an {@link ImageDataset} (pixels in memory or in an on-disk store): seeded shuffling per epoch, float tensors in
 * [0, 1] (NHWC), int32 labels. Batches are built lazily, one per iteration step, and belong to
 * the caller, who disposes them.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import { readImages, type ImageDataset } from './datasets';
import { Rng } from './rng';

/** One batch. `images` and `labels` are new tensors the caller must dispose. */
export interface Batch {
  /** `[batch, height, width, channels]` float32 in [0, 1]. */
  readonly images: tf.Tensor4D;
  /** `[batch]` int32 class indices. */
  readonly labels: tf.Tensor1D;
  /** Which records of the dataset are in the batch, in batch order. */
  readonly indices: Int32Array;
}

/** Options of {@link batches}. */
export interface BatchOptions {
  /** Records per batch (the last batch may be smaller unless `dropLast`). */
  batchSize: number;
  /** Visit records in a random order (default true). */
  shuffle?: boolean;
  /** Skip the last batch when it would be smaller than `batchSize` (default false). */
  dropLast?: boolean;
  /** Seed of the shuffle (default 0). */
  seed?: number;
  /** Epoch number (default 0); each epoch of a seed has its own order. */
  epoch?: number;
}

/** Options of {@link epochOrder}. */
export type EpochOrderOptions = Pick<BatchOptions, 'shuffle' | 'seed' | 'epoch'>;

/**
 * The order in which one epoch visits the records: 0..count-1, shuffled by a stream that depends
 * only on `(seed, epoch)`, so any epoch can be replayed (e.g. when resuming training).
 */
export function epochOrder(count: number, options: EpochOrderOptions = {}): Int32Array {
  validate.integer('count', count, 0, 0x7fffffff);
  const opts = validate.options('options', options, ['shuffle', 'seed', 'epoch']);
  const shuffle = opts.shuffle === undefined ? true : validate.boolean('options.shuffle', opts.shuffle);
  const seed = opts.seed === undefined ? 0 : validate.integer('options.seed', opts.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const epoch = opts.epoch === undefined ? 0 : validate.integer('options.epoch', opts.epoch, 0, Number.MAX_SAFE_INTEGER);
  if (!shuffle) return Int32Array.from({ length: count }, (_, i) => i);
  return new Rng(seed).derive(epoch).permutation(count);
}

/** How many batches an epoch yields. */
export function batchCount(count: number, batchSize: number, dropLast = false): number {
  validate.integer('count', count, 0);
  validate.integer('batchSize', batchSize, 1);
  return dropLast ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
}

/** Throws unless the dataset's arrays agree with its declared sizes. */
function checkDataset(dataset: ImageDataset): void {
  if (dataset === null || typeof dataset !== 'object') validate.fail('dataset', 'an ImageDataset', dataset);
  const { count, height, width, channels } = dataset;
  validate.integer('dataset.count', count, 0);
  validate.shape('[dataset.height, dataset.width, dataset.channels]', [height, width, channels], [3]);
  if (dataset.store !== undefined) {
    if (dataset.store.count !== count || dataset.store.recordBytes !== height * width * channels) {
      throw new InvalidArgumentError(
        'dataset.store',
        `a store of ${count} records of ${height * width * channels} bytes`,
        `${dataset.store.count} records of ${dataset.store.recordBytes} bytes`,
      );
    }
  } else {
    validate.typedArray('dataset.images', dataset.images, Uint8Array, count * height * width * channels);
  }
  validate.typedArray('dataset.labels', dataset.labels, Int32Array, count);
}

/**
 * Pixels of the given records as floats in [0, 1], NHWC. `out` (optional) receives them.
 * Exported for callers that feed another framework.
 */
export function gatherImages(dataset: ImageDataset, indices: ArrayLike<number>, out?: Float32Array): Float32Array {
  const recordSize = dataset.height * dataset.width * dataset.channels;
  const pixels = out ?? new Float32Array(indices.length * recordSize);
  if (pixels.length !== indices.length * recordSize) {
    throw new InvalidArgumentError('out', `Float32Array of length ${indices.length * recordSize}`, `length ${pixels.length}`);
  }
  if (dataset.store !== undefined) {
    // Records on disk: read the batch's bytes once, then scale.
    const bytes = readImages(dataset, indices);
    for (let p = 0; p < bytes.length; p++) pixels[p] = bytes[p] / 255;
    return pixels;
  }
  const bytes = dataset.images;
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    if (!Number.isInteger(r) || r < 0 || r >= dataset.count) {
      validate.fail(`indices[${i}]`, `integer in [0, ${dataset.count - 1}]`, r);
    }
    const src = r * recordSize;
    const dst = i * recordSize;
    for (let p = 0; p < recordSize; p++) pixels[dst + p] = bytes[src + p] / 255;
  }
  return pixels;
}

/** A batch of the given records, in the given order. The caller disposes the tensors. */
export function batchOf(dataset: ImageDataset, indices: ArrayLike<number>): Batch {
  checkDataset(dataset);
  const order = Int32Array.from(indices);
  const pixels = gatherImages(dataset, order);
  const labels = new Int32Array(order.length);
  for (let i = 0; i < order.length; i++) labels[i] = dataset.labels[order[i]];
  return {
    images: tf.tensor4d(pixels, [order.length, dataset.height, dataset.width, dataset.channels], 'float32'),
    labels: tf.tensor1d(labels, 'int32'),
    indices: order,
  };
}

/**
 * One epoch of batches.
 *
 * ```ts
 * for (const batch of batches(train, { batchSize: 256, seed: 1, epoch })) {
 *   try { step(batch.images, batch.labels); } finally { batch.images.dispose(); batch.labels.dispose(); }
 * }
 * ```
 * Every record appears exactly once per epoch (or all but the last `count % batchSize` with
 * `dropLast`). Tensors are created only as the iteration reaches them: stopping early leaks nothing.
 */
export function* batches(dataset: ImageDataset, options: BatchOptions): Generator<Batch, void, undefined> {
  checkDataset(dataset);
  const opts = validate.options('options', options, ['batchSize', 'shuffle', 'dropLast', 'seed', 'epoch']);
  const batchSize = validate.integer('options.batchSize', opts.batchSize, 1);
  const dropLast = opts.dropLast === undefined ? false : validate.boolean('options.dropLast', opts.dropLast);
  const order = epochOrder(dataset.count, { shuffle: opts.shuffle as boolean, seed: opts.seed as number, epoch: opts.epoch as number });
  const n = batchCount(dataset.count, batchSize, dropLast);
  for (let b = 0; b < n; b++) {
    yield batchOf(dataset, order.subarray(b * batchSize, Math.min((b + 1) * batchSize, dataset.count)));
  }
}

/**
 * The whole split in file order, in chunks of `chunkSize` records (default 1024): how to run
 * evaluation over a split without holding it all as float32 tensors at once.
 */
export function* evaluationBatches(dataset: ImageDataset, chunkSize = 1024): Generator<Batch, void, undefined> {
  validate.integer('chunkSize', chunkSize, 1);
  yield* batches(dataset, { batchSize: chunkSize, shuffle: false });
}

/**
 * The whole split (or the records `[start, end)`) as one pair of tensors, for small splits
 * (float32 costs 4 bytes per pixel: the full Fashion-MNIST test split is 31 MB).
 */
export function datasetTensors(
  dataset: ImageDataset,
  range: { start?: number; end?: number } = {},
): { images: tf.Tensor4D; labels: tf.Tensor1D } {
  checkDataset(dataset);
  const opts = validate.options('range', range, ['start', 'end']);
  const start = opts.start === undefined ? 0 : validate.integer('range.start', opts.start, 0, dataset.count);
  const end = opts.end === undefined ? dataset.count : validate.integer('range.end', opts.end, start, dataset.count);
  const { images, labels } = batchOf(dataset, Int32Array.from({ length: end - start }, (_, i) => start + i));
  return { images, labels };
}
