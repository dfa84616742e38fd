import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors';
import { createLinearClassifier, createProjectionHead, L2Normalize } from '../../src/models/heads';
import { summarize } from '../../src/models/summary';
import { roundTrip, seededTensor, seededValues } from './helpers';
import { expectInvalidArgument } from '../helpers/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('L2Normalize', () => {
  it('divides every row by its L2 norm (checked in float64) and maps a zero row to zeros', () => {
    const rows = 3;
    const dim = 5;
    const values = seededValues(rows * dim, 7);
    values.fill(0, 2 * dim, 3 * dim); // third row all zeros
    const layer = new L2Normalize();
    const y = tf.tidy(() => (layer.apply(tf.tensor2d(values, [rows, dim])) as tf.Tensor).arraySync() as number[][]);
    for (let r = 0; r < 2; r++) {
      const row = Array.from(values.subarray(r * dim, (r + 1) * dim));
      const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
      row.forEach((v, j) => expect(y[r][j]).toBeCloseTo(v / norm, 6));
      expect(Math.hypot(...y[r])).toBeCloseTo(1, 6);
    }
    expect(y[2]).toEqual([0, 0, 0, 0, 0]);
  });

  it('has the gradient of x / ||x||: (dy - y <y, dy>) / ||x||', () => {
    const dim = 4;
    const x = Array.from(seededValues(dim, 3));
    const dy = Array.from(seededValues(dim, 4));
    const layer = new L2Normalize();
    const grad = tf.tidy(() => {
      const g = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input) as tf.Tensor, tf.tensor2d([dy]))));
      return g(tf.tensor2d([x])).arraySync() as number[][];
    });
    const norm = Math.sqrt(x.reduce((s, v) => s + v * v, 0));
    const y = x.map((v) => v / norm);
    const yDotDy = y.reduce((s, v, i) => s + v * dy[i], 0);
    y.forEach((yi, i) => expect(grad[0][i]).toBeCloseTo((dy[i] - yi * yDotDy) / norm, 5));
  });

  it('keeps epsilon through getConfig and rejects a non-positive epsilon', () => {
    expect(new L2Normalize({ epsilon: 1e-6 }).getConfig().epsilon).toBe(1e-6);
    expect(() => new L2Normalize({ epsilon: 0 })).toThrow(InvalidArgumentError);
  });
});

