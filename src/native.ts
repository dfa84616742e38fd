/**
 * The one loader of the native addon. It looks for the build output (or a prebuilt binary),
 * loads it once, and explains in one line what to run when none is found.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, MpiError, NativeError } from './errors';
import type { ContrastMode, Denominator, LossDevice, LossPrecision, PositiveWeighting, Reduction, SupConVariant } from './loss/options';
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
  /** [batch, numLabels] multi-hot bytes (numLabels 0 without them). */
  labelSets: Uint8Array | null;
  numLabels: number;
  contrastFeatures: Float32Array | null;
  contrastLabels: Int32Array | null;
  contrastLabelSets: Uint8Array | null;
  contrastRows: number;
  temperature: number;
  baseTemperature: number;
  variant: SupConVariant;
  contrastMode: ContrastMode;
  normalize: boolean;
  reduction: Reduction;
  denominator: Denominator;
  positiveWeighting: PositiveWeighting;
  /** -1: no cap. */
  positivesCap: number;
  positivesCapSeed: number;
  device: LossDevice;
  precision: LossPrecision;
  wantGrad: boolean;
  /** Also the extra contrast rows' gradient (with wantGrad and contrastRows > 0). Default false. */
  wantContrastGrad?: boolean;
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

/** How a convolution is computed: 0 auto, 1 implicit-im2col GEMM, 2 direct (narrow layers). */
export type NativeConvAlgorithm = 0 | 1 | 2;

