/**
 * Weighted k-nearest-neighbour classification on embeddings, the monitor of Wu et al. 2018
 * ("Unsupervised Feature Learning via Non-Parametric Instance Discrimination") that SimCLR
 * and SupCon code bases print every epoch: rows are L2-normalized, each query takes its k most
 * cosine-similar bank rows, and every neighbour votes for its class with weight exp(s / tau).
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';

/** Options of {@link knnPredict} and {@link knnAccuracy}. */
export interface KnnOptions {
  /** Number of classes (labels are in [0, numClasses)). */
  numClasses: number;
  /** Neighbours per query (default 20; clamped to the bank size). */
  k?: number;
  /** Temperature tau of the vote weights exp(similarity / tau) (default 0.07, as Wu et al.). */
  temperature?: number;
  /** Queries per similarity block, bounding memory to chunkSize x bank floats (default 512). */
  chunkSize?: number;
}

function resolve(options: KnnOptions): Required<KnnOptions> {
  const o = validate.options('options', options, ['numClasses', 'k', 'temperature', 'chunkSize']);
  return {
    numClasses: validate.integer('options.numClasses', o.numClasses, 1),
    k: o.k === undefined ? 20 : validate.integer('options.k', o.k, 1),
    temperature: o.temperature === undefined ? 0.07 : validate.number('options.temperature', o.temperature, { gt: 0 }),
    chunkSize: o.chunkSize === undefined ? 512 : validate.integer('options.chunkSize', o.chunkSize, 1),
  };
}

function checkRank2(argument: string, t: unknown): tf.Tensor2D {
  if (!(t instanceof tf.Tensor)) validate.fail(argument, 'a tf.Tensor', t);
  if (t.rank !== 2) throw new InvalidArgumentError(argument, 'a rank-2 tensor [rows, dim]', `shape [${t.shape.join(', ')}]`);
  return t as tf.Tensor2D;
}

/**
 * Predicted classes of `queries` [Q, D] by a weighted vote of their k nearest rows of `bank`
 * [N, D] (cosine similarity), whose classes are `bankLabels` [N].
 */
export function knnPredict(
  bank: tf.Tensor2D,
  bankLabels: Int32Array,
  queries: tf.Tensor2D,
  options: KnnOptions,
): Int32Array {
  const opts = resolve(options);
  checkRank2('bank', bank);
  checkRank2('queries', queries);
  if (bank.shape[1] !== queries.shape[1]) {
    throw new InvalidArgumentError('queries', `rows of dimension ${bank.shape[1]} (the bank's)`, `shape [${queries.shape.join(', ')}]`);
  }
  validate.typedArray('bankLabels', bankLabels, Int32Array, bank.shape[0]);
  for (let i = 0; i < bankLabels.length; i++) {
    if (bankLabels[i] < 0 || bankLabels[i] >= opts.numClasses) {
      validate.fail(`bankLabels[${i}]`, `a class in [0, ${opts.numClasses - 1}]`, bankLabels[i]);
    }
  }
  const k = Math.min(opts.k, bank.shape[0]);
  const predictions = new Int32Array(queries.shape[0]);
  const labels = tf.tensor1d(bankLabels, 'int32');
  try {
    cosineTopKChunks(bank, queries, k, opts.chunkSize, (start, values, indices) => {
      const chunk = tf.tidy(() => {
        const weights = tf.exp(tf.div(values, opts.temperature));
        const neighbourLabels = tf.gather(labels, indices); // [size, k]
        const votes = tf.sum(tf.mul(tf.oneHot(neighbourLabels, opts.numClasses), weights.expandDims(2)), 1); // [size, C]
        return tf.argMax(votes, 1);
      });
      predictions.set(chunk.dataSync() as Int32Array, start);
      chunk.dispose();
    });
  } finally {
    labels.dispose();
  }
  return predictions;
}

