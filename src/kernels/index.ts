/**
 * Native kernels for tfjs's pure-JavaScript `cpu` backend. `useNativeKernels()` registers them
 * in place of the JS kernels of the same name (keeping the originals), `restoreKernels()` puts
 * the originals back. Each native kernel falls back to the original for inputs it does not
 * cover (NCHW, non-float32, exotic broadcasts), so results never depend on coverage.
 */
import * as tf from '@tensorflow/tfjs';
import { loadNative, nativeLoadError } from '../native';
import * as validate from '../validate';
import type { CpuBackend, KernelFactory } from './cpu_backend';
import { conv2DBackpropFilterKernel, conv2DBackpropInputKernel, conv2DKernel, fusedConv2DKernel } from './conv';
import { ELEMENTWISE_KERNELS } from './elementwise';
import { batchMatMulKernel, fusedMatMulKernel } from './matmul';
import { type OutputPoolStats, outputPool } from './output_pool';
import { POOL_KERNELS } from './pool';


/** Every kernel this module can replace, by tfjs kernel name. */
const FACTORIES: Record<string, KernelFactory> = {
  Conv2D: conv2DKernel,
  FusedConv2D: fusedConv2DKernel,
  Conv2DBackpropInput: conv2DBackpropInputKernel,
  Conv2DBackpropFilter: conv2DBackpropFilterKernel,
  BatchMatMul: batchMatMulKernel,
  _FusedMatMul: fusedMatMulKernel,
  ...ELEMENTWISE_KERNELS,
  ...POOL_KERNELS,
};

/** Names of the tfjs kernels that have a native implementation. */
export const NATIVE_KERNEL_NAMES: readonly string[] = Object.freeze(Object.keys(FACTORIES));

/** Original JS kernel configs of the kernels currently replaced. */
const originals = new Map<string, tf.KernelConfig>();

/** Options of {@link useNativeKernels}. */
export interface UseNativeKernelsOptions {
  /** Replace only these kernels (names from {@link NATIVE_KERNEL_NAMES}); default all. */
  kernels?: readonly string[];
  /**
   * Reuse the arrays of disposed native outputs (default true): saves the page faults of fresh
   * large allocations. Arrays read out with dataSync()/data() or aliased are never reused.
   */
  recycleOutputs?: boolean;
  /** Most bytes of disposed output arrays kept for reuse (default 1 GiB); the oldest go first. */
  outputPoolBytes?: number;
}

/**
 * Registers the native kernels into tfjs's `cpu` backend. Idempotent. Returns the names of the
 * kernels that are native after the call; `[]` when the addon is not available (see
 * {@link nativeKernelStatus} for why), in which case nothing changes.
 */
export function useNativeKernels(options?: UseNativeKernelsOptions): string[] {
  const opts = validate.options('options', options, ['kernels', 'recycleOutputs', 'outputPoolBytes'] as const);
  const recycle = opts.recycleOutputs === undefined ? true : validate.boolean('options.recycleOutputs', opts.recycleOutputs);
  if (opts.outputPoolBytes !== undefined) {
    outputPool.setCapacity(validate.integer('options.outputPoolBytes', opts.outputPoolBytes, 0, Number.MAX_SAFE_INTEGER));
  }
  let wanted = NATIVE_KERNEL_NAMES;
  if (opts.kernels !== undefined) {
    if (!Array.isArray(opts.kernels)) validate.fail('options.kernels', 'an array of kernel names', opts.kernels);
    wanted = (opts.kernels as unknown[]).map((k, i) => validate.oneOf(`options.kernels[${i}]`, k, NATIVE_KERNEL_NAMES));
  }
  const addon = loadNative();
  if (!addon || typeof addon.conv2dForward !== 'function') return [];
  for (const name of wanted) {
    if (originals.has(name)) continue;
    const original = tf.getKernel(name, 'cpu');
    if (!original) continue;  // a tfjs build without this kernel: nothing to replace
    const kernelFunc = FACTORIES[name](addon, original);
    tf.unregisterKernel(name, 'cpu');
    tf.registerKernel({ ...original, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
    originals.set(name, original);
  }
  const cpu = tf.findBackend('cpu') as unknown as CpuBackend | null;
  if (recycle && cpu && originals.size > 0) outputPool.attach(cpu);
  else outputPool.detach();
  return [...originals.keys()];
}

/**
 * Puts the original JS kernels back. Idempotent. Returns the names of the kernels it restored
 * (`[]` when none were replaced).
 */
export function restoreKernels(): string[] {
  const restored: string[] = [];
  for (const [name, original] of originals) {
    if (tf.getKernel(name, 'cpu')) tf.unregisterKernel(name, 'cpu');
    tf.registerKernel(original);
    restored.push(name);
  }
  originals.clear();
  outputPool.detach();
  return restored;
}

/**
 * Frees what the native kernels keep between calls to run faster: the pooled output arrays and
 * the convolutions' per-thread scratch buffers. Call it between training phases if memory
 * matters; the kernels stay registered and grow the buffers again when next used.
 */
export function releaseNativeKernelMemory(): void {
  outputPool.releaseFree();
  const addon = loadNative();
  if (addon && typeof addon.releaseNnScratch === 'function') addon.releaseNnScratch();
}

/** Counters of the recycling of native output arrays (see {@link UseNativeKernelsOptions.recycleOutputs}). */
export function nativeOutputPoolStats(): OutputPoolStats {
  return outputPool.snapshot();
}

/** Which kernels are native now, and why none can be when the addon is missing. */
export interface NativeKernelStatus {
  /** Whether the addon with the kernel entry points is loaded. */
  available: boolean;
  /** Kernels currently replaced by native ones. */
  active: string[];
  /** Why the addon is unavailable ('' when available). */
  reason: string;
}

/** Reports whether native kernels can be used and which ones are registered. */
export function nativeKernelStatus(): NativeKernelStatus {
  const addon = loadNative();
  const available = !!addon && typeof addon.conv2dForward === 'function';
  return {
    available,
    active: [...originals.keys()],
    reason: available ? '' : addon ? 'the loaded addon predates the native kernels; rebuild it' : nativeLoadError(),
  };
}
