import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { L2Normalize } from '../../src/models/heads';
import { createEncoder } from '../../src/models/resnet';
import { summarize } from '../../src/models/summary';
import { createClassifierModel, createSupConModel, setTrainable } from '../../src/models/supcon_model';
import { roundTrip, seededTensor } from './helpers';
import { expectInvalidArgument } from '../helpers/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const tiny = { arch: 'resnet8' as const, inputShape: [8, 8, 1] as [number, number, number] };

describe('createSupConModel', () => {
  it('maps images to unit-norm projections equal to head(encoder(x))', () => {
    const { encoder, head, model } = createSupConModel({ encoder: { ...tiny, seed: 1 }, head: { outputDim: 16, seed: 2 } });
    expect(model.name).toBe('supcon_model');
    expect(model.outputs[0].shape).toEqual([null, 16]);
    expect(head.getLayer('head_dense1').getWeights()[0].shape).toEqual([64, 64]); // hidden defaults to featureDim
    const x = seededTensor([3, 8, 8, 1], 4);
    const [projections, composed, norms] = tf.tidy(() => {
      const p = model.predict(x) as tf.Tensor;
      const c = head.predict(encoder.predict(x) as tf.Tensor) as tf.Tensor;
      return [p.dataSync(), c.dataSync(), tf.norm(p, 2, 1).dataSync()];
    });
    expect(Array.from(projections)).toEqual(Array.from(composed));
    for (const n of norms) expect(n).toBeCloseTo(1, 5);
    expect(summarize(model).totalParams).toBe(encoder.countParams() + head.countParams());
    tf.dispose(x);
    model.dispose();
  });

  it('shares the encoder weights: the same variables, and a change shows in the model', () => {
    const encoder = createEncoder({ ...tiny, seed: 3 });
    const { encoder: shared, model } = createSupConModel({ encoder, head: { seed: 3 } });
    expect(shared).toBe(encoder);
    // The very LayerVariable objects, not copies.
    expect(encoder.weights.every((w) => model.weights.includes(w))).toBe(true);
    const x = seededTensor([2, 8, 8, 1], 5);
    const before = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync());
    const beta = encoder.weights.find((w) => w.originalName === 'stage3_block1_bn2/beta')!;
    beta.write(tf.tidy(() => tf.onesLike(beta.read())));
    const after = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync());
    expect(Array.from(after)).not.toEqual(Array.from(before));
    tf.dispose(x);
    model.dispose();
  });

  it('saves and loads (nested encoder + head with L2Normalize) with identical predictions', async () => {
    const { model } = createSupConModel({ encoder: { ...tiny, seed: 6 }, head: { outputDim: 8, seed: 6 } });
    const x = seededTensor([2, 8, 8, 1], 7);
    // A training-mode step first, so the saved BN moving statistics are not the initial ones.
    tf.tidy(() => {
      model.apply(x, { training: true });
    });
    const { loaded, artifacts } = await roundTrip(model);
    expect(JSON.stringify(artifacts.modelTopology)).toContain('"class_name":"L2Normalize"');
    expect(artifacts.weightSpecs!.map((w) => w.name)).toContain('stage2_block1_shortcut_conv/kernel');
    const before = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync());
    const after = tf.tidy(() => (loaded.predict(x) as tf.Tensor).dataSync());
    expect(Array.from(after)).toEqual(Array.from(before));
    const loadedHead = loaded.getLayer('projection_head') as tf.LayersModel;
    expect(loadedHead.getLayer('head_l2_normalize')).toBeInstanceOf(L2Normalize);
    tf.dispose(x);
    model.dispose();
    loaded.dispose();
  });

  it('rejects bad options, naming the nested option', () => {
    expectInvalidArgument(() => createSupConModel({ encoder: { ...tiny, arch: 'resnet7' as 'resnet8' } }), 'options.encoder.arch');
    expectInvalidArgument(() => createSupConModel({ encoder: { ...tiny, widthMultiplier: 0 } }), 'options.encoder.widthMultiplier');
    expectInvalidArgument(() => createSupConModel({ encoder: tiny, head: { outputDim: 0 } }), 'options.head.outputDim');
    expectInvalidArgument(() => createSupConModel({ encoder: tiny, head: { inputDim: 5 } as never }), 'options.head');
    const notAnEncoder = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [4, 4, 1], filters: 2, kernelSize: 1 })] });
    expectInvalidArgument(() => createSupConModel({ encoder: notAnEncoder }), 'options.encoder');
    notAnEncoder.dispose();
    expectInvalidArgument(() => createSupConModel(undefined as never), 'options');
  });
});

describe('createClassifierModel', () => {
  it('maps images to logits equal to classifier(encoder(x))', () => {
    const { encoder, classifier, model } = createClassifierModel({ encoder: { ...tiny, seed: 1 }, numClasses: 10, seed: 1 });
    expect(model.outputs[0].shape).toEqual([null, 10]);
    expect(summarize(classifier).totalParams).toBe(64 * 10 + 10);
    const x = seededTensor([2, 8, 8, 1], 2);
    const [logits, composed] = tf.tidy(() => [
      (model.predict(x) as tf.Tensor).dataSync(),
      (classifier.predict(encoder.predict(x) as tf.Tensor) as tf.Tensor).dataSync(),
    ]);
    expect(Array.from(logits)).toEqual(Array.from(composed));
    tf.dispose(x);
    model.dispose();
    expectInvalidArgument(() => createClassifierModel({ encoder: tiny, numClasses: 1.5 }), 'options.numClasses');
    expectInvalidArgument(() => createClassifierModel({ encoder: tiny, numClasses: 2, seed: -3 }), 'options.seed');
  });
});