/**
 * Runs exact cosine top-k over query chunks: rows are L2-normalized, one GEMM per chunk gives
 * the [chunk, N] similarities (tf.matMul: the native GEMM when the native kernels are in use),
 * then tf.topk. `each` sees every chunk's [size, k] values and indices, disposed after it.
 */
function cosineTopKChunks(
  bank: tf.Tensor2D,
  queries: tf.Tensor2D,
  k: number,
  chunkSize: number,
  each: (start: number, values: tf.Tensor2D, indices: tf.Tensor2D) => void,
): void {
  const normalizedBank = tf.tidy(() => tf.div(bank, tf.maximum(tf.norm(bank, 'euclidean', 1, true), 1e-12)));
  try {
    for (let start = 0; start < queries.shape[0]; start += chunkSize) {
      const size = Math.min(chunkSize, queries.shape[0] - start);
      const { values, indices } = tf.tidy(() => {
        const q = queries.slice([start, 0], [size, -1]);
        const qn = tf.div(q, tf.maximum(tf.norm(q, 'euclidean', 1, true), 1e-12));
        const similarity = tf.matMul(qn, normalizedBank, false, true); // [size, N]
        return tf.topk(similarity, k); // [size, k]
      });
      try {
        each(start, values as tf.Tensor2D, indices as tf.Tensor2D);
      } finally {
        tf.dispose([values, indices]);
      }
    }
  } finally {
    normalizedBank.dispose();
  }
}

/** Exact nearest neighbours: for each query, the bank rows of highest cosine similarity. */
export interface CosineNeighbors {
  /** Row-major [queries, k] bank row indices, most similar first. */
  indices: Int32Array;
  /** Row-major [queries, k] cosine similarities in [-1, 1], descending per query. */
  similarities: Float32Array;
  /** Neighbours per query: min(k, bank rows). */
  k: number;
}

/**
 * The k most cosine-similar rows of `bank` [N, D] for every row of `queries` [Q, D]: exact search
 * by a GEMM per chunk of queries (memory: chunkSize x N floats), see {@link cosineTopKChunks}.
 * @throws {@link InvalidArgumentError} for tensors of another rank or dimension, or a bad k.
 */
export function cosineNeighbors(bank: tf.Tensor2D, queries: tf.Tensor2D, k: number, chunkSize = 512): CosineNeighbors {
  checkRank2('bank', bank);
  checkRank2('queries', queries);
  if (bank.shape[1] !== queries.shape[1]) {
    throw new InvalidArgumentError('queries', `rows of dimension ${bank.shape[1]} (the bank's)`, `shape [${queries.shape.join(', ')}]`);
  }
  if (bank.shape[0] === 0) throw new InvalidArgumentError('bank', 'at least one row', `shape [${bank.shape.join(', ')}]`);
  const kk = Math.min(validate.integer('k', k, 1), bank.shape[0]);
  validate.integer('chunkSize', chunkSize, 1);
  const indices = new Int32Array(queries.shape[0] * kk);
  const similarities = new Float32Array(queries.shape[0] * kk);
  cosineTopKChunks(bank, queries, kk, chunkSize, (start, values, idx) => {
    similarities.set(values.dataSync() as Float32Array, start * kk);
    indices.set(idx.dataSync() as Int32Array, start * kk);
  });
  return { indices, similarities, k: kk };
}

/** Fraction of `queries` whose {@link knnPredict} class equals `queryLabels`. */
export function knnAccuracy(
  bank: tf.Tensor2D,
  bankLabels: Int32Array,
  queries: tf.Tensor2D,
  queryLabels: Int32Array,
  options: KnnOptions,
): number {
  validate.typedArray('queryLabels', queryLabels, Int32Array, checkRank2('queries', queries).shape[0]);
  const predicted = knnPredict(bank, bankLabels, queries, options);
  if (predicted.length === 0) return 0;
  let correct = 0;
  for (let i = 0; i < predicted.length; i++) if (predicted[i] === queryLabels[i]) correct++;
  return correct / predicted.length;
}
