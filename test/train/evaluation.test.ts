import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../src/data';
import { knnAccuracy, knnPredict } from '../../src/train/knn';
import { classifierAccuracy, trainLinearClassifier } from '../../src/train/linear_eval';
import { InvalidArgumentError } from '../../src/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Plain-JavaScript weighted kNN in float64, written from the definition (Wu et al. 2018). */
function knnReference(bank: number[][], bankLabels: number[], queries: number[][], k: number, tau: number, classes: number): number[] {
  const unit = (v: number[]) => {
    const n = Math.max(Math.hypot(...v), 1e-12);
    return v.map((x) => x / n);
  };
  const b = bank.map(unit);
  return queries.map((q) => {
    const u = unit(q);
    const sims = b.map((row, i) => ({ i, s: row.reduce((acc, x, j) => acc + x * u[j], 0) }));
    sims.sort((x, y) => y.s - x.s);
    const votes = new Array(classes).fill(0);
    for (const { i, s } of sims.slice(0, Math.min(k, b.length))) votes[bankLabels[i]] += Math.exp(s / tau);
    return votes.indexOf(Math.max(...votes));
  });
}

function randomMatrix(rng: Rng, rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => rng.normal()));
}

describe('knnPredict', () => {
  it('agrees with a float64 reference on random data, for several k and temperatures', () => {
    const rng = new Rng(7);
    const bank = randomMatrix(rng, 120, 6);
    const labels = Array.from({ length: 120 }, () => rng.int(4));
    const queries = randomMatrix(rng, 50, 6);
    const bankT = tf.tensor2d(bank);
    const queriesT = tf.tensor2d(queries);
    for (const [k, tau] of [
      [1, 0.07],
      [7, 0.07],
      [20, 0.5],
      [500, 1],
    ] as const) {
      // chunkSize 16 exercises the chunked path (50 queries = 3 full chunks and a partial one).
      const predicted = knnPredict(bankT, Int32Array.from(labels), queriesT, { numClasses: 4, k, temperature: tau, chunkSize: 16 });
      expect(Array.from(predicted)).toEqual(knnReference(bank, labels, queries, k, tau, 4));
    }
    tf.dispose([bankT, queriesT]);
  });

  it('weights close neighbours more: one very similar neighbour outvotes two far ones', () => {
    // Query along x. Bank: one row at angle 0 (class 1), two rows at ~60 degrees (class 0).
    const bank = tf.tensor2d([
      [1, 0],
      [0.5, 0.866],
      [0.5, -0.866],
    ]);
    const query = tf.tensor2d([[2, 0]]);
    const labels = Int32Array.from([1, 0, 0]);
    // tau 0.07: exp(1/0.07) >> 2 exp(0.5/0.07); tau 10: weights nearly equal, majority wins.
    expect(Array.from(knnPredict(bank, labels, query, { numClasses: 2, k: 3, temperature: 0.07 }))).toEqual([1]);
    expect(Array.from(knnPredict(bank, labels, query, { numClasses: 2, k: 3, temperature: 10 }))).toEqual([0]);
    // Cosine similarity ignores the norm: a scaled copy of a bank row finds it.
    expect(Array.from(knnPredict(bank, labels, tf.tensor2d([[0.05, 0.0866]]), { numClasses: 2, k: 1 }))).toEqual([0]);
    tf.dispose([bank, query]);
  });

  it('reports accuracy and leaks no tensors', () => {
    const bank = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const queries = tf.tensor2d([
      [1, 0.1],
      [0.1, 1],
      [1, 0],
      [0, 1],
    ]);
    const before = tf.memory().numTensors;
    const acc = knnAccuracy(bank, Int32Array.from([0, 1]), queries, Int32Array.from([0, 1, 1, 1]), { numClasses: 2, k: 1 });
    expect(acc).toBe(0.75);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([bank, queries]);
  });

  it('rejects mismatched inputs with the argument named', () => {
    const bank = tf.zeros([3, 4]) as tf.Tensor2D;
    const queries = tf.zeros([2, 5]) as tf.Tensor2D;
    expect(() => knnPredict(bank, new Int32Array(3), queries, { numClasses: 2 })).toThrow(/for queries/);
    expect(() => knnPredict(bank, new Int32Array(2), bank, { numClasses: 2 })).toThrow(/for bankLabels/);
    expect(() => knnPredict(bank, Int32Array.from([0, 5, 1]), bank, { numClasses: 2 })).toThrow(/bankLabels\[1\]/);
    expect(() => knnPredict(bank, new Int32Array(3), bank, { numClasses: 2, k: 0 })).toThrow(InvalidArgumentError);
    tf.dispose([bank, queries]);
  });
});

describe('trainLinearClassifier', () => {
  /** Three Gaussian blobs in 5-D, then every dimension shifted and scaled very differently. */
  function blobs(rng: Rng, perClass: number): { x: number[][]; y: number[] } {
    const centers = [
      [2, 0, 0, 0, 0],
      [0, 2, 0, 0, 0],
      [0, 0, 2, 0, 0],
    ];
    const offset = [300, -50, 7, 0, 1000];
    const scale = [40, 0.01, 3, 1, 100];
    const x: number[][] = [];
    const y: number[] = [];
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < perClass; i++) {
        x.push(centers[c].map((m, j) => (m + 0.5 * rng.normal()) * scale[j] + offset[j]));
        y.push(c);
      }
    }
    return { x, y };
  }

  it('separates well-separated classes whatever the features scale, and the saved classifier reads raw features', () => {
    const rng = new Rng(1);
    const train = blobs(rng, 60);
    const test = blobs(rng, 30);
    const features = tf.tensor2d(train.x);
    const before = tf.memory().numTensors;
    const { classifier, losses } = trainLinearClassifier(features, Int32Array.from(train.y), 3, { epochs: 15, batchSize: 32, seed: 3 });
    // Only the classifier's two weights remain.
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(losses.length).toBe(15);
    expect(losses[14]).toBeLessThan(losses[0] * 0.5);
    const testFeatures = tf.tensor2d(test.x);
    expect(classifierAccuracy(classifier, testFeatures, Int32Array.from(test.y))).toBeGreaterThanOrEqual(0.95);
    expect(classifierAccuracy(classifier, features, Int32Array.from(train.y))).toBeGreaterThanOrEqual(0.95);
    classifier.dispose();
    tf.dispose([features, testFeatures]);
  });

  it('is reproducible for a seed', () => {
    const rng = new Rng(2);
    const data = blobs(rng, 20);
    const features = tf.tensor2d(data.x);
    const run = () => {
      const { classifier } = trainLinearClassifier(features, Int32Array.from(data.y), 3, { epochs: 3, seed: 9 });
      const w = classifier.getWeights().map((t) => Array.from(t.dataSync()));
      classifier.dispose();
      return w;
    };
    expect(run()).toEqual(run());
    features.dispose();
  });
});
