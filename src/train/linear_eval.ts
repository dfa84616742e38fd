/**
 * Linear evaluation (the protocol of SimCLR and SupCon): the encoder is frozen, its features
 * of the un-augmented training images are computed once, and a linear classifier is trained on
 * them with softmax cross-entropy; the score is the classifier's test accuracy.
 *
 * Features are standardized (per-dimension mean and standard deviation of the training
 * features) while the classifier trains, which makes one learning rate work for any encoder;
 * the standardization is then folded into the dense layer's weights, so the saved classifier
 * reads raw encoder features.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import { epochOrder, type ImageDataset } from '../data';
import { createLinearClassifier } from '../models';
import { accuracyOfLogits, predictDataset } from './features';
import { SgdMomentum } from './optimizers';
import { cosineWithWarmup } from './schedule';

/** Options of {@link trainLinearClassifier} and {@link linearEvaluation}. */
export interface LinearEvalOptions {
  /** Passes over the training features (default 30). */
  epochs?: number;
  /** Rows per step (default 256). */
  batchSize?: number;
  /** Peak learning rate of SGD with momentum 0.9 and a cosine schedule (default 0.1). */
  learningRate?: number;
  /** L2 weight decay on the classifier's kernel (default 0). */
  weightDecay?: number;
  /** Seed of the classifier's weights and of the shuffling (default 0). */
  seed?: number;
  /** Called after every epoch with its mean training loss. */
  onEpoch?: (epoch: number, loss: number) => void;
}

const OPTION_KEYS = ['epochs', 'batchSize', 'learningRate', 'weightDecay', 'seed', 'onEpoch'] as const;

/** What {@link linearEvaluation} returns. */
export interface LinearEvalResult {
  /** Encoder features [B, D] -> logits [B, classes], to be disposed by the caller. */
  classifier: tf.LayersModel;
  /** Accuracy on the training features (un-augmented images). */
  trainAccuracy: number;
  /** Accuracy on the test split: the linear-evaluation score. */
  testAccuracy: number;
  /** Mean training loss of every epoch. */
  losses: number[];
}

/**
 * Trains a linear classifier on fixed features [N, D] with labels in [0, numClasses).
 * Returns the classifier (reading raw features) and the loss of every epoch.
 */
export function trainLinearClassifier(
  features: tf.Tensor2D,
  labels: Int32Array,
  numClasses: number,
  options: LinearEvalOptions = {},
): { classifier: tf.LayersModel; losses: number[] } {
  if (!(features instanceof tf.Tensor) || features.rank !== 2) validate.fail('features', 'a rank-2 tensor [N, D]', features);
  const [count, dim] = features.shape;
  validate.typedArray('labels', labels, Int32Array, count);
  validate.integer('numClasses', numClasses, 1);
  if (count === 0) throw new InvalidArgumentError('features', 'at least one row', 'shape [0, ' + dim + ']');
  const o = validate.options('options', options, OPTION_KEYS);
  const epochs = o.epochs === undefined ? 30 : validate.integer('options.epochs', o.epochs, 1);
  const batchSize = Math.min(count, o.batchSize === undefined ? 256 : validate.integer('options.batchSize', o.batchSize, 1));
  const learningRate = o.learningRate === undefined ? 0.1 : validate.number('options.learningRate', o.learningRate, { gt: 0 });
  const weightDecay = o.weightDecay === undefined ? 0 : validate.number('options.weightDecay', o.weightDecay, { ge: 0 });
  const seed = o.seed === undefined ? 0 : validate.integer('options.seed', o.seed, 0, 2 ** 32 - 1);
  const onEpoch = o.onEpoch as LinearEvalOptions['onEpoch'];
  if (onEpoch !== undefined && typeof onEpoch !== 'function') validate.fail('options.onEpoch', 'a function', onEpoch);

  const classifier = createLinearClassifier({ inputDim: dim, numClasses, seed });
  const [kernel, bias] = classifier.trainableWeights.map((w) => w.read() as tf.Variable);
  const { mean, std, standardized, oneHot } = tf.tidy(() => {
    const moments = tf.moments(features, 0);
    const sd = tf.sqrt(tf.add(moments.variance, 1e-5));
    return {
      mean: moments.mean as tf.Tensor1D,
      std: sd as tf.Tensor1D,
      standardized: tf.div(tf.sub(features, moments.mean), sd) as tf.Tensor2D,
      oneHot: tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses).toFloat() as tf.Tensor2D,
    };
  });
  const stepsPerEpoch = Math.ceil(count / batchSize);
  const schedule = cosineWithWarmup({ baseLr: learningRate, totalSteps: epochs * stepsPerEpoch });
  const optimizer = new SgdMomentum({ learningRate, momentum: 0.9, weightDecay });
  const losses: number[] = [];
  try {
    let step = 0;
    for (let epoch = 0; epoch < epochs; epoch++) {
      const order = epochOrder(count, { seed, epoch });
      let lossSum = 0;
      for (let b = 0; b < stepsPerEpoch; b++) {
        optimizer.learningRate = schedule(step++);
        const rows = order.subarray(b * batchSize, Math.min((b + 1) * batchSize, count));
        const loss = tf.tidy(() => {
          const index = tf.tensor1d(rows, 'int32');
          const x = tf.gather(standardized, index);
          const y = tf.gather(oneHot, index);
          const { value, grads } = tf.variableGrads(
            () => tf.losses.softmaxCrossEntropy(y, classifier.apply(x) as tf.Tensor2D) as tf.Scalar,
            [kernel, bias],
          );
          optimizer.applyGradients(grads);
          return value;
        });
        lossSum += loss.dataSync()[0] * rows.length;
        loss.dispose();
      }
      losses.push(lossSum / count);
      onEpoch?.(epoch, lossSum / count);
    }
    // Fold the standardization in: ((x - m) / s) W + b = x (W / s) + (b - (m / s) W).
    tf.tidy(() => {
      const scaledKernel = tf.div(kernel, std.expandDims(1));
      const shiftedBias = tf.sub(bias, tf.matMul(mean.expandDims(0), scaledKernel).reshape([numClasses]));
      kernel.assign(scaledKernel);
      bias.assign(shiftedBias);
    });
  } finally {
    optimizer.dispose();
    tf.dispose([mean, std, standardized, oneHot]);
  }
  return { classifier, losses };
}

