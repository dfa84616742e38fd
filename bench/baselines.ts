/**
 * Baselines without any representation learning, on raw pixels: multinomial logistic
 * regression (the project's linear-evaluation classifier, `trainLinearClassifier`, on the
 * 784 pixel values instead of encoder features) and a one-hidden-layer MLP (784 -> 512 ReLU ->
 * 10, SGD with momentum and the cosine schedule). Their settings are chosen on a validation
 * split (the last 20% of the training images); the chosen setting is then trained on all
 * training images and scored once on the test set.
 *
 *   npx tsx bench/baselines.ts [fashion-mnist-mini|fashion-mnist]   (default: the embedded subset)
 *
 * Writes bench/results/baselines-<dataset>.json.
 */
import * as tf from '@tensorflow/tfjs';
import {
  accuracyOfLogits,
  classifierAccuracy,
  cosineWithWarmup,
  enableFastKernels,
  epochOrder,
  loadDataset,
  SgdMomentum,
  subsetDataset,
  trainLinearClassifier,
  type DatasetName,
  type ImageDataset,
} from '../src';
import { machine, writeJson } from './util';

/** Pixels in [0, 1] as a [N, H*W*C] tensor. */
function pixelFeatures(dataset: ImageDataset): tf.Tensor2D {
  const size = dataset.height * dataset.width * dataset.channels;
  return tf.tensor2d(Float32Array.from(dataset.images, (v) => v / 255), [dataset.count, size]);
}

const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);

interface MlpSettings {
  hidden: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  weightDecay: number;
  seed: number;
}

/** A 784 -> hidden ReLU -> classes MLP trained with SGD momentum 0.9 and a cosine schedule; returns the model. */
function trainMlp(features: tf.Tensor2D, labels: Int32Array, numClasses: number, s: MlpSettings): tf.LayersModel {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [features.shape[1]], units: s.hidden, activation: 'relu', kernelInitializer: tf.initializers.heNormal({ seed: s.seed }) }),
      tf.layers.dense({ units: numClasses, kernelInitializer: tf.initializers.glorotUniform({ seed: s.seed + 1 }) }),
    ],
  });
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const count = features.shape[0];
  const steps = Math.ceil(count / s.batchSize);
  const schedule = cosineWithWarmup({ baseLr: s.learningRate, totalSteps: s.epochs * steps });
  const optimizer = new SgdMomentum({ learningRate: s.learningRate, momentum: 0.9, weightDecay: s.weightDecay });
  const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses).toFloat();
  let step = 0;
  for (let epoch = 0; epoch < s.epochs; epoch++) {
    const order = epochOrder(count, { seed: s.seed, epoch });
    for (let b = 0; b < steps; b++) {
      optimizer.learningRate = schedule(step++);
      tf.tidy(() => {
        const index = tf.tensor1d(order.subarray(b * s.batchSize, Math.min(count, (b + 1) * s.batchSize)), 'int32');
        const x = tf.gather(features, index);
        const y = tf.gather(oneHot, index);
        const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor2D) as tf.Scalar, variables);
        optimizer.applyGradients(grads);
      });
    }
  }
  tf.dispose([oneHot]);
  optimizer.dispose();
  return model;
}

function mlpAccuracy(model: tf.LayersModel, features: tf.Tensor2D, labels: Int32Array): number {
  const logits = tf.tidy(() => model.apply(features, { training: false }) as tf.Tensor2D);
  try {
    return accuracyOfLogits(logits, labels);
  } finally {
    logits.dispose();
  }
}

interface Candidate<S> {
  settings: S;
  validationAccuracy: number;
}

async function main(): Promise<void> {
  const name = (process.argv[2] ?? 'fashion-mnist-mini') as DatasetName;
  await tf.setBackend('cpu');
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  enableFastKernels();
  const train = await loadDataset(name);
  const test = await loadDataset(name, { split: 'test' });
  const validationCount = Math.round(train.count * 0.2);
  const fit = subsetDataset(train, range(0, train.count - validationCount));
  const validation = subsetDataset(train, range(train.count - validationCount, train.count));
  const [xFit, xVal, xTrain, xTest] = [fit, validation, train, test].map(pixelFeatures);
  const rows: Array<Record<string, unknown>> = [];

  // Logistic regression: trainLinearClassifier standardizes the pixels and folds that into the weights.
  const logisticGrid = [0.01, 0.03, 0.1, 0.3].flatMap((learningRate) => [0, 1e-4, 1e-3].map((weightDecay) => ({ epochs: 50, batchSize: 256, learningRate, weightDecay, seed: 0 })));
  const logistic: Array<Candidate<(typeof logisticGrid)[number]>> = logisticGrid.map((settings) => {
    const { classifier } = trainLinearClassifier(xFit, fit.labels, train.numClasses, settings);
    const validationAccuracy = classifierAccuracy(classifier, xVal, validation.labels);
    classifier.dispose();
    console.log(`logistic ${JSON.stringify(settings)}: validation ${(100 * validationAccuracy).toFixed(2)}%`);
    return { settings, validationAccuracy };
  });
  const bestLogistic = logistic.reduce((a, b) => (b.validationAccuracy > a.validationAccuracy ? b : a));
  let started = performance.now();
  const { classifier } = trainLinearClassifier(xTrain, train.labels, train.numClasses, bestLogistic.settings);
  const logisticSeconds = (performance.now() - started) / 1000;
  rows.push({
    baseline: 'logistic regression on raw pixels',
    settings: bestLogistic.settings,
    validationAccuracy: bestLogistic.validationAccuracy,
    testAccuracy: classifierAccuracy(classifier, xTest, test.labels),
    trainSeconds: logisticSeconds,
    grid: logistic,
  });
  classifier.dispose();

  const mlpGrid = [0.03, 0.1, 0.3].flatMap((learningRate) => [1e-4, 1e-3].map((weightDecay) => ({ hidden: 512, epochs: 30, batchSize: 128, learningRate, weightDecay, seed: 0 })));
  const mlp: Array<Candidate<MlpSettings>> = mlpGrid.map((settings) => {
    const model = trainMlp(xFit, fit.labels, train.numClasses, settings);
    const validationAccuracy = mlpAccuracy(model, xVal, validation.labels);
    model.dispose();
    console.log(`mlp ${JSON.stringify(settings)}: validation ${(100 * validationAccuracy).toFixed(2)}%`);
    return { settings, validationAccuracy };
  });
  const bestMlp = mlp.reduce((a, b) => (b.validationAccuracy > a.validationAccuracy ? b : a));
  started = performance.now();
  const model = trainMlp(xTrain, train.labels, train.numClasses, bestMlp.settings);
  const mlpSeconds = (performance.now() - started) / 1000;
  rows.push({
    baseline: 'one-hidden-layer MLP on raw pixels',
    settings: bestMlp.settings,
    validationAccuracy: bestMlp.validationAccuracy,
    testAccuracy: mlpAccuracy(model, xTest, test.labels),
    trainSeconds: mlpSeconds,
    grid: mlp,
  });
  model.dispose();
  tf.dispose([xFit, xVal, xTrain, xTest]);

  console.log(`\n| baseline (${name}, ${test.count} test images) | chosen settings | test accuracy | training time |`);
  console.log('|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.baseline} | ${JSON.stringify(r.settings)} | ${(100 * (r.testAccuracy as number)).toFixed(2)}% | ${(r.trainSeconds as number).toFixed(0)} s |`);
  }
  writeJson(`bench/results/baselines-${name}.json`, { command: `npx tsx bench/baselines.ts ${name}`, dataset: name, testCount: test.count, machine: machine(), rows });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