describe('setTrainable', () => {
  it('freezes a nested encoder so only the classifier trains (linear evaluation)', () => {
    const { encoder, classifier, model } = createClassifierModel({ encoder: { ...tiny, seed: 2 }, numClasses: 3, seed: 2 });
    const full = summarize(model);
    setTrainable(encoder, false);
    const frozen = summarize(model);
    expect(frozen.totalParams).toBe(full.totalParams);
    expect(frozen.trainableParams).toBe(64 * 3 + 3);
    expect(encoder.weights.every((w) => !(w.read() as tf.Variable).trainable)).toBe(true);

    // A few optimizer steps over tfjs's default variable list (every trainable variable).
    const x = seededTensor([4, 8, 8, 1], 3);
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), 3);
    const encoderBefore = encoder.getWeights().map((t) => Array.from(t.dataSync()));
    const classifierBefore = classifier.getWeights().map((t) => Array.from(t.dataSync()));
    const optimizer = tf.train.sgd(0.1);
    for (let step = 0; step < 2; step++) {
      optimizer.minimize(() => tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: false }) as tf.Tensor) as tf.Scalar);
    }
    encoder.getWeights().forEach((t, i) => expect(Array.from(t.dataSync())).toEqual(encoderBefore[i]));
    expect(Array.from(classifier.getWeights()[0].dataSync())).not.toEqual(classifierBefore[0]);

    setTrainable(encoder, true);
    expect(summarize(model).trainableParams).toBe(full.trainableParams);
    optimizer.dispose();
    tf.dispose([x, labels]);
    model.dispose();
  });

  it('reaches nested models, which tfjs 4.22 model.trainable = false does not', () => {
    const { encoder, model } = createSupConModel({ encoder: tiny, head: { seed: 1 } });
    model.trainable = false;
    // tfjs only flips the variables of direct layers: the nested encoder's stay trainable.
    expect(encoder.weights.some((w) => (w.read() as tf.Variable).trainable)).toBe(true);
    model.trainable = true;
    setTrainable(model, false);
    expect(model.weights.every((w) => !(w.read() as tf.Variable).trainable)).toBe(true);
    expect(summarize(model).trainableParams).toBe(0);
    setTrainable(model, true);
    expect(summarize(model).nonTrainableParams).toBe(summarize(encoder).nonTrainableParams);
    model.dispose();
    expectInvalidArgument(() => setTrainable({} as tf.LayersModel, false), 'model');
    expectInvalidArgument(() => setTrainable(encoder, 'no' as never), 'trainable');
    expectInvalidArgument(() => summarize(encoder.layers[1] as never), 'model');
  });
});

describe('training-mode gradients', () => {
  it('ResNet-8 at 28x28x1: every trainable variable gets a finite, non-zero gradient; no tensor leaks', () => {
    const encoder = createEncoder({ arch: 'resnet8', inputShape: [28, 28, 1], seed: 9 });
    const x = seededTensor([2, 28, 28, 1], 10);
    const probe = seededTensor([64, 5], 11);
    const variables = encoder.trainableWeights.map((w) => w.read() as tf.Variable);
    expect(variables.length).toBe(9 + 2 * 9); // 9 conv kernels, 9 BN gamma/beta pairs
    // A non-linear readout: the plain sum of features would give BN-cancelled gradients.
    const loss = () => tf.mean(tf.square(tf.matMul(encoder.apply(x, { training: true }) as tf.Tensor, probe))) as tf.Scalar;

    const run = () => {
      const { value, grads } = tf.variableGrads(loss, variables);
      const result = Object.entries(grads).map(([name, g]) => {
        const values = Array.from(g.dataSync());
        return { name, finite: values.every(Number.isFinite), maxAbs: values.reduce((m, v) => Math.max(m, Math.abs(v)), 0) };
      });
      const lossValue = value.dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      return { result, lossValue };
    };

    const before = tf.memory().numTensors;
    const { result, lossValue } = run();
    expect(tf.memory().numTensors).toBe(before);
    expect(Number.isFinite(lossValue)).toBe(true);
    expect(result.map((r) => r.name).sort()).toEqual(variables.map((v) => v.name).sort());
    for (const r of result) {
      expect(r.finite, r.name).toBe(true);
      expect(r.maxAbs, r.name).toBeGreaterThan(1e-8);
    }
    // Training mode really was used: the BN moving statistics moved off their initial values.
    const movingMean = encoder.weights.find((w) => w.originalName === 'stage3_block1_bn2/moving_mean')!.read().dataSync();
    expect(movingMean.some((v) => v !== 0)).toBe(true);
    tf.dispose([x, probe]);
    encoder.dispose();
  });
});
