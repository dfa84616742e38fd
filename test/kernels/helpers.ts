/**
 * Helpers of the native-kernel tests: run the same computation on tfjs's JS kernels and on the
 * native ones, and compare with a tolerance relative to the result's magnitude.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { loadNative } from '../../src/native';
import { restoreKernels, useNativeKernels } from '../../src/kernels';

/** Whether the addon (with the kernel entry points) is built: the suites skip without it. */
export const nativeAvailable = typeof loadNative()?.conv2dForward === 'function';

/** Runs `fn` with the original JS kernels, then with the native ones; returns both results as arrays. */
export function jsAndNative<T extends tf.Tensor | tf.Tensor[]>(fn: () => T): { js: Float32Array[]; native: Float32Array[] } {
  const read = (r: T) => {
    const list = Array.isArray(r) ? r : [r];
    const out = list.map((t) => Float32Array.from(t.dataSync()));
    tf.dispose(list);
    return out;
  };
  restoreKernels();
  const js = read(tf.tidy(fn));
  expect(useNativeKernels().length, 'native kernels registered').toBeGreaterThan(0);
  const native = read(tf.tidy(fn));
  return { js, native };
}

/**
 * Expects |native - js| <= tol * (1 + max|js|) elementwise: float32 sums of K terms differ by
 * ~K * 6e-8 relative to their magnitude between summation orders; a dropped or misplaced term
 * is of the order of one term, far above the tolerances used.
 */
export function expectClose(native: Float32Array, js: Float32Array, tol: number, what: string): void {
  expect(native.length, `${what}: length`).toBe(js.length);
  let scale = 0;
  for (const v of js) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  let at = -1;
  for (let i = 0; i < js.length; ++i) {
    const bothNaN = Number.isNaN(native[i]) && Number.isNaN(js[i]);
    const d = bothNaN ? 0 : Math.abs(native[i] - js[i]);
    if (!(d <= worst)) {
      worst = Number.isNaN(d) ? Infinity : d;  // NaN on one side only
      at = i;
    }
  }
  const bound = tol * (1 + scale);
  if (!(worst <= bound)) {
    expect.fail(`${what}: max |native - js| = ${worst} at ${at} (native ${native[at]}, js ${js[at]}) > ${bound}`);
  }
}

/** Deterministic uniform values in [-1, 1). */
export function uniform(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

/** A small deterministic generator for test parameters. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function pick<T>(r: () => number, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)];
}