/**
 * A linear classifier trained on the frozen `encoder`'s features of the un-augmented `train`
 * images (computed once, in inference mode), with its accuracy on those features.
 */
export function trainLinearOnEncoder(
  encoder: tf.LayersModel,
  train: ImageDataset,
  options: LinearEvalOptions = {},
): { classifier: tf.LayersModel; trainAccuracy: number; losses: number[] } {
  const trainFeatures = predictDataset(encoder, train) as tf.Tensor2D;
  try {
    const trained = trainLinearClassifier(trainFeatures, train.labels, train.numClasses, options);
    try {
      return { ...trained, trainAccuracy: classifierAccuracy(trained.classifier, trainFeatures, train.labels) };
    } catch (e) {
      trained.classifier.dispose();
      throw e;
    }
  } finally {
    trainFeatures.dispose();
  }
}

/**
 * Linear evaluation of a frozen `encoder`: features of the un-augmented `train` images, a
 * linear classifier trained on them ({@link trainLinearOnEncoder}), and its accuracy on `test`.
 */
export function linearEvaluation(
  encoder: tf.LayersModel,
  train: ImageDataset,
  test: ImageDataset,
  options: LinearEvalOptions = {},
): LinearEvalResult {
  if (train.numClasses !== test.numClasses) {
    throw new InvalidArgumentError('test', `a split with ${train.numClasses} classes (as train)`, `${test.numClasses} classes`);
  }
  const { classifier, trainAccuracy, losses } = trainLinearOnEncoder(encoder, train, options);
  try {
    const testFeatures = predictDataset(encoder, test) as tf.Tensor2D;
    try {
      return { classifier, trainAccuracy, testAccuracy: classifierAccuracy(classifier, testFeatures, test.labels), losses };
    } finally {
      testFeatures.dispose();
    }
  } catch (e) {
    classifier.dispose();
    throw e;
  }
}

/** Accuracy of a features -> logits classifier on `features` [N, D] with `labels`. */
export function classifierAccuracy(classifier: tf.LayersModel, features: tf.Tensor2D, labels: Int32Array): number {
  const logits = tf.tidy(() => classifier.apply(features, { training: false }) as tf.Tensor2D);
  try {
    return accuracyOfLogits(logits, labels);
  } finally {
    logits.dispose();
  }
}
