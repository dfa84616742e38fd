/**
 * Settings of the linear evaluation, measured on a trained run: the frozen encoder's features
 * of the training and test images are computed once, then linear classifiers with every setting
 * of a grid (epochs, learning rate, weight decay) are trained on 80% of the training features
 * and scored on the other 20% (validation) and on the test features. The choice is made on
 * validation accuracy; test accuracy is reported beside it.
 *
 *   npx tsx bench/linear_eval_sweep.ts runs/sweep/<sweep>/<run> [name]
 *
 * Writes bench/results/linear-eval-<name>.json (default name: the run folder's name).
 */
import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  classifierAccuracy,
  disposeRunModels,
  firstRecords,
  loadSplit,
  openCheckpoint,
  predictDataset,
  trainLinearClassifier,
} from '../src';
import { machine, writeJson } from './util';

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: npx tsx bench/linear_eval_sweep.ts <run dir> [name]');
  const name = process.argv[3] ?? basename(dir);
  await tf.setBackend('cpu');
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  const opened = await openCheckpoint(dir);
  const { config, models } = opened;
  const train = firstRecords(await loadSplit(config, 'train'), config.limitTrain);
  const test = firstRecords(await loadSplit(config, 'test'), config.limitTest);
  let started = performance.now();
  const trainFeatures = predictDataset(models.encoder, train) as tf.Tensor2D;
  const testFeatures = predictDataset(models.encoder, test) as tf.Tensor2D;
  const featureSeconds = (performance.now() - started) / 1000;
  const fitCount = Math.round(train.count * 0.8);
  const fitIndex = tf.range(0, fitCount, 1, 'int32');
  const valIndex = tf.range(fitCount, train.count, 1, 'int32');
  const fitFeatures = tf.gather(trainFeatures, fitIndex) as tf.Tensor2D;
  const valFeatures = tf.gather(trainFeatures, valIndex) as tf.Tensor2D;
  const fitLabels = train.labels.subarray(0, fitCount);
  const valLabels = train.labels.subarray(fitCount);

  const rows: Array<Record<string, number>> = [];
  for (const epochs of [10, 30, 100]) {
    for (const learningRate of [0.03, 0.1, 0.3, 1]) {
      for (const weightDecay of [0, 1e-4, 1e-3]) {
        const settings = { epochs, learningRate, weightDecay, batchSize: 256, seed: 0 };
        started = performance.now();
        const { classifier } = trainLinearClassifier(fitFeatures, fitLabels, train.numClasses, settings);
        const seconds = (performance.now() - started) / 1000;
        const validationAccuracy = classifierAccuracy(classifier, valFeatures, valLabels);
        classifier.dispose();
        // The same setting on all training features, scored on the test set.
        const full = trainLinearClassifier(trainFeatures, train.labels, train.numClasses, settings);
        const testAccuracy = classifierAccuracy(full.classifier, testFeatures, test.labels);
        full.classifier.dispose();
        rows.push({ epochs, learningRate, weightDecay, validationAccuracy, testAccuracy, seconds });
        console.log(
          `epochs ${epochs} lr ${learningRate} wd ${weightDecay}: validation ${(100 * validationAccuracy).toFixed(2)}%, ` +
            `test ${(100 * testAccuracy).toFixed(2)}% (${seconds.toFixed(1)} s)`,
        );
      }
    }
  }
  tf.dispose([trainFeatures, testFeatures, fitFeatures, valFeatures, fitIndex, valIndex]);
  disposeRunModels(models);
  const best = rows.reduce((a, b) => (b.validationAccuracy > a.validationAccuracy ? b : a));
  console.log(`\nbest on validation: ${JSON.stringify(best)}; features took ${featureSeconds.toFixed(1)} s`);
  writeJson(`bench/results/linear-eval-${name}.json`, {
    command: `npx tsx bench/linear_eval_sweep.ts ${dir} ${name}`,
    run: dir,
    config,
    featureSeconds,
    machine: machine(),
    best,
    rows,
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
