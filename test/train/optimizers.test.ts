import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { cosineWithWarmup } from '../../src/train/schedule';
import { Lars, SgdMomentum, createOptimizer, type TrainOptimizer } from '../../src/train/optimizers';
import { InvalidArgumentError } from '../../src/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Applies `grads` one step at a time to a fresh variable; returns its value after each step. */
function run(optimizer: TrainOptimizer, initial: number[][] | number[], grads: Array<number[][] | number[]>, lrs?: number[]): number[][] {
  const variable = tf.variable(tf.tensor(initial));
  const seen: number[][] = [];
  grads.forEach((g, i) => {
    if (lrs) optimizer.learningRate = lrs[i];
    const gradient = tf.tensor(g);
    optimizer.applyGradients({ [variable.name]: gradient });
    gradient.dispose();
    seen.push(Array.from(variable.dataSync()));
  });
  variable.dispose();
  optimizer.dispose();
  return seen;
}

function expectClose(actual: number[][], expected: number[][], digits = 6): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(expected[i][j], digits)));
}

describe('SgdMomentum', () => {
  it('matches a hand-computed momentum sequence, including a learning-rate change', () => {
    // b1 = g1 = [.5, 1]; w1 = [1, -2] - .1 b1 = [.95, -2.1]
    // b2 = .9 b1 + g2 = [-.55, 1.4]; w2 = [1.005, -2.24]
    // b3 = .9 b2 + g3 = [-.495, 3.26]; lr .05: w3 = [1.02975, -2.403]
    const opt = new SgdMomentum({ learningRate: 0.1, momentum: 0.9 });
    const seen = run(opt, [[1, -2]], [[[0.5, 1]], [[-1, 0.5]], [[0, 2]]], [0.1, 0.1, 0.05]);
    expectClose(seen, [
      [0.95, -2.1],
      [1.005, -2.24],
      [1.02975, -2.403],
    ]);
  });

  it('adds weight decay to the gradient of weights and leaves biases (rank 1) alone', () => {
    // d1 = g + .1 w0 = [.6, .8]; w1 = [.94, -2.08]
    // g2 = 0: d2 = .1 w1 = [.094, -.208]; b2 = .9 [.6, .8] + d2 = [.634, .512]; w2 = [.8766, -2.1312]
    const weights = run(new SgdMomentum({ learningRate: 0.1, weightDecay: 0.1 }), [[1, -2]], [[[0.5, 1]], [[0, 0]]]);
    expectClose(weights, [
      [0.94, -2.08],
      [0.8766, -2.1312],
    ]);
    const bias = run(new SgdMomentum({ learningRate: 0.1, weightDecay: 0.1 }), [1, -2], [[0.5, 1]]);
    expectClose(bias, [[0.95, -2.1]]);
    // With the exclusion turned off the bias decays like a weight.
    const decayedBias = run(new SgdMomentum({ learningRate: 0.1, weightDecay: 0.1, excludeBiasAndNorm: false }), [1, -2], [[0.5, 1]]);
    expectClose(decayedBias, [[0.94, -2.08]]);
  });

  it('takes the Nesterov step d + m b', () => {
    // b1 = g1; direction = g1 + .9 g1 = [.95, 1.9]; w1 = [.905, -2.19]
    const seen = run(new SgdMomentum({ learningRate: 0.1, nesterov: true }), [[1, -2]], [[[0.5, 1]]]);
    expectClose(seen, [[0.905, -2.19]]);
  });
});

