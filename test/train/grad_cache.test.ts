// Gradient caching (src/train/grad_cache.ts, `--chunk-size`): the chunked gradient equals the
// unchunked one for a model without batch norm; with batch norm each chunk uses its own
// statistics and the moving averages move once per chunk; nothing leaks; the trainer runs with it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { supConLoss } from '../../src/loss/op';
import { resolveTrainConfig } from '../../src/train/config';
import { chunkedGradients } from '../../src/train/grad_cache';
import { trainRun } from '../../src/train/trainer';
import { gaussian, maxAbs, maxAbsDiff, testRng } from '../helpers/reference64';
import { smallSplits, tinyConfig, tinyEncoder } from './helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const B = 12;
const labels = Int32Array.from({ length: B }, (_, i) => i % 4);

/** The trainer's loss on [2B, D] view-major projections. */
function loss(z: tf.Tensor2D): tf.Scalar {
  const f = tf.transpose(tf.reshape(z, [2, B, -1]), [1, 0, 2]);
  return supConLoss(f, labels, { temperature: 0.1, normalize: true }) as tf.Scalar;
}

function convModel(batchNorm: boolean): tf.LayersModel {
  const input = tf.input({ shape: [6, 6, 2] });
  let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }) }).apply(input) as tf.SymbolicTensor;
  if (batchNorm) x = tf.layers.batchNormalization({ momentum: 0.5 }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.reLU().apply(x) as tf.SymbolicTensor;
  x = tf.layers.flatten().apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 5, kernelInitializer: tf.initializers.glorotNormal({ seed: 2 }) }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

function unchunked(model: tf.LayersModel, x: tf.Tensor, variables: tf.Variable[]) {
  const r = tf.variableGrads(() => loss(model.apply(x, { training: true }) as tf.Tensor2D), variables);
  const value = r.value.dataSync()[0];
  r.value.dispose();
  return { value, grads: r.grads };
}

describe('chunkedGradients', () => {
  it('equals the unchunked gradient for a model without batch norm, for every chunk size', () => {
    const model = convModel(false);
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const x = tf.tensor4d(gaussian(testRng(1), 2 * B * 6 * 6 * 2), [2 * B, 6, 6, 2]);
    const want = unchunked(model, x, variables);
    const before = tf.memory().numTensors;
    for (const chunk of [1, 5, 8, 2 * B, 100]) {
      const got = chunkedGradients(model, x, chunk, variables, loss);
      expect(Math.abs(got.value - want.value), `chunk ${chunk}: loss`).toBeLessThan(1e-6 * Math.abs(want.value));
      expect(Object.keys(got.grads).sort()).toEqual(Object.keys(want.grads).sort());
      for (const [name, g] of Object.entries(want.grads)) {
        const scale = maxAbs(g.dataSync());
        expect(scale, name).toBeGreaterThan(0);
        expect(maxAbsDiff(got.grads[name].dataSync(), g.dataSync()), `chunk ${chunk}: ${name}`).toBeLessThan(1e-5 * scale);
      }
      tf.dispose(Object.values(got.grads));
      expect(tf.memory().numTensors, `chunk ${chunk}: no tensor left behind`).toBe(before);
    }
    tf.dispose([x, ...Object.values(want.grads)]);
    model.dispose();
  });

  it('with batch norm: one chunk is the unchunked step; smaller chunks use per-chunk statistics and move the averages once per chunk', () => {
    const x = tf.tensor4d(gaussian(testRng(2), 2 * B * 6 * 6 * 2), [2 * B, 6, 6, 2]);
    const moving = (m: tf.LayersModel) => m.nonTrainableWeights.map((w) => Array.from(w.read().dataSync()));

    const a = convModel(true);
    const b = convModel(true);
    const va = a.trainableWeights.map((w) => w.read() as tf.Variable);
    const vb = b.trainableWeights.map((w) => w.read() as tf.Variable);
    const whole = unchunked(a, x, va);
    const one = chunkedGradients(b, x, 2 * B, vb, loss);
    expect(one.value).toBeCloseTo(whole.value, 5);
    // (Two models: their variables' names differ, their order does not.)
    va.forEach((v, i) => {
      const g = whole.grads[v.name].dataSync();
      expect(maxAbsDiff(one.grads[vb[i].name].dataSync(), g), v.name).toBeLessThan(1e-5 * maxAbs(g));
    });
    // The first pass's updates were undone: the averages moved once (as the unchunked step's).
    expect(moving(b)).toEqual(moving(a));

    // Chunks of 8 rows: the averages move as three sequential training-mode applications would.
    const c = convModel(true);
    const d = convModel(true);
    const vc = c.trainableWeights.map((w) => w.read() as tf.Variable);
    const chunked = chunkedGradients(c, x, 8, vc, loss);
    for (let start = 0; start < 2 * B; start += 8) tf.tidy(() => d.apply(tf.slice(x, start, 8), { training: true }) as tf.Tensor);
    const mc = moving(c).flat();
    const md = moving(d).flat();
    expect(maxAbsDiff(mc, md)).toBeLessThan(1e-6);
    // ... and the loss is that of per-chunk statistics: not the whole batch's.
    expect(Math.abs(chunked.value - whole.value)).toBeGreaterThan(1e-6);
    tf.dispose([x, ...Object.values(whole.grads), ...Object.values(one.grads), ...Object.values(chunked.grads)]);
    for (const m of [a, b, c, d]) m.dispose();
  });

  it('refuses a chunk size that is not a positive integer', () => {
    const model = convModel(false);
    const x = tf.zeros([4, 6, 6, 2]);
    expect(() => chunkedGradients(model, x, 0, [], loss)).toThrow(/chunkSize/);
    x.dispose();
    model.dispose();
  });
});

describe('training with --chunk-size', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'supcon-chunks-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('runs an epoch in chunks (with a queue too) and leaves no tensor behind', async () => {
    const datasets = await smallSplits(32, 16);
    const counts: number[] = [];
    const run = await trainRun(tinyConfig({ epochs: 1, batchSize: 16, chunkSize: 12, queueSize: 48, knnBank: 0, linearEpochs: 1 }), {
      buildEncoder: tinyEncoder,
      fastKernels: false,
      tensorboard: false,
      outDir: join(root, 'chunks'),
      datasets,
      callbacks: { onStep: () => counts.push(tf.memory().numTensors) },
    });
    expect(run.status).toBe('complete');
    expect(Number.isFinite(run.metrics[0].loss)).toBe(true);
    expect(counts).toHaveLength(2);
    expect(counts[1]).toBe(counts[0]);
    expect(() => resolveTrainConfig({ method: 'ce', chunkSize: 8 })).toThrow(/config\.chunkSize/);
  });
});
