/**
 * Recycling of native output arrays: arrays of disposed outputs are reused, but never one that
 * user code may still see (read out with dataSync/data, aliased by a Slice view, shared by a
 * reshape), and training gives bit-identical results with recycling on and off.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { nativeOutputPoolStats, releaseNativeKernelMemory, restoreKernels, useNativeKernels } from '../../src/kernels';
import { requireNative } from '../../src/native';
import { RESNET8, buildResNet, syntheticBatch, trainStep } from '../../bench/resnet';
import { nativeAvailable, uniform } from './helpers';

const N = 40000;  // above the pooling threshold (16384 floats)

describe.skipIf(!nativeAvailable)('native output recycling', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  beforeEach(() => {
    restoreKernels();
    useNativeKernels();
  });
  afterAll(() => {
    restoreKernels();
  });

  it('reuses the array of a disposed output', () => {
    const x = uniform([N], 1);
    const before = nativeOutputPoolStats();
    tf.relu(x).dispose();
    const y = tf.neg(x);
    const after = nativeOutputPoolStats();
    expect(after.recycled - before.recycled).toBe(1);
    expect(after.reused - before.reused).toBe(1);
    expect(y.dataSync()[5]).toBeCloseTo(-x.dataSync()[5], 7);
    tf.dispose([x, y]);
  });

  it('over capacity, the least recently freed arrays are dropped first', () => {
    releaseNativeKernelMemory();
    useNativeKernels({ outputPoolBytes: (3 * N + 96) * 4 });
    try {
      const x = uniform([N], 11);
      const sizes = [N, N + 16, N + 32, N + 48];
      // Free four arrays of distinct sizes into a pool that holds three.
      const outputs = sizes.map((n) => tf.tidy(() => tf.relu(tf.pad(x, [[0, n - N]]))));
      for (const t of outputs) t.dispose();
      expect(nativeOutputPoolStats().freeBytes).toBe((3 * N + 96) * 4);
      const before = nativeOutputPoolStats();
      // The newest size is still pooled, the oldest (N) is gone.
      tf.tidy(() => void tf.relu(tf.pad(x, [[0, 48]])));
      tf.tidy(() => void tf.relu(tf.pad(x, [[0, 0]])));
      const after = nativeOutputPoolStats();
      expect(after.reused - before.reused).toBe(1);
      expect(after.allocated - before.allocated).toBe(1);
      x.dispose();
    } finally {
      useNativeKernels({ outputPoolBytes: 1024 * 1024 * 1024 });
    }
  });

  it('never reuses an array handed out by dataSync() or data()', async () => {
    const x = uniform([N], 2);
    const a = tf.relu(x);
    const seen = a.dataSync();
    const copy = Float32Array.from(seen);
    a.dispose();
    const b = tf.neg(x);
    const c = tf.relu(x);
    const d = tf.abs(x);
    const viaData = await d.data();
    const dCopy = Float32Array.from(viaData);
    d.dispose();
    const e = tf.square(x);
    expect(seen).toEqual(copy);
    expect(viaData).toEqual(dCopy);
    expect(nativeOutputPoolStats().escaped).toBeGreaterThanOrEqual(2);
    tf.dispose([x, b, c, e]);
  });

  it('never reuses an array a Slice view aliases, nor one a reshape still shares', () => {
    const x = uniform([N], 3);
    const a = tf.relu(x);
    const head = tf.slice(a, 0, 1000);  // tfjs's Slice returns a subarray of a's array
    const r = tf.reshape(tf.neg(x), [200, 200]);  // shares its dataId with the (disposed) neg output
    a.dispose();
    const others = [tf.abs(x), tf.square(x), tf.neg(tf.neg(x))];
    const want = tf.tidy(() => tf.relu(tf.slice(x, 0, 1000)));
    expect(head.dataSync()).toEqual(want.dataSync());
    expect(r.dataSync()[7]).toBeCloseTo(-x.dataSync()[7], 7);
    tf.dispose([x, head, r, want, ...others]);
  });

  it('training is bit-identical with recycling on and off', () => {
    const run = (recycleOutputs: boolean) => {
      restoreKernels();
      useNativeKernels({ recycleOutputs });
      const spec = { ...RESNET8, inputShape: [12, 12, 1] as [number, number, number], seed: 5 };
      const model = buildResNet(spec);
      const { images, oneHot } = syntheticBatch(spec, 16, 3);
      const optimizer = tf.train.sgd(0.1);
      const losses = Array.from({ length: 4 }, () => trainStep(model, optimizer, images, oneHot));
      const weights = model.getWeights().map((w) => Array.from(w.dataSync()));
      tf.dispose([images, oneHot]);
      model.dispose();
      optimizer.dispose();
      return { losses, weights };
    };
    const before = nativeOutputPoolStats();
    const on = run(true);
    expect(nativeOutputPoolStats().reused).toBeGreaterThan(before.reused);
    const off = run(false);
    expect(off.losses).toEqual(on.losses);
    expect(off.weights).toEqual(on.weights);
  });

  it('respects outputPoolBytes, and releaseNativeKernelMemory() frees the pool and native scratch', () => {
    const x = uniform([N], 5);
    useNativeKernels({ outputPoolBytes: N * 4 });  // room for exactly one array
    const outs = [tf.relu(x), tf.neg(x), tf.abs(x)];
    tf.dispose(outs);
    expect(nativeOutputPoolStats().freeBytes).toBe(N * 4);
    const w = uniform([3, 3, 8, 8], 7) as tf.Tensor4D;
    // An input gradient (GEMM + col2im) leaves per-thread scratch buffers behind.
    const conv = tf.grad((v: tf.Tensor) => tf.sum(tf.conv2d(v as tf.Tensor4D, w, 1, 'same')))(uniform([2, 16, 16, 8], 6));
    const addon = requireNative();
    const before = addon.memoryStats().currentBytes;
    releaseNativeKernelMemory();
    expect(nativeOutputPoolStats().freeBytes).toBe(0);
    expect(addon.memoryStats().currentBytes).toBeLessThan(before);
    expect(() => useNativeKernels({ outputPoolBytes: -1 })).toThrow(/options\.outputPoolBytes/);
    useNativeKernels({ outputPoolBytes: 256 * 1024 * 1024 });
    tf.dispose([x, w, conv]);
  });

  it('stops recycling after restoreKernels()', () => {
    const x = uniform([N], 4);
    const backend = tf.findBackend('cpu') as unknown as object;
    expect(Object.prototype.hasOwnProperty.call(backend, 'disposeData')).toBe(true);  // hooked
    restoreKernels();
    for (const name of ['write', 'move', 'readSync', 'disposeData']) {
      expect(Object.prototype.hasOwnProperty.call(backend, name), name).toBe(false);  // the class methods again
    }
    const before = nativeOutputPoolStats();
    tf.relu(x).dispose();
    tf.neg(x).dispose();
    expect(nativeOutputPoolStats().recycled).toBe(before.recycled);
    x.dispose();
  });
});
