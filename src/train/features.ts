/**
 * Running a model over a whole dataset split in inference mode (BatchNorm with its moving
 * statistics), in bounded chunks: encoder features for kNN and linear evaluation, logits for
 * the cross-entropy head, projections for `supcon embed`.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import { evaluationBatches, normalize, subsetDataset, type ImageDataset } from '../data';

/** Options of {@link predictDataset}. */
export interface PredictOptions {
  /** Images per forward pass (default 256). */
  batchSize?: number;
}

/**
 * `model` applied (with `training: false`) to every image of `dataset` in file order, after
 * normalizing with the dataset's statistics; returns `[count, ...outputShape]` as one tensor the
 * caller disposes.
 */
export function predictDataset(model: tf.LayersModel, dataset: ImageDataset, options: PredictOptions = {}): tf.Tensor {
  if (!(model instanceof tf.LayersModel)) validate.fail('model', 'a tfjs LayersModel', model);
  const o = validate.options('options', options, ['batchSize']);
  const batchSize = o.batchSize === undefined ? 256 : validate.integer('options.batchSize', o.batchSize, 1);
  const inputShape = model.inputs[0].shape.slice(1);
  const imageShape = [dataset.height, dataset.width, dataset.channels];
  if (inputShape.some((d, i) => d !== null && d !== imageShape[i])) {
    throw new InvalidArgumentError(
      'dataset',
      `images of shape [${inputShape.join(', ')}] (the model's input)`,
      `${dataset.name} images of shape [${imageShape.join(', ')}]`,
    );
  }
  if (dataset.count === 0) {
    return tf.zeros([0, ...(model.outputs[0].shape.slice(1) as number[])]);
  }
  const parts: tf.Tensor[] = [];
  try {
    for (const batch of evaluationBatches(dataset, batchSize)) {
      parts.push(
        tf.tidy(() => {
          const x = normalize(batch.images, dataset.normalization);
          return model.apply(x, { training: false }) as tf.Tensor;
        }),
      );
      batch.images.dispose();
      batch.labels.dispose();
    }
    return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
  } finally {
    if (parts.length > 1) tf.dispose(parts);
  }
}

/** The first `count` records of a dataset (all of them when count is undefined or larger). */
export function firstRecords(dataset: ImageDataset, count: number | undefined): ImageDataset {
  if (count === undefined || count >= dataset.count) return dataset;
  validate.integer('count', count, 0);
  return subsetDataset(dataset, Int32Array.from({ length: count }, (_, i) => i));
}

/** Fraction of rows whose arg-max column equals the label. */
export function accuracyOfLogits(logits: tf.Tensor2D, labels: Int32Array): number {
  validate.typedArray('labels', labels, Int32Array, logits.shape[0]);
  if (labels.length === 0) return 0;
  const predicted = tf.tidy(() => tf.argMax(logits, 1));
  const values = predicted.dataSync();
  predicted.dispose();
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (values[i] === labels[i]) correct++;
  return correct / labels.length;
}