describe('Lars', () => {
  it('scales the step by the trust ratio eta ||w|| / (||g|| + wd ||w||)', () => {
    // ||w|| = 5, ||g|| = 1: trust = .001 * 5 / (1 + .01 * 5) = .005 / 1.05.
    // d = g + .01 w = [.63, .84]; b1 = .5 * trust * d = [.0015, .002]; w1 = [2.9985, 3.998].
    const opt = new Lars({ learningRate: 0.5, weightDecay: 0.01, trustCoefficient: 0.001 });
    const w = tf.tensor([[3, 4]]);
    const g = tf.tensor([[0.6, 0.8]]);
    const trust = opt.trustRatio(w, g);
    expect(trust.dataSync()[0]).toBeCloseTo(0.005 / 1.05, 8);
    tf.dispose([w, g, trust]);
    const seen = run(opt, [[3, 4]], [[[0.6, 0.8]]]);
    expectClose(seen, [[2.9985, 3.998]], 6);
  });

  it('uses a trust ratio of 1 when the gradient or the weight is zero, and keeps momentum across steps', () => {
    // Step 2 has g = 0: trust 1, d2 = .01 w1; b2 = .9 b1 + .5 d2; w2 = w1 - b2.
    const opt = new Lars({ learningRate: 0.5, weightDecay: 0.01 });
    const seen = run(opt, [[3, 4]], [[[0.6, 0.8]], [[0, 0]]]);
    const b2 = [0.9 * 0.0015 + 0.5 * 0.01 * 2.9985, 0.9 * 0.002 + 0.5 * 0.01 * 3.998];
    expectClose(seen, [
      [2.9985, 3.998],
      [2.9985 - b2[0], 3.998 - b2[1]],
    ]);
    const zeroWeight = new Lars({ learningRate: 0.5 });
    const z = tf.zeros([2, 2]);
    const g = tf.ones([2, 2]);
    const trust = zeroWeight.trustRatio(z, g);
    expect(trust.dataSync()[0]).toBe(1);
    tf.dispose([z, g, trust]);
  });

  it('gives excluded variables (biases, BatchNorm) a plain momentum step without decay or trust ratio', () => {
    const seen = run(new Lars({ learningRate: 0.5, weightDecay: 0.01 }), [3, 4], [[0.6, 0.8], [0.6, 0.8]]);
    // b1 = .5 g = [.3, .4]; w1 = [2.7, 3.6]; b2 = .9 b1 + .5 g = [.57, .76]; w2 = [2.13, 2.84]
    expectClose(seen, [
      [2.7, 3.6],
      [2.13, 2.84],
    ]);
  });
});

