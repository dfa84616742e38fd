/**
 * Embedding image files with a trained encoder: any file or folder of images, decoded the way
 * the run's training images were (its image size and channels, see `src/data/images.ts`) and
 * normalized with the run's statistics.
 */
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { decodeImageFiles, listImages, type DecodeProgress, type ImageDataset } from '../data';
import { DatasetError } from '../data/errors';
import {
  checkEmbeddingKind,
  embeddingSource,
  EMBEDDING_KINDS,
  openCheckpoint,
  umap2d,
  type Embedding,
  type EmbeddingKind,
  type OpenCheckpointOptions,
} from '../train/evaluate';
import { predictDataset } from '../train/features';
import { disposeRunModels, derivedSeed, SEED_STREAMS, type EncoderBuilder } from '../train/run_models';

/** Options of {@link embedImages}. */
export interface EmbedImagesOptions extends OpenCheckpointOptions {
  /** 'encoder' (features, default) or 'projection' (the L2-normalized projection head output). */
  kind?: EmbeddingKind;
  /** Make an unreadable image an error instead of a skipped file with a warning (default false). */
  strict?: boolean;
  /** Images per forward pass (default 256). */
  batchSize?: number;
  /** Also compute a 2-D UMAP map when there are at least 3 images (default false). */
  map?: boolean;
  /** UMAP neighbours (default 15). */
  neighbors?: number;
  /** Seed of UMAP (default: derived from the run's seed). */
  seed?: number;
}

const KEYS = ['dataDir', 'buildEncoder', 'fastKernels', 'onDataProgress', 'onDataWarning', 'kind', 'strict', 'batchSize', 'map', 'neighbors', 'seed'] as const;

/**
 * Embeddings `[count, dim]` of the images in `images` (a file, or a folder walked recursively
 * with `listImages`), with their paths. An image's class is the name of the folder holding it
 * when it is below a subfolder of `images` (so an ImageFolder tree keeps its classes), else none
 * (label -1).
 *
 * ```ts
 * const e = await embedImages('runs/photos', 'new-photos/', { kind: 'projection' });
 * await writeEmbedding(e, 'index.npy');
 * ```
 * @throws {@link CheckpointError} for an unusable run directory.
 * @throws {@link DatasetError} when the path holds no images, no image is readable, or one is
 *   unreadable with `strict`.
 */
export async function embedImages(checkpointDir: string, images: string, options: EmbedImagesOptions = {}): Promise<Embedding> {
  validate.string('checkpointDir', checkpointDir);
  validate.string('images', images);
  const o = validate.options('options', options, KEYS);
  const kind = o.kind === undefined ? 'encoder' : validate.oneOf('options.kind', o.kind, EMBEDDING_KINDS);
  const strict = o.strict === undefined ? false : validate.boolean('options.strict', o.strict);
  const batchSize = o.batchSize === undefined ? 256 : validate.integer('options.batchSize', o.batchSize, 1);
  const map = o.map === undefined ? false : validate.boolean('options.map', o.map);
  const listed = await listImages(images);
  const opened = await openCheckpoint(checkpointDir, {
    ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }),
    ...(o.buildEncoder === undefined ? {} : { buildEncoder: o.buildEncoder as EncoderBuilder }),
    ...(o.fastKernels === undefined ? {} : { fastKernels: o.fastKernels as boolean }),
  });
  try {
    checkEmbeddingKind(kind, opened.config);
    const { height, width, channels, normalization } = opened.dataset;
    const recordBytes = height * width * channels;
    const pixels: Array<Uint8Array | null> = new Array(listed.length).fill(null);
    const reasons: string[] = new Array(listed.length).fill('');
    const onProgress = o.onDataProgress as ((p: DecodeProgress) => void) | undefined;
    await decodeImageFiles(
      listed.map((l) => l.path),
      { imageSize: height, channels, source: resolve(images), ...(onProgress ? { onProgress } : {}) },
      (i, outcome) => {
        if (outcome.ok) pixels[i] = outcome.pixels;
        else reasons[i] = outcome.reason;
      },
    );
    const bad = listed.map((_, i) => i).filter((i) => pixels[i] === null);
    if (bad.length > 0 && strict) {
      throw new DatasetError(listed[bad[0]].path, `is not a readable image (${reasons[bad[0]]})`, 'Fix: replace or remove it, or drop strict (--strict)');
    }
    const warn = (o.onDataWarning as ((m: string) => void) | undefined) ?? ((m: string) => process.stderr.write(`supcon: warning: ${m}\n`));
    for (const i of bad) warn(`skipped unreadable image ${listed[i].path}: ${reasons[i]}`);
    const kept = listed.filter((_, i) => pixels[i] !== null);
    if (kept.length === 0) throw new DatasetError(resolve(images), 'holds no readable image', 'Fix: check the path');
    if (bad.length > 0) warn(`skipped ${bad.length} unreadable image(s) of ${listed.length} in ${resolve(images)}`);

    const classNames = [...new Set(kept.map((l) => l.className).filter((c): c is string => c !== null))].sort();
    const data = new Uint8Array(kept.length * recordBytes);
    let at = 0;
    for (const p of pixels) if (p !== null) data.set(p, (at++) * recordBytes);
    const dataset: ImageDataset = {
      name: 'image-folder',
      split: 'test',
      images: data,
      labels: Int32Array.from(kept, (l) => (l.className === null ? -1 : classNames.indexOf(l.className))),
      count: kept.length,
      height,
      width,
      channels,
      numClasses: Math.max(classNames.length, 1),
      classNames,
      normalization,
      source: resolve(images),
    };
    const model = kind === 'encoder' ? opened.models.encoder : opened.models.trainModel;
    const output = predictDataset(model, dataset, { batchSize }) as tf.Tensor2D;
    const vectors = Float32Array.from(output.dataSync());
    const dim = output.shape[1];
    output.dispose();
    const embedding: Embedding = {
      dataset: resolve(images),
      split: null,
      kind,
      count: kept.length,
      dim,
      vectors,
      labels: dataset.labels,
      classNames,
      paths: kept.map((l) => resolve(l.path)),
      checkpoint: embeddingSource(opened),
    };
    if (map && kept.length >= 3) {
      const seed = o.seed === undefined ? derivedSeed(opened.config.seed, SEED_STREAMS.umap) : validate.integer('options.seed', o.seed, 0);
      embedding.map = umap2d(vectors, kept.length, dim, { ...(o.neighbors === undefined ? {} : { neighbors: o.neighbors as number }), seed });
    }
    return embedding;
  } finally {
    disposeRunModels(opened.models);
  }
}