describe('createProjectionHead', () => {
  it('builds dense(D) -> ReLU -> dense(128) -> L2 by default, with the matching parameter count', () => {
    const inputDim = 12;
    const head = createProjectionHead({ inputDim, seed: 1 });
    expect(head.getLayer('head_dense1').getWeights()[0].shape).toEqual([inputDim, inputDim]);
    expect(head.getLayer('head_dense2').getWeights()[0].shape).toEqual([inputDim, 128]);
    expect(head.getLayer('head_l2_normalize')).toBeInstanceOf(L2Normalize);
    const summary = summarize(head);
    expect(summary.totalParams).toBe(inputDim * inputDim + inputDim + inputDim * 128 + 128);
    expect(summary.trainableParams).toBe(summary.totalParams);
    expect(head.outputs[0].shape).toEqual([null, 128]);
    head.dispose();
  });

  it('returns rows of unit L2 norm for the MLP and the linear head', () => {
    for (const kind of ['mlp', 'linear'] as const) {
      const head = createProjectionHead({ inputDim: 16, kind, outputDim: 8, seed: 2 });
      const norms = tf.tidy(() => tf.norm(head.predict(seededTensor([6, 16], 5)) as tf.Tensor, 2, 1).dataSync());
      expect(norms.length).toBe(6);
      for (const n of norms) expect(n).toBeCloseTo(1, 5);
      head.dispose();
    }
  });

  it('the linear head is exactly normalize(x W + b)', () => {
    const head = createProjectionHead({ inputDim: 3, kind: 'linear', outputDim: 2, seed: 3 });
    expect(head.layers.map((l) => l.name)).toEqual(['head_input', 'head_dense', 'head_l2_normalize']);
    const [w, b] = head.getLayer('head_dense').getWeights().map((t) => t.arraySync()) as [number[][], number[]];
    const x = [0.5, -1, 2];
    const z = [0, 1].map((j) => x.reduce((s, xi, i) => s + xi * w[i][j], b[j]));
    const norm = Math.hypot(...z);
    const y = tf.tidy(() => (head.predict(tf.tensor2d([x])) as tf.Tensor).arraySync() as number[][]);
    expect(y[0][0]).toBeCloseTo(z[0] / norm, 5);
    expect(y[0][1]).toBeCloseTo(z[1] / norm, 5);
    head.dispose();
  });

  it('same seed gives the same weights, a different seed different ones', () => {
    const a = createProjectionHead({ inputDim: 8, seed: 11 });
    const b = createProjectionHead({ inputDim: 8, seed: 11 });
    const c = createProjectionHead({ inputDim: 8, seed: 12 });
    const kernel = (m: tf.LayersModel, name: string) => Array.from(m.getLayer(name).getWeights()[0].dataSync());
    expect(kernel(a, 'head_dense1')).toEqual(kernel(b, 'head_dense1'));
    expect(kernel(a, 'head_dense2')).toEqual(kernel(b, 'head_dense2'));
    expect(kernel(a, 'head_dense1')).not.toEqual(kernel(c, 'head_dense1'));
    [a, b, c].forEach((m) => m.dispose());
  });

  it('saves and loads through tfjs serialization with identical predictions', async () => {
    const head = createProjectionHead({ inputDim: 10, hiddenDim: 6, outputDim: 4, seed: 4 });
    const { loaded, artifacts } = await roundTrip(head);
    // The topology names the registered custom class, so loading went through our registration.
    expect(JSON.stringify(artifacts.modelTopology)).toContain('"class_name":"L2Normalize"');
    expect(loaded.getLayer('head_l2_normalize')).toBeInstanceOf(L2Normalize);
    const x = seededTensor([5, 10], 9);
    const before = (head.predict(x) as tf.Tensor).dataSync();
    const after = (loaded.predict(x) as tf.Tensor).dataSync();
    expect(Array.from(after)).toEqual(Array.from(before));
    tf.dispose(x);
    head.dispose();
    loaded.dispose();
  });

  it('rejects bad options, naming the option', () => {
    expectInvalidArgument(() => createProjectionHead({ inputDim: 0 }), 'options.inputDim');
    expectInvalidArgument(() => createProjectionHead({ inputDim: 4, outputDim: 1.5 }), 'options.outputDim');
    expectInvalidArgument(() => createProjectionHead({ inputDim: 4, hiddenDim: -2 }), 'options.hiddenDim');
    expectInvalidArgument(() => createProjectionHead({ inputDim: 4, kind: 'deep' as 'mlp' }), 'options.kind');
    expectInvalidArgument(() => createProjectionHead({ inputDim: 4, kind: 'linear', hiddenDim: 4 }), 'options.hiddenDim');
    expectInvalidArgument(() => createProjectionHead({ inputDim: 4, seed: -1 }), 'options.seed');
    expectInvalidArgument(() => createProjectionHead({ inputDim: 4, width: 3 } as never), 'options');
    expectInvalidArgument(() => createProjectionHead(undefined as never), 'options');
  });
});

describe('createLinearClassifier', () => {
  it('computes logits x W + b with no activation', () => {
    const clf = createLinearClassifier({ inputDim: 3, numClasses: 4, seed: 5 });
    expect(summarize(clf).totalParams).toBe(3 * 4 + 4);
    const dense = clf.getLayer('classifier_dense');
    dense.setWeights([tf.tensor2d([[1, -1, 0, 2], [0, 1, -3, 0], [2, 0, 1, -1]]), tf.tensor1d([0.5, 0, -0.5, 1])]);
    const logits = tf.tidy(() => (clf.predict(tf.tensor2d([[1, 2, -1]])) as tf.Tensor).arraySync() as number[][]);
    // x W + b by hand: [1+0-2+0.5, -1+2-0+0, 0-6-1-0.5, 2+0+1+1]
    expect(logits[0].map((v) => Number(v.toFixed(5)))).toEqual([-0.5, 1, -7.5, 4]);
    clf.dispose();
  });

  it('rejects bad options, naming the option', () => {
    expectInvalidArgument(() => createLinearClassifier({ inputDim: 3, numClasses: 0 }), 'options.numClasses');
    expectInvalidArgument(() => createLinearClassifier({ inputDim: NaN, numClasses: 2 }), 'options.inputDim');
  });
});
