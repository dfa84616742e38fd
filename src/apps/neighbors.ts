/**
 * Nearest-neighbour search over an embedding index (a file written by `writeEmbedding`, e.g.
 * `supcon embed --images DIR --out index.npy`): query images are embedded with the same
 * checkpoint and kind of vectors, then matched by exact cosine similarity (`cosineNeighbors`:
 * one GEMM per chunk of queries, the native GEMM when the native kernels are in use).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import { CheckpointError } from '../train/errors';
import { EMBEDDING_KINDS, npyMetadataFile, type Embedding, type EmbeddingKind } from '../train/evaluate';
import { cosineNeighbors } from '../train/knn';
import { decodeNpy } from '../train/npy';
import { embedImages, type EmbedImagesOptions } from './embed';

/**
 * Reads an embedding file: `.json`, or `.npy` with its `<name>.meta.json`.
 * @throws {@link CheckpointError} naming the file when it is missing or not an embedding.
 */
export async function readEmbedding(file: string): Promise<Embedding> {
  validate.string('file', file);
  const ext = extname(file).toLowerCase();
  if (ext !== '.json' && ext !== '.npy') validate.fail('file', "an embedding file ending in '.json' or '.npy'", file);
  const metaFile = ext === '.json' ? file : npyMetadataFile(file);
  for (const f of ext === '.json' ? [file] : [file, metaFile]) {
    if (!existsSync(f)) throw new CheckpointError(f, ext === '.npy' && f === metaFile ? `no such file (the metadata of ${file})` : 'no such file');
  }
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(await readFile(metaFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(metaFile, `not valid JSON (${(e as Error).message})`);
  }
  const bad = (problem: string): never => {
    throw new CheckpointError(metaFile, `is not an embedding file: ${problem}`);
  };
  const count = meta.count as number;
  const dim = meta.dim as number;
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(dim) || dim < 1) bad("'count' and 'dim' must be positive integers");
  if (!(EMBEDDING_KINDS as readonly string[]).includes(meta.kind as string)) bad(`'kind' must be one of ${EMBEDDING_KINDS.join(', ')}`);
  if (!Array.isArray(meta.labels) || meta.labels.length !== count) bad(`'labels' must hold ${count} entries`);
  if (!Array.isArray(meta.classNames)) bad("'classNames' is missing");
  if (meta.paths !== undefined && (!Array.isArray(meta.paths) || meta.paths.length !== count)) bad(`'paths' must hold ${count} entries`);
  let vectors: Float32Array;
  if (ext === '.json') {
    const rows = meta.vectors as unknown;
    if (!Array.isArray(rows) || rows.length !== count || rows.some((r) => !Array.isArray(r) || r.length !== dim)) bad(`'vectors' must be ${count} rows of ${dim} numbers`);
    vectors = Float32Array.from((rows as number[][]).flat());
  } else {
    let decoded: { data: Float32Array; shape: number[] };
    try {
      decoded = decodeNpy(await readFile(file), file);
    } catch (e) {
      throw new CheckpointError(file, (e as Error).message);
    }
    if (decoded.shape.length !== 2 || decoded.shape[0] !== count || decoded.shape[1] !== dim) {
      throw new CheckpointError(file, `holds an array of shape (${decoded.shape.join(', ')}) but ${metaFile} says (${count}, ${dim})`);
    }
    vectors = decoded.data;
  }
  return {
    dataset: String(meta.dataset ?? ''),
    split: (meta.split as Embedding['split']) ?? null,
    kind: meta.kind as EmbeddingKind,
    count,
    dim,
    vectors,
    labels: Int32Array.from(meta.labels as number[]),
    classNames: meta.classNames as string[],
    ...(meta.paths ? { paths: meta.paths as string[] } : {}),
    ...(meta.checkpoint ? { checkpoint: meta.checkpoint as Embedding['checkpoint'] } : {}),
  };
}

/** One neighbour of a query. */
export interface NeighborMatch {
  /** 1 for the most similar. */
  rank: number;
  /** Row of the index. */
  index: number;
  /** The row's image file, when the index has paths. */
  path: string | null;
  /** The row's class, when it has one. */
  className: string | null;
  /** Cosine similarity in [-1, 1]. */
  similarity: number;
}

/** The neighbours of one query image. */
export interface NeighborsOfQuery {
  /** The query image file. */
  query: string;
  neighbors: NeighborMatch[];
}

/** Options of {@link findNeighbors}. */
export interface FindNeighborsOptions extends Omit<EmbedImagesOptions, 'kind' | 'map' | 'neighbors' | 'seed'> {
  /** Neighbours per query (default 10; at most the index's rows). */
  k?: number;
}

/**
 * The `k` nearest rows of the index `indexFile` to every image of `query` (a file or a folder),
 * embedded with the checkpoint in `checkpointDir` and the index's kind of vectors.
 *
 * ```ts
 * const results = await findNeighbors('runs/photos', 'index.npy', 'query.jpg', { k: 5 });
 * results[0].neighbors[0]; // { rank: 1, path: '...', className: 'cat', similarity: 0.97, index: 12 }
 * ```
 * A warning (`onDataWarning`) says when the index was embedded with another state of the
 * checkpoint (its vectors are then not comparable).
 * @throws {@link InvalidArgumentError} when the index's vectors do not have the checkpoint's dimension.
 */
export async function findNeighbors(checkpointDir: string, indexFile: string, query: string, options: FindNeighborsOptions = {}): Promise<NeighborsOfQuery[]> {
  const { k: kOption, ...rest } = validate.options('options', options, [
    'k',
    'dataDir',
    'buildEncoder',
    'fastKernels',
    'onDataProgress',
    'onDataWarning',
    'strict',
    'batchSize',
  ]) as FindNeighborsOptions;
  const k = kOption === undefined ? 10 : validate.integer('options.k', kOption, 1);
  const index = await readEmbedding(indexFile);
  const queries = await embedImages(checkpointDir, query, { ...rest, kind: index.kind });
  if (queries.dim !== index.dim) {
    throw new InvalidArgumentError(
      'indexFile',
      `an index of ${queries.dim}-dimensional ${index.kind} vectors (what ${checkpointDir} computes)`,
      `${indexFile} with ${index.dim}-dimensional vectors`,
    );
  }
  const source = index.checkpoint;
  const now = queries.checkpoint!;
  if (source && (source.dir !== now.dir || source.step !== now.step || source.savedAt !== now.savedAt)) {
    const warn = rest.onDataWarning ?? ((m: string) => process.stderr.write(`supcon: warning: ${m}\n`));
    warn(`${indexFile} was embedded with ${source.dir} at step ${source.step}, the queries with ${now.dir} at step ${now.step}: re-embed the index`);
  }
  const bank = tf.tensor2d(index.vectors, [index.count, index.dim]);
  const q = tf.tensor2d(queries.vectors, [queries.count, queries.dim]);
  let found;
  try {
    found = cosineNeighbors(bank, q, k);
  } finally {
    tf.dispose([bank, q]);
  }
  return queries.paths!.map((path, qi) => ({
    query: path,
    neighbors: Array.from({ length: found.k }, (_, r) => {
      const row = found.indices[qi * found.k + r];
      const label = index.labels[row];
      return {
        rank: r + 1,
        index: row,
        path: index.paths ? index.paths[row] : null,
        className: label >= 0 && label < index.classNames.length ? index.classNames[label] : null,
        similarity: found.similarities[qi * found.k + r],
      };
    }),
  }));
}
