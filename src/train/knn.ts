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
  const normalizedBank = tf.tidy(() => tf.div(bank, tf.maximum(tf.norm(bank, 'euclidean', 1, true), 1e-12)));
  const labels = tf.tensor1d(bankLabels, 'int32');
  try {
    for (let start = 0; start < queries.shape[0]; start += opts.chunkSize) {
      const size = Math.min(opts.chunkSize, queries.shape[0] - start);
      const chunk = tf.tidy(() => {
        const q = queries.slice([start, 0], [size, -1]);
        const qn = tf.div(q, tf.maximum(tf.norm(q, 'euclidean', 1, true), 1e-12));
        const similarity = tf.matMul(qn, normalizedBank, false, true); // [size, N]
        const { values, indices } = tf.topk(similarity, k); // [size, k]
        const weights = tf.exp(tf.div(values, opts.temperature));
        const neighbourLabels = tf.gather(labels, indices); // [size, k]
        const votes = tf.sum(tf.mul(tf.oneHot(neighbourLabels, opts.numClasses), weights.expandDims(2)), 1); // [size, C]
        return tf.argMax(votes, 1);
      });
      predictions.set(chunk.dataSync() as Int32Array, start);
      chunk.dispose();
    }
  } finally {
    normalizedBank.dispose();
    labels.dispose();
  }
  return predictions;
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
