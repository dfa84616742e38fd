/** Parameter counts of a model, from tfjs's own bookkeeping. */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';

/** Parameter counts of a model. */
export interface ModelSummary {
  /** Every weight element, trainable or not: tfjs's `model.countParams()`. */
  totalParams: number;
  /** Elements of `model.trainableWeights` (conv/dense kernels and biases, BN gamma/beta). */
  trainableParams: number;
  /** The rest: BN moving means/variances and frozen weights. */
  nonTrainableParams: number;
  /** Number of layers at the top level (a nested model counts as one). */
  layers: number;
}

/**
 * Counts a model's parameters. `totalParams` is tfjs's `countParams()`; trainable ones are
 * the sizes of `trainableWeights`, so frozen layers (see setTrainable) move to
 * `nonTrainableParams`. BN moving statistics are non-trainable, as in PyTorch where they
 * are buffers rather than parameters.
 */
export function summarize(model: tf.LayersModel): ModelSummary {
  if (!(model instanceof tf.LayersModel)) validate.fail('model', 'a tfjs LayersModel', model);
  const totalParams = model.countParams();
  const trainableParams = model.trainableWeights.reduce((sum, w) => sum + tf.util.sizeFromShape(w.shape as number[]), 0);
  return { totalParams, trainableParams, nonTrainableParams: totalParams - trainableParams, layers: model.layers.length };
}