export interface NativeConv2DForwardArgs extends NativeConv2DGeometry, NativeEpilogueArgs {
  x: Float32Array;
  filter: Float32Array;
  y: Float32Array;
  /** Default 0 (auto). */
  algorithm?: NativeConvAlgorithm;
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
  /** Default 0 (auto). */
  algorithm?: NativeConvAlgorithm;
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

/** Fused convolution + batch norm forward; see native/include/supcon/nn.h. */
export interface NativeConvBatchNormForwardArgs extends NativeConv2DGeometry {
  x: Float32Array;
  filter: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
  movingMean: Float32Array;
  movingVariance: Float32Array;
  residual: Float32Array | null;
  relu: boolean;
  training: boolean;
  epsilon: number;
  momentum: number;
  y: Float32Array;
  /** The conv output, kept for the backward; null when no gradient will be taken. */
  z: Float32Array | null;
  mean: Float32Array | null;
  variance: Float32Array | null;
  newMovingMean: Float32Array | null;
  newMovingVariance: Float32Array | null;
  /** Out (a Float64Array of 1): the values per channel the statistics were taken over. */
  count?: Float64Array | null;
  /** Training: the whole distributed batch's moments through the addon's MPI (initialized). */
  syncBatchNorm?: boolean;
}

/** Fused convolution + batch norm backward; see native/include/supcon/nn.h. */
export interface NativeConvBatchNormBackwardArgs extends NativeConv2DGeometry {
  /** Needed only for dx / dfilter. */
  x: Float32Array | null;
  filter: Float32Array | null;
  gamma: Float32Array;
  z: Float32Array;
  y: Float32Array | null;
  mean: Float32Array;
  variance: Float32Array;
  dy: Float32Array;
  relu: boolean;
  training: boolean;
  epsilon: number;
  dx: Float32Array | null;
  dfilter: Float32Array | null;
  dgamma: Float32Array;
  dbeta: Float32Array;
  dresidual: Float32Array | null;
  /** Receives the gradient at the convolution's output when given. */
  dz: Float32Array | null;
  /** The forward's count (0 or absent: this process's pixels). */
  count?: number;
  /** Training: the per-channel gradient sums summed over the processes through MPI. */
  syncBatchNorm?: boolean;
}

/** One variable of a native optimizer step; see native/include/supcon/nn.h. */
export interface NativeOptimizerVariable {
  value: Float32Array;
  grad: Float32Array;
  /** The momentum buffer; null on the first step (zeros). */
  buffer: Float32Array | null;
  newValue: Float32Array;
  newBuffer: Float32Array;
  /** Apply weight decay (and, for LARS, the trust ratio). */
  decay: boolean;
}

/** A momentum-SGD or LARS step over many variables; see native/include/supcon/nn.h. */
export interface NativeOptimizerArgs {
  kind: 'sgd' | 'lars';
  learningRate: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
  trustCoefficient: number;
  variables: NativeOptimizerVariable[];
}

/** Typed arrays the MPI collectives take. */
export type NativeMpiArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** The addon's report on MPI. */
export interface NativeMpiInfo {
  compiled: boolean;
  /** Why there is no MPI (not compiled), when there is none. */
  reason?: string;
  /** MPI_Get_library_version's first line. */
  version?: string;
  initialized: boolean;
  finalized: boolean;
  rank: number;
  size: number;
}

/** The addon's raw surface. Everything here is called through the typed wrappers. */
export interface NativeAddon {
  info(): NativeInfo;
  setNumThreads(n: number): void;
  memoryStats(): { currentBytes: number };
  /** The option names the core accepts, per option (native/include/supcon/loss.h). */
  lossOptionNames(): Record<
    'variant' | 'contrastMode' | 'reduction' | 'denominator' | 'positiveWeighting' | 'device' | 'precision',
    string[]
  >;
  lossForward(args: NativeLossArgs): NativeForwardResult & { stats: Float32Array };
  /** The features' gradient; `contrastGrad` ([contrastRows * dim]), when given, receives the extra rows'. */
  lossBackward(args: NativeLossArgs, stats: Float32Array, upstream: Float32Array, contrastGrad?: Float32Array | null): Float32Array;
  lossForwardBackward(args: NativeLossArgs): NativeForwardResult & { grad: Float32Array | null; contrastGrad: Float32Array | null };
  lossForwardBackwardAsync(
    args: NativeLossArgs,
  ): Promise<NativeForwardResult & { grad: Float32Array | null; contrastGrad: Float32Array | null }>;
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
  convBatchNormForward(args: NativeConvBatchNormForwardArgs): void;
  convBatchNormBackward(args: NativeConvBatchNormBackwardArgs): void;
  optimizerUpdate(args: NativeOptimizerArgs): void;
  /** Frees the convolutions' per-thread scratch buffers (kept between calls to avoid page faults). */
  releaseNnScratch(): void;
  /** MPI in this build (native/napi/mpi_binding.cpp); the collectives exist only when compiled. */
  mpiInfo(): NativeMpiInfo;
  mpiInit?(): void;
  mpiAllreduceSum?(data: Float32Array | Float64Array | Int32Array): void;
  mpiAllgather?<T extends NativeMpiArray>(send: T, recv: T): void;
  mpiAllgatherv?<T extends NativeMpiArray>(send: T, recv: T, counts: number[]): void;
  mpiReduceScatterSum?<T extends Float32Array | Float64Array | Int32Array>(send: T, recv: T, counts: number[]): void;
  mpiBroadcast?(data: NativeMpiArray, root: number): void;
  mpiBarrier?(): void;
  mpiAbort?(code: number): void;
  mpiFinalize?(): void;
  [kernel: string]: unknown;
}

let addon: NativeAddon | null | undefined;
let loadFailure = '';

/** node-gyp-build's helpers for choosing among prebuilt binaries (see its README). */
interface NodeGypBuild {
  parseTuple(name: string): { name: string; platforms: string; architectures: string[] } | undefined;
  matchTuple(platform: string, arch: string): (tuple: unknown) => boolean;
  compareTuples(a: unknown, b: unknown): number;
  parseTags(file: string): { file: string } | undefined;
  matchTags(runtime: string, abi: string): (tags: unknown) => boolean;
  compareTags(runtime: string): (a: unknown, b: unknown) => number;
}

/**
 * The prebuilt binary for this platform in `prebuilds/<platform>-<arch>/`, chosen by
 * node-gyp-build's own rules (platform, arch, libc, N-API tag), or null.
 */
export function prebuiltAddonPath(root = packageRoot()): string | null {
  const dir = join(root, 'prebuilds');
  if (!existsSync(dir)) return null;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const g = require('node-gyp-build') as NodeGypBuild;
  const tuple = readdirSync(dir)
    .map((n) => g.parseTuple(n))
    .filter((t) => t !== undefined && g.matchTuple(process.platform, process.arch)(t))
    .sort(g.compareTuples)[0];
  if (!tuple) return null;
  const runtime = 'node';
  const winner = readdirSync(join(dir, tuple.name))
    .map((f) => g.parseTags(f))
    .filter((t) => t !== undefined && g.matchTags(runtime, process.versions.modules)(t))
    .sort(g.compareTags(runtime))[0];
  return winner ? join(dir, tuple.name, winner.file) : null;
}

/**
 * Candidate paths, most specific first: SUPCON_NATIVE_PATH, a local build (made on purpose:
 * from a source checkout, or `npm install --build-from-source`), then the prebuilt binary.
 */
function candidates(): string[] {
  const root = packageRoot();
  const list: string[] = [];
  if (process.env.SUPCON_NATIVE_PATH) list.push(process.env.SUPCON_NATIVE_PATH);
  list.push(join(root, 'build', 'Release', 'supcon_native.node'), join(root, 'build', 'Debug', 'supcon_native.node'));
  const prebuilt = prebuiltAddonPath(root);
  if (prebuilt) list.push(prebuilt);
  return list;
}

let loadedFrom: string | null = null;

/** The file the addon was loaded from, or null when it is not loaded. */
export function nativeAddonPath(): string | null {
  loadNative();
  return loadedFrom;
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
      addon = require(path) as NativeAddon;
      loadedFrom = path;
      return addon;
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message}`);
    }
  }
  loadFailure = errors.length
    ? `the native addon failed to load (${errors.join('; ')}); rebuild it with \`npm rebuild supcon-native\``
    : `no prebuilt binary for ${process.platform}-${process.arch} and no local build; run \`npm rebuild supcon-native --build-from-source\` (needs CMake or node-gyp with a C++17 compiler)`;
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
    if (err.code === 'ERR_SUPCON_MPI') return new MpiError(err.message, 'ERR_SUPCON_MPI');
    return new NativeError(err.message, err.code);
  }
  return e;
}
