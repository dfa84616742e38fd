/**
 * What every native kernel shares: the little of tfjs's `cpu` backend (MathBackendCPU) they
 * touch, typed structurally so the package needs no import of @tensorflow/tfjs-backend-cpu
 * (zero-copy reads of a tensor's storage, outputs made by the backend itself so tfjs owns and
 * frees them), the kernel factory type, and shape helpers.
 */
import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native';

/** What the native kernels use of MathBackendCPU. */
export interface CpuBackend {
  data: { get(dataId: tf.DataId): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
  disposeIntermediateTensorInfo(info: tf.TensorInfo): void;
}

/** The arguments tfjs passes to a kernel function. */
export interface KernelArgs {
  inputs: Record<string, tf.TensorInfo | null | undefined>;
  backend: CpuBackend;
  attrs?: Record<string, unknown>;
}

export type NativeKernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** Makes a native kernel; `original` is tfjs's own kernel, run for inputs the native one does not cover. */
export type KernelFactory = (addon: NativeAddon, original: tf.KernelConfig) => NativeKernelFunc;

/** Runs tfjs's own kernel on the same arguments. */
export function runOriginal(original: tf.KernelConfig, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  return original.kernelFunc(args as never) as tf.TensorInfo | tf.TensorInfo[];
}

/** A rank-4 shape, as tfjs's conv and pool helpers type it. */
export type Rank4 = [number, number, number, number];

/** Whether two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Whether a conv/pool `dataFormat` attribute is channels-last (absent counts as NHWC). */
export function isNhwc(dataFormat: unknown): boolean {
  return dataFormat === undefined || dataFormat === 'NHWC';
}

/**
 * The float32 storage of a tensor on the cpu backend, without copying; null when the tensor is
 * not float32 or not held as a Float32Array (the caller then falls back to the JS kernel).
 */
export function float32Values(backend: CpuBackend, info: tf.TensorInfo | null | undefined): Float32Array | null {
  if (!info || info.dtype !== 'float32') return null;
  const values = backend.data.get(info.dataId)?.values;
  return values instanceof Float32Array ? values : null;
}

/**
 * Whether tfjs's active backend is `cpu`, initializing the best registered backend first if none
 * is active yet (a fresh process: `tf.getBackend()` alone is undefined until some op runs).
 */
export function onCpuBackend(): boolean {
  tf.backend();
  return tf.getBackend() === 'cpu';
}

/** Product of a shape's sizes. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Runs the cpu backend's registered kernel `name` (native or JS, whichever is registered). */
export function runCpuKernel(
  name: string,
  inputs: KernelArgs['inputs'],
  backend: CpuBackend,
  attrs: Record<string, unknown> = {},
): tf.TensorInfo {
  const config = tf.getKernel(name, 'cpu');
  if (!config) throw new Error(`supcon-native: tfjs's cpu backend has no '${name}' kernel`);
  return config.kernelFunc({ inputs, backend, attrs } as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
}
