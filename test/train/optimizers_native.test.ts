/** The optimizers' native step (one call for all variables) against a float64 reference. */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadNative } from '../../src/native';
import { InvalidArgumentError } from '../../src/errors';
import { SgdMomentum } from '../../src/train/optimizers';
import { checkAgainstReference } from './optimizer_paths';

const addon = loadNative();

describe.skipIf(typeof addon?.optimizerUpdate !== 'function')('native optimizer step', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('follows the float64 reference of SGD, Nesterov SGD and LARS over several steps', () => {
    checkAgainstReference();
  });

  it('is one native call per step, never changes a tensor that shares a variable\'s data, and leaks nothing', () => {
    const v = tf.variable(tf.ones([40000]));
    const alias = tf.clone(v);  // shares v's data
    const optimizer = new SgdMomentum({ learningRate: 0.1 });
    const calls = { n: 0 };
    const original = addon!.optimizerUpdate.bind(addon);
    (addon as { optimizerUpdate: typeof original }).optimizerUpdate = (args) => {
      calls.n++;
      original(args);
    };
    try {
      const g = tf.ones([40000]);
      optimizer.applyGradients({ [v.name]: g });
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) optimizer.applyGradients({ [v.name]: g });
      expect(tf.memory().numTensors).toBe(before);
      expect(calls.n).toBe(6);
      expect(alias.dataSync()[0]).toBe(1);
      expect(v.dataSync()[0]).toBeLessThan(1);
      tf.dispose([g, alias, v]);
    } finally {
      (addon as { optimizerUpdate: typeof original }).optimizerUpdate = original;
      optimizer.dispose();
    }
  });

  it('refuses a bad learning rate with a typed error, where it is set', () => {
    const v = tf.variable(tf.ones([4, 4]));
    const optimizer = new SgdMomentum({ learningRate: 0.1 });
    expect(() => {
      optimizer.learningRate = Number.NaN;
    }).toThrow(InvalidArgumentError);
    expect(optimizer.learningRate).toBe(0.1);
    tf.dispose(v);
    optimizer.dispose();
  });
});
