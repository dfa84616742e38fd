/**
 * The one loader of the native addon. It looks for the build output (or a prebuilt binary),
 * loads it once, and explains in one line what to run when none is found.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NativeError } from './errors';
import { packageRoot } from './paths';

/** Arguments of the addon's loss calls (already validated by src/loss/options.ts). */
export interface NativeLossArgs {
  features: Float32Array;
  batch: number;
  views: number;
  dim: number;
  labels: Int32Array | null;
  contrastFeatures: Float32Array | null;
  contrastLabels: Int32Array | null;
  contrastRows: number;
  temperature: number;
  baseTemperature: number;
  variant: 0 | 1;
  contrastMode: 0 | 1;
  normalize: boolean;
  reduction: 0 | 1 | 2;
  device: 0 | 1 | 2;
  precision: 0 | 1 | 2;
  cudaDevice: number;
  wantGrad: boolean;
}

export interface NativeForwardResult {
  loss: number;
  validAnchors: number;
  workspaceBytes: number;
  perAnchor: Float32Array;
}

/** What the build and the machine offer. */
export interface NativeInfo {
  version: string;
  cpu: { threads: number; simd: 'avx512' | 'avx2' | 'generic' | string };
  cuda: {
    compiled: boolean;
    devices: Array<{
      index: number;
      name: string;
      computeCapability: string;
      totalMemoryBytes: number;
      multiprocessors: number;
    }>;
    /** Why CUDA is unavailable (not compiled, no driver, no device), when it is. */
    reason?: string;
    runtimeVersion?: string;
    /** Rows from which device 'auto' picks CUDA. */
    autoMinRows: number;
  };
}

/** The addon's raw surface. Everything here is called through the typed wrappers. */
export interface NativeAddon {
  info(): NativeInfo;
  setNumThreads(n: number): void;
  memoryStats(): { currentBytes: number; peakBytes: number };
  lossForward(args: NativeLossArgs): NativeForwardResult & { stats: Float32Array };
  lossBackward(args: NativeLossArgs, stats: Float32Array, upstream: Float32Array): Float32Array;
  lossForwardBackward(args: NativeLossArgs): NativeForwardResult & { grad: Float32Array | null };
  lossForwardBackwardAsync(args: NativeLossArgs): Promise<NativeForwardResult & { grad: Float32Array | null }>;
  [kernel: string]: unknown;
}

let addon: NativeAddon | null | undefined;
let loadFailure = '';

/** Candidate paths, most specific first. */
function candidates(): string[] {
  const root = packageRoot();
  const list: string[] = [];
  if (process.env.SUPCON_NATIVE_PATH) list.push(process.env.SUPCON_NATIVE_PATH);
  list.push(
    join(root, 'build', 'Release', 'supcon_native.node'),
    join(root, 'build', 'Debug', 'supcon_native.node'),
    join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'supcon_native.node'),
  );
  return list;
}

/** The addon, or null when it is not built or cannot load (see {@link nativeLoadError}). */
export function loadNative(): NativeAddon | null {
  if (addon !== undefined) return addon;
  if (process.env.SUPCON_DISABLE_NATIVE === '1') {
    loadFailure = 'SUPCON_DISABLE_NATIVE=1 is set';
    return (addon = null);
  }
  const errors: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) continue;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return (addon = require(path) as NativeAddon);
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message}`);
    }
  }
  loadFailure = errors.length
    ? `the native addon failed to load (${errors.join('; ')}); rebuild it with \`npm rebuild supcon-native\``
    : 'the native addon is not built; run `npm rebuild supcon-native` (needs CMake or node-gyp with a C++17 compiler)';
  return (addon = null);
}

/** One line saying why the addon is unavailable ('' when it loaded). */
export function nativeLoadError(): string {
  loadNative();
  return loadFailure;
}

/** The addon, or a {@link NativeError} saying what to run. */
export function requireNative(): NativeAddon {
  const a = loadNative();
  if (!a) throw new NativeError(`supcon-native: ${loadFailure}`, 'ERR_SUPCON_NO_ADDON');
  return a;
}

/** Runs a native call, turning the addon's coded errors into this package's error classes. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw translateNativeError(e);
  }
}

export function translateNativeError(e: unknown): unknown {
  const err = e as Error & { code?: string };
  if (err && typeof err.code === 'string' && err.code.startsWith('ERR_SUPCON')) {
    return new NativeError(err.message, err.code);
  }
  return e;
}
