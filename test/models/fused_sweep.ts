/**
 * The fused ConvBatchNorm layer against the plain tfjs layers it replaces (conv2d without bias,
 * batchNormalization, add, reLU) over a sweep of shapes and modes: outputs, the gradients of
 * every input and weight, and the moving statistics after the step. Shared by the native suite
 * and the suite without the addon (the composed path), which import it after choosing.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { ConvBatchNorm } from '../../src/models/layers';

export interface SweepCase {
  batch: number;
  size: number;
  inChannels: number;
  filters: number;
  kernel: 1 | 3;
  stride: 1 | 2;
  residual: boolean;
  relu: boolean;
  training: boolean;
}

/** A deterministic sweep covering every value of each axis, odd channel counts and batch 1. */
export function sweepCases(count: number): SweepCase[] {
  let s = 12345;
  const pick = <T>(xs: readonly T[]): T => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return xs[(s >>> 8) % xs.length];
  };
  const fixed: SweepCase[] = [
    { batch: 1, size: 7, inChannels: 1, filters: 16, kernel: 3, stride: 1, residual: false, relu: true, training: true },
    { batch: 2, size: 8, inChannels: 16, filters: 32, kernel: 1, stride: 2, residual: false, relu: false, training: true },
    { batch: 2, size: 9, inChannels: 17, filters: 17, kernel: 3, stride: 1, residual: true, relu: true, training: false },
    { batch: 1, size: 6, inChannels: 64, filters: 64, kernel: 3, stride: 2, residual: true, relu: false, training: true },
  ];
  const out = [...fixed];
  while (out.length < count) {
    out.push({
      batch: pick([1, 2, 3]),
      size: pick([5, 6, 8, 9]),
      inChannels: pick([1, 3, 5, 16, 17, 32]),
      filters: pick([1, 2, 7, 16, 33, 64]),
      kernel: pick([1, 3] as const),
      stride: pick([1, 2] as const),
      residual: pick([false, true]),
      relu: pick([false, true]),
      training: pick([false, true]),
    });
  }
  return out;
}

export function describeCase(c: SweepCase): string {
  return (
    `b${c.batch} ${c.size}x${c.size}x${c.inChannels}->${c.filters} k${c.kernel} s${c.stride}` +
    `${c.residual ? ' residual' : ''}${c.relu ? ' relu' : ''} ${c.training ? 'training' : 'inference'}`
  );
}

/** Max |a - b| <= tol * (1 + max|b|). */
export function expectNear(a: tf.Tensor, b: tf.Tensor, tol: number, what: string): void {
  expect(a.shape, `${what}: shape`).toEqual(b.shape);
  const av = a.dataSync();
  const bv = b.dataSync();
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < bv.length; i++) {
    scale = Math.max(scale, Math.abs(bv[i]));
    const d = Math.abs(av[i] - bv[i]);
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  expect(worst, `${what}: max |fused - plain| (scale ${scale})`).toBeLessThanOrEqual(tol * (1 + scale));
}

/**
 * Runs one case through both implementations from the same weights and inputs, and compares.
 * Gradients of L = sum(y * probe) with respect to x, the shortcut, the kernel, gamma and beta.
 */
export function checkCase(c: SweepCase, seed: number): void {
  const momentum = 0.9;
  const epsilon = 1e-5;
  const outSize = Math.ceil(c.size / c.stride);
  const u = (shape: number[], lo: number, hi: number, k: number) => tf.randomUniform(shape, lo, hi, 'float32', seed * 16 + k);
  const x = tf.tidy(() => tf.variable(u([c.batch, c.size, c.size, c.inChannels], -1, 1, 1), true, `x_${seed}`));
  const shortcut = tf.tidy(() => tf.variable(u([c.batch, outSize, outSize, c.filters], -1, 1, 2), true, `shortcut_${seed}`));
  const probe = u([c.batch, outSize, outSize, c.filters], -1, 1, 3);
  const kernel = u([c.kernel, c.kernel, c.inChannels, c.filters], -0.5, 0.5, 4);
  const gamma = u([c.filters], 0.5, 1.5, 5);
  const beta = u([c.filters], -0.5, 0.5, 6);
  const movingMean = u([c.filters], -0.3, 0.3, 7);
  const movingVariance = u([c.filters], 0.5, 2, 8);

  const fused = new ConvBatchNorm({
    filters: c.filters,
    kernelSize: c.kernel,
    strides: c.stride,
    activation: c.relu ? 'relu' : 'linear',
    residual: c.residual,
    momentum,
    epsilon,
  });
  const conv = tf.layers.conv2d({ filters: c.filters, kernelSize: c.kernel, strides: c.stride, padding: 'same', useBias: false });
  const bn = tf.layers.batchNormalization({ axis: -1, momentum, epsilon });
  const add = tf.layers.add({});
  const relu = tf.layers.reLU({});
  const fusedOut = () => fused.apply(c.residual ? [x, shortcut] : x, { training: c.training }) as tf.Tensor;
  const plainOut = () => {
    let y = bn.apply(conv.apply(x), { training: c.training }) as tf.Tensor;
    if (c.residual) y = add.apply([y, shortcut]) as tf.Tensor;
    return c.relu ? (relu.apply(y) as tf.Tensor) : y;
  };
  // Build both (a call in inference mode changes nothing), then give them the same weights.
  tf.tidy(() => {
    fusedOut();
    plainOut();
  });
  fused.setWeights([kernel, gamma, beta, movingMean, movingVariance]);
  conv.setWeights([kernel]);
  bn.setWeights([gamma, beta, movingMean, movingVariance]);

  const run = (out: () => tf.Tensor, vars: tf.Variable[]) => {
    const y = tf.tidy(out);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(out(), probe)) as tf.Scalar, vars);
    value.dispose();
    return { y, grads: vars.map((v) => grads[v.name]) };
  };
  const weightsOf = (layers: tf.layers.Layer[]) =>
    layers.flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  const inputs = c.residual ? [x, shortcut] : [x];
  // Each side runs its forward twice (y, then under the tape): the moving statistics move twice.
  const f = run(fusedOut, [...inputs, ...weightsOf([fused])]);
  const p = run(plainOut, [...inputs, ...weightsOf([conv, bn])]);
  const what = describeCase(c);
  expectNear(f.y, p.y, 2e-5, `${what}: y`);
  const names = [...inputs.map((_, i) => (i === 0 ? 'dx' : 'dshortcut')), 'dkernel', 'dgamma', 'dbeta'];
  names.forEach((name, i) => expectNear(f.grads[i], p.grads[i], 2e-4, `${what}: ${name}`));
  const [, , , fusedMean, fusedVariance] = fused.getWeights();
  const [, , plainMean, plainVariance] = bn.getWeights();
  expectNear(fusedMean, plainMean, 1e-5, `${what}: moving mean`);
  expectNear(fusedVariance, plainVariance, 1e-5, `${what}: moving variance`);
  tf.dispose([f.y, p.y, ...f.grads, ...p.grads, x, shortcut, probe, kernel, gamma, beta, movingMean, movingVariance]);
  for (const layer of [fused, conv, bn]) layer.dispose();
}
