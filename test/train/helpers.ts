/** Shared fixtures of the training tests: a tiny conv encoder and a small slice of the embedded data. */
import * as tf from '@tensorflow/tfjs';
import { loadDataset, subsetDataset, type ImageDataset } from '../../src/data';
import type { TrainConfig } from '../../src/train/config';

/**
 * A two-conv encoder (stride 2 twice, BatchNorm, ReLU, global pooling): cheap enough for
 * tfjs's pure-JS cpu backend, with the same kinds of layers as the ResNets (and their names
 * unique, so checkpoints match weights by name).
 */
export function tinyEncoder(_config: TrainConfig, inputShape: [number, number, number], seed: number): tf.LayersModel {
  const input = tf.input({ shape: inputShape, name: 'image' });
  const conv = (name: string, filters: number, s: number) =>
    tf.layers.conv2d({ name, filters, kernelSize: 3, strides: 2, padding: 'same', useBias: false, kernelInitializer: tf.initializers.heNormal({ seed: s }) });
  let x = conv('tiny_conv1', 8, seed % 100000) .apply(input) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'tiny_bn1' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.reLU({ name: 'tiny_relu1' }).apply(x) as tf.SymbolicTensor;
  x = conv('tiny_conv2', 16, (seed % 100000) + 1).apply(x) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'tiny_bn2' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.reLU({ name: 'tiny_relu2' }).apply(x) as tf.SymbolicTensor;
  const features = tf.layers.globalAveragePooling2d({ name: 'tiny_pool' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: features, name: 'encoder' });
}

/** The first `train` / `test` records of the embedded Fashion-MNIST subset. */
export async function smallSplits(train: number, test: number): Promise<{ train: ImageDataset; test: ImageDataset }> {
  const full = { train: await loadDataset('fashion-mnist-mini'), test: await loadDataset('fashion-mnist-mini', { split: 'test' }) };
  const first = (d: ImageDataset, n: number) => subsetDataset(d, Int32Array.from({ length: n }, (_, i) => i));
  return { train: first(full.train, train), test: first(full.test, test) };
}

/** A config for tiny runs: custom encoder, small head, few kNN samples. */
export function tinyConfig(overrides: Partial<TrainConfig> = {}): Partial<TrainConfig> {
  return {
    arch: 'custom',
    projectionDim: 16,
    batchSize: 32,
    epochs: 2,
    warmupEpochs: 0,
    lr: 0.1,
    linearEpochs: 5,
    knnK: 5,
    knnBank: 64,
    knnQueries: 64,
    ...overrides,
  };
}
