/**
 * A small ResNet built from tfjs layers (conv-BN-relu basic blocks with residual adds and a
 * projection shortcut, global average pooling, dense) trained with and without the native
 * kernels: the loss and every trainable variable's gradient agree, and 50 SGD steps leak no
 * tensors and no native memory.
 * Tolerance: |native - js| <= 2e-4 (1 + max|js|) per gradient (float32 through ~12 layers and
 * batch-norm; a wrong kernel moves gradients by O(1)).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeKernelStatus, restoreKernels, useNativeKernels } from '../../src/kernels';
import { requireNative } from '../../src/native';
import { type ResNetSpec, buildResNet, syntheticBatch, trainStep, trainingLoss } from '../../bench/resnet';
import { expectClose, nativeAvailable } from './helpers';

const TINY: ResNetSpec = { inputShape: [10, 10, 3], stemWidth: 6, stageWidths: [6, 12], blocksPerStage: 1, classes: 5, seed: 3 };

function lossAndGrads(model: tf.LayersModel, images: tf.Tensor4D, oneHot: tf.Tensor2D) {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { value, grads } = tf.variableGrads(() => trainingLoss(model, images, oneHot), vars);
  const out = {
    loss: value.dataSync()[0],
    grads: vars.map((v) => ({ name: v.name, values: Float32Array.from(grads[v.name].dataSync()) })),
  };
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

describe.skipIf(!nativeAvailable)('a small ResNet with native kernels', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterAll(() => {
    restoreKernels();
  });

  it('loss and every variable gradient match the JS kernels', () => {
    const model = buildResNet(TINY);
    const { images, oneHot } = syntheticBatch(TINY, 6);
    restoreKernels();
    const js = lossAndGrads(model, images, oneHot);
    expect(useNativeKernels().length).toBeGreaterThan(0);
    const native = lossAndGrads(model, images, oneHot);
    expect(Number.isFinite(js.loss)).toBe(true);
    expect(Math.abs(native.loss - js.loss)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(js.loss)));
    expect(native.grads.length).toBe(js.grads.length);
    // conv kernels (no bias), BN gamma/beta and the dense kernel/bias
    expect(js.grads.length).toBeGreaterThanOrEqual(20);
    js.grads.forEach((g, i) => {
      expect(native.grads[i].name).toBe(g.name);
      expectClose(native.grads[i].values, g.values, 2e-4, `gradient of ${g.name}`);
    });
    tf.dispose([images, oneHot]);
    model.dispose();
  });

  it('50 SGD steps: loss decreases, no tensor leak, native memory back to its baseline', () => {
    useNativeKernels();
    expect(nativeKernelStatus().active).toContain('Conv2DBackpropFilter');
    const addon = requireNative();
    const model = buildResNet({ ...TINY, seed: 9 });
    const { images, oneHot } = syntheticBatch(TINY, 8, 21);
    const optimizer = tf.train.sgd(0.05);
    const first = trainStep(model, optimizer, images, oneHot);
    trainStep(model, optimizer, images, oneHot);
    trainStep(model, optimizer, images, oneHot);  // per-thread packing/scratch buffers reach their sizes
    const tensors = tf.memory().numTensors;
    const bytes = addon.memoryStats().currentBytes;
    let last = first;
    for (let i = 0; i < 50; ++i) last = trainStep(model, optimizer, images, oneHot);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(addon.memoryStats().currentBytes).toBe(bytes);
    expect(last).toBeLessThan(first);  // the same batch: the step really trains
    tf.dispose([images, oneHot]);
    model.dispose();
    optimizer.dispose();
  });
});
