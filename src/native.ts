/**
 * The one loader of the native addon. It looks for the build output (or a prebuilt binary),
 * loads it once, and explains in one line what to run when none is found.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, NativeError } from './errors';
import type { ContrastMode, LossDevice, LossPrecision, Reduction, SupConVariant } from './loss/options';
import { packageRoot } from './paths';

/**
 * Arguments of the addon's loss calls (already validated by src/loss/options.ts). Options cross
 * by name; the core's names (native/include/supcon/loss.h) are compared with src/loss/options.ts
 * by a test, through `lossOptionNames()`.
 */
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
  variant: SupConVariant;
  contrastMode: ContrastMode;
  normalize: boolean;
  reduction: Reduction;
  device: LossDevice;
  precision: LossPrecision;
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

/** Explicit convolution geometry (NHWC, filter [fH, fW, inC, outC]); see native/include/supcon/nn.h. */
export interface NativeConv2DGeometry {
  batch: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padTop: number;
  padLeft: number;
}

/** Fused output stage: y = act(y + bias). activation: 0 linear, 1 relu, 2 relu6, 3 leakyrelu, 4 elu, 5 sigmoid. */
export interface NativeEpilogueArgs {
  bias: Float32Array | null;
  activation: 0 | 1 | 2 | 3 | 4 | 5;
  leakyReluAlpha: number;
}

// Every nn call writes its output array in full and never reads its old contents.

export interface NativeConv2DForwardArgs extends NativeConv2DGeometry, NativeEpilogueArgs {
  x: Float32Array;
  filter: Float32Array;
  y: Float32Array;
}

export interface NativeConv2DBackpropInputArgs extends NativeConv2DGeometry {
  dy: Float32Array;
  filter: Float32Array;
  dx: Float32Array;
  /** 0 auto, 1 direct (stride 1 only), 2 GEMM + col2im. */
  algorithm: 0 | 1 | 2;
}

export interface NativeConv2DBackpropFilterArgs extends NativeConv2DGeometry {
  x: Float32Array;
  dy: Float32Array;
  dfilter: Float32Array;
}

/** c[i] = epilogue(op(a[i % batchA]) op(b[i % batchB])); batchA and batchB equal or one of them 1. */
export interface NativeBatchMatMulArgs extends NativeEpilogueArgs {
  a: Float32Array;
  b: Float32Array;
  /** [max(batchA, batchB), m, n] */
  c: Float32Array;
  batchA: number;
  batchB: number;
  m: number;
  n: number;
  k: number;
  transposeA: boolean;
  transposeB: boolean;
}

/** out = a (op) b with broadcasting. op: 0 add, 1 sub, 2 mul, 3 div, 4 squared difference, 5 max, 6 min. */
export interface NativeBinaryArgs {
  op: 0 | 1 | 2 | 3 | 4 | 5 | 6;
  a: Float32Array;
  aShape: number[];
  b: Float32Array;
  bShape: number[];
  out: Float32Array;
}

/** out = op(x). op: 0 relu, 1 relu6, 2 step (x > 0 ? 1 : alpha), 3 square, 4 neg, 5 abs, 6 sqrt, 7 rsqrt. */
export interface NativeUnaryArgs {
  op: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;
  x: Float32Array;
  alpha: number;
  out: Float32Array;
}

/** out = scale * sum of x over `axes` (double accumulation); out holds the kept axes in order. */
export interface NativeReduceSumArgs {
  x: Float32Array;
  shape: number[];
  axes: number[];
  scale: number;
  out: Float32Array;
}

export interface NativeTileArgs {
  x: Float32Array;
  shape: number[];
  reps: number[];
  out: Float32Array;
}

/** tfjs's FusedBatchNorm: parameters indexed modulo their length. */
export interface NativeBatchNormArgs {
  x: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
  offset: Float32Array | null;
  scale: Float32Array | null;
  epsilon: number;
  y: Float32Array;
}

/** Explicit pooling geometry (NHWC); see native/include/supcon/nn.h. */
export interface NativePool2DGeometry {
  batch: number;
  inHeight: number;
  inWidth: number;
  channels: number;
  outHeight: number;
  outWidth: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  padTop: number;
  padLeft: number;
}

export interface NativePool2DArgs extends NativePool2DGeometry {
  /** 0 max, 1 average */
  type: 0 | 1;
  x: Float32Array;
  y: Float32Array;
}

export interface NativeMaxPool2DBackwardArgs extends NativePool2DGeometry {
  x: Float32Array;
  dy: Float32Array;
  dx: Float32Array;
}

export interface NativeAvgPool2DBackwardArgs extends NativePool2DGeometry {
  dy: Float32Array;
  dx: Float32Array;
}

/** The addon's raw surface. Everything here is called through the typed wrappers. */
export interface NativeAddon {
  info(): NativeInfo;
  setNumThreads(n: number): void;
  memoryStats(): { currentBytes: number };
  /** The option names the core accepts, per option (native/include/supcon/loss.h). */
  lossOptionNames(): Record<'variant' | 'contrastMode' | 'reduction' | 'device' | 'precision', string[]>;
  lossForward(args: NativeLossArgs): NativeForwardResult & { stats: Float32Array };
  lossBackward(args: NativeLossArgs, stats: Float32Array, upstream: Float32Array): Float32Array;
  lossForwardBackward(args: NativeLossArgs): NativeForwardResult & { grad: Float32Array | null };
  lossForwardBackwardAsync(args: NativeLossArgs): Promise<NativeForwardResult & { grad: Float32Array | null }>;
  conv2dForward(args: NativeConv2DForwardArgs): void;
  conv2dBackpropInput(args: NativeConv2DBackpropInputArgs): void;
  conv2dBackpropFilter(args: NativeConv2DBackpropFilterArgs): void;
  batchMatMul(args: NativeBatchMatMulArgs): void;
  binaryOp(args: NativeBinaryArgs): void;
  unaryOp(args: NativeUnaryArgs): void;
  reduceSum(args: NativeReduceSumArgs): void;
  tile(args: NativeTileArgs): void;
  batchNorm(args: NativeBatchNormArgs): void;
  pool2d(args: NativePool2DArgs): void;
  maxPool2dBackward(args: NativeMaxPool2DBackwardArgs): void;
  avgPool2dBackward(args: NativeAvgPool2DBackwardArgs): void;
  /** Frees the convolutions' per-thread scratch buffers (kept between calls to avoid page faults). */
  releaseNnScratch(): void;
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

/**
 * The addon's coded errors as this package's: a core argument error (it carries argument,
 * expected and received) becomes the same InvalidArgumentError the TypeScript checks raise;
 * anything else coded is a NativeError.
 */
export function translateNativeError(e: unknown): unknown {
  const err = e as Error & { code?: string; argument?: unknown; expected?: unknown; received?: unknown };
  if (err && typeof err.code === 'string' && err.code.startsWith('ERR_SUPCON')) {
    if (
      err.code === 'ERR_SUPCON_INVALID_ARGUMENT' &&
      typeof err.argument === 'string' &&
      typeof err.expected === 'string' &&
      typeof err.received === 'string'
    ) {
      return new InvalidArgumentError(err.argument, err.expected, err.received);
    }
    return new NativeError(err.message, err.code);
  }
  return e;
}