describe('optimizer state', () => {
  it('round-trips through getWeights/setWeights and continues identically', async () => {
    for (const name of ['sgd', 'lars'] as const) {
      const make = () => createOptimizer(name, { learningRate: 0.3, weightDecay: 0.05 });
      const a = tf.variable(tf.tensor([[1, 2], [3, 4]]));
      const b = tf.variable(tf.tensor([0.5, -0.5]));
      const grads = (k: number) => ({ [a.name]: tf.fill([2, 2], 0.1 * k), [b.name]: tf.fill([2], -0.2 * k) });
      const first = make();
      for (let k = 1; k <= 2; k++) {
        const g = grads(k);
        first.applyGradients(g);
        tf.dispose(Object.values(g));
      }
      const state = await first.getWeights();
      expect(state.map((s) => s.name)).toEqual(['iter', `${a.name}/momentum`, `${b.name}/momentum`]);
      expect(state[0].tensor.dataSync()[0]).toBe(2);
      const aCopy = tf.variable(a.clone());
      const bCopy = tf.variable(b.clone());
      // The state is keyed by variable name: point it at the copies.
      const renamed = state.map((s) => ({ ...s, name: s.name.replace(a.name + '/', aCopy.name + '/').replace(b.name + '/', bCopy.name + '/') }));
      const second = make();
      await second.setWeights(renamed);
      expect(second.iterations).toBe(2);
      // Same gradient into the original (first) and the restored optimizer on copies of the variables.
      const g3 = grads(3);
      first.applyGradients(g3);
      second.applyGradients({ [aCopy.name]: g3[a.name], [bCopy.name]: g3[b.name] });
      expect(Array.from(aCopy.dataSync())).toEqual(Array.from(a.dataSync()));
      expect(Array.from(bCopy.dataSync())).toEqual(Array.from(b.dataSync()));
      // Momentum of the copy equals momentum of the original.
      expect(Array.from(second.momentumOf(aCopy.name)!.dataSync())).toEqual(Array.from(first.momentumOf(a.name)!.dataSync()));
      tf.dispose(Object.values(g3));
      first.dispose();
      second.dispose();
      tf.dispose([a, b, aCopy, bCopy]);
    }
  });

  it('serializes its configuration', () => {
    const sgd = new SgdMomentum({ learningRate: 0.2, momentum: 0.8, weightDecay: 1e-4, nesterov: true });
    const clone = SgdMomentum.fromConfig(SgdMomentum, sgd.getConfig()) as SgdMomentum;
    expect(clone.getConfig()).toEqual(sgd.getConfig());
    const lars = new Lars({ learningRate: 1, trustCoefficient: 0.02 });
    expect((Lars.fromConfig(Lars, lars.getConfig()) as Lars).trustCoefficient).toBe(0.02);
  });

  it('does not leak tensors across steps', () => {
    for (const opt of [new SgdMomentum({ learningRate: 0.1, weightDecay: 1e-3, nesterov: true }), new Lars({ learningRate: 0.1, weightDecay: 1e-3 })]) {
      const v = tf.variable(tf.ones([3, 3]));
      const g = tf.ones([3, 3]);
      opt.applyGradients({ [v.name]: g }); // creates the momentum slot
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) opt.applyGradients({ [v.name]: g });
      expect(tf.memory().numTensors).toBe(before);
      opt.dispose();
      tf.dispose([v, g]);
    }
  });

  it('rejects bad options with the option named', () => {
    expect(() => new SgdMomentum({ learningRate: -1 })).toThrow(/options\.learningRate/);
    expect(() => new Lars({ learningRate: 0.1, momentum: 1 })).toThrow(InvalidArgumentError);
    expect(() => new Lars({ learningRate: 0.1, trustCoefficient: 0 })).toThrow(/options\.trustCoefficient/);
    expect(() => new SgdMomentum({ learningRate: 0.1, lr: 3 } as never)).toThrow(/unknown option 'lr'/);
  });
});

describe('cosineWithWarmup', () => {
  const lr = cosineWithWarmup({ baseLr: 0.4, totalSteps: 110, warmupSteps: 10, warmupStartLr: 0.04, finalLr: 0.004 });

  it('warms up linearly from the start value to the base value', () => {
    expect(lr(0)).toBeCloseTo(0.04, 12);
    expect(lr(5)).toBeCloseTo(0.22, 12);
    expect(lr(10)).toBeCloseTo(0.4, 12);
  });

  it('follows a half cosine to the final value', () => {
    // Midpoint of the decay: (base + final) / 2; a quarter in: final + (base - final)(1 + cos(pi/4))/2.
    expect(lr(60)).toBeCloseTo(0.202, 12);
    expect(lr(35)).toBeCloseTo(0.004 + 0.396 * (1 + Math.SQRT1_2) / 2, 12);
    expect(lr(110)).toBeCloseTo(0.004, 12);
    expect(lr(500)).toBe(0.004);
    for (let s = 10; s < 110; s++) expect(lr(s + 1)).toBeLessThan(lr(s));
  });

  it('without warmup starts at the base value and defaults the final value to 0', () => {
    const plain = cosineWithWarmup({ baseLr: 1, totalSteps: 4 });
    expect([0, 1, 2, 3, 4].map(plain)).toEqual([1, (1 + Math.SQRT1_2) / 2, 0.5, (1 - Math.SQRT1_2) / 2, 0].map((x) => expect.closeTo(x, 12)));
  });

  it('rejects a warmup longer than the run and negative steps', () => {
    expect(() => cosineWithWarmup({ baseLr: 1, totalSteps: 4, warmupSteps: 5 })).toThrow(/options\.warmupSteps/);
    expect(() => lr(-1)).toThrow(/step/);
  });
});
