/**
 * The loss on typed arrays, without tfjs: `supcon.forwardBackward` (synchronous) and
 * `supcon.forwardBackwardAsync` (libuv thread pool; it copies its inputs first).
 */
import { callNative, requireNative, translateNativeError, loadNative, nativeLoadError, type NativeInfo } from '../native';
import * as v from '../validate';
import { mpiInfo, type MpiInfo } from '../mpi';
import { prepareLossArgs, resolveOptions, type LossInput, SUPCON_OPTION_KEYS } from './options';

/** Result of a loss call. */
export interface LossResult {
  /** The reduced loss ('none': the sum of perAnchor). */
  loss: number;
  /** Per-anchor losses l_i x temperature/baseTemperature, view-major; 0 for anchors without positives. */
  perAnchor: Float32Array;
  /** dLoss/dFeatures in the features' layout, or null when `wantGrad` is false. */
  grad: Float32Array | null;
  /** dLoss/dContrastFeatures [M * D] when `contrast.gradient` is true (and `wantGrad`), else null. */
  contrastGrad: Float32Array | null;
  /** Anchors that have at least one positive (the divisor of 'mean'). */
  validAnchors: number;
  /**
   * Peak bytes of every buffer the call allocated (host, plus device on CUDA), counted for this
   * call alone; the caller's inputs and the returned arrays are not included.
   */
  workspaceBytes: number;
}

const INPUT_KEYS = ['features', 'shape', 'labels', 'contrast', 'wantGrad', ...SUPCON_OPTION_KEYS] as const;

function prepare(input: LossInput) {
  v.options('input', input, INPUT_KEYS);
  const opts = resolveOptions(input, 'input', ['features', 'shape', 'labels', 'contrast', 'wantGrad']);
  return prepareLossArgs(input, opts);
}

/**
 * Fused SupCon loss (and its gradient) on typed arrays, synchronously (docs/loss.md). The input
 * is checked once here (the rules of src/loss/options.ts), then the core computes.
 * @throws InvalidArgumentError for bad input (named as `input.<option>`, `features`, ...);
 * NativeError when the addon is missing or a native call fails (no CUDA device, out of memory).
 */
export function forwardBackward(input: LossInput): LossResult {
  const { args } = prepare(input);
  const addon = requireNative();
  return callNative(() => addon.lossForwardBackward(args));
}

/** Same as {@link forwardBackward}, computed off the main thread. Inputs are copied first. */
export async function forwardBackwardAsync(input: LossInput): Promise<LossResult> {
  const { args } = prepare(input);
  const addon = requireNative();
  try {
    return await callNative(() => addon.lossForwardBackwardAsync(args));
  } catch (e) {
    throw translateNativeError(e);
  }
}

/**
 * What this build and machine offer: version, CPU threads and SIMD path, CUDA devices, and MPI
 * (whether compiled, why not, the library, and this process's rank and world size: MPI's once
 * initialized, else the launcher's).
 */
export function info(): NativeInfo & { available: boolean; reason?: string; mpi: MpiInfo } {
  const addon = loadNative();
  if (!addon) {
    return {
      available: false,
      reason: nativeLoadError(),
      version: '',
      cpu: { threads: 0, simd: 'none' },
      cuda: { compiled: false, devices: [], reason: 'the native addon is not loaded', autoMinRows: 0 },
      mpi: mpiInfo(),
    };
  }
  return { available: true, ...addon.info(), mpi: mpiInfo() };
}

/** Sets the size of the native thread pool (default: hardware threads or SUPCON_NUM_THREADS). */
export function setNumThreads(threads: number): void {
  v.integer('threads', threads, 1, 256);
  requireNative().setNumThreads(threads);
}

/** True when the native addon is built and loads. */
export function isAvailable(): boolean {
  return loadNative() !== null;
}

/** The typed-array API of the fused loss. */
export const supcon = { forwardBackward, forwardBackwardAsync, info, setNumThreads, isAvailable };
