/**
 * The one options type of the loss, shared by the typed-array API (`supcon.forwardBackward`),
 * the tfjs op (`supConLoss`), the Keras-style loss (`supConLossFn`) and the pure-tfjs reference,
 * and the one place its rules are checked: options, the problem's geometry, and the ranges that
 * keep every float32 quantity finite (docs/loss.md, "Valid input"). The native core checks the
 * same rules again for its C++ callers (native/core/loss.cpp); every path refuses the same inputs.
 */
import * as v from '../validate';
import { InvalidArgumentError } from '../errors';
import type { NativeLossArgs } from '../native';

/** The names of each option's values. The addon reads options by these names (native/napi). */
export const SUPCON_VARIANTS = ['out', 'in'] as const;
export const CONTRAST_MODES = ['all', 'one'] as const;
export const REDUCTIONS = ['mean', 'sum', 'none'] as const;
export const LOSS_DEVICES = ['auto', 'cpu', 'cuda'] as const;
export const LOSS_PRECISIONS = ['fp32', 'tf32', 'bf16'] as const;

export type SupConVariant = (typeof SUPCON_VARIANTS)[number];
export type ContrastMode = (typeof CONTRAST_MODES)[number];
export type Reduction = (typeof REDUCTIONS)[number];
export type LossDevice = (typeof LOSS_DEVICES)[number];
export type LossPrecision = (typeof LOSS_PRECISIONS)[number];

/** Options of the SupCon loss. Every field is optional; defaults follow the paper. */
export interface SupConOptions {
  /**
   * Softmax temperature tau > 0. Default 0.1 (the paper's best for SupCon). Its float32 value
   * and reciprocal must be finite and nonzero (about 2.9e-39 <= tau <= 3.4e38).
   */
  temperature?: number;
  /**
   * The loss is multiplied by temperature / baseTemperature (in float32, finite and nonzero).
   * Default: temperature (factor 1).
   */
  baseTemperature?: number;
  /** 'out' (L_out, default: summation outside the log) or 'in' (L_in). */
  variant?: SupConVariant;
  /** 'all' (every row is an anchor, default) or 'one' (rank-3 features: view 0 rows only). */
  contrastMode?: ContrastMode;
  /** L2-normalize each row inside the op, x / max(||x||, 1e-12) (the gradient goes through it). Default false. */
  normalize?: boolean;
  /** 'mean' over anchors with positives (default), 'sum', or 'none' (per-anchor losses). */
  reduction?: Reduction;
  /** Where the native kernel runs: 'auto' (default: CUDA for large problems when present), 'cpu', 'cuda'. */
  device?: LossDevice;
  /** CUDA only: 'fp32' (default), or tensor-core 'tf32' / 'bf16' products with fp32 accumulation. */
  precision?: LossPrecision;
}

export type ResolvedSupConOptions = Required<SupConOptions>;

export const SUPCON_OPTION_KEYS = [
  'temperature',
  'baseTemperature',
  'variant',
  'contrastMode',
  'normalize',
  'reduction',
  'device',
  'precision',
] as const;

/**
 * Validates options (unknown keys are errors) and fills in defaults.
 * @throws InvalidArgumentError naming `${argument}.<option>`.
 */
export function resolveOptions(
  options: unknown,
  argument = 'options',
  extraKeys: readonly string[] = [],
): ResolvedSupConOptions {
  const o = v.options(argument, options, [...SUPCON_OPTION_KEYS, ...extraKeys]);
  const temperature =
    o.temperature === undefined ? 0.1 : v.positiveFloat32(`${argument}.temperature`, o.temperature, { reciprocal: true });
  const baseTemperature =
    o.baseTemperature === undefined ? temperature : v.positiveFloat32(`${argument}.baseTemperature`, o.baseTemperature);
  const scale = Math.fround(Math.fround(temperature) / Math.fround(baseTemperature));
  if (!(scale > 0) || !Number.isFinite(scale)) {
    throw new InvalidArgumentError(
      `${argument}.baseTemperature`,
      'a positive number with temperature / baseTemperature finite and nonzero in float32',
      `${baseTemperature} (temperature / baseTemperature in float32: ${scale})`,
    );
  }
  return {
    temperature,
    baseTemperature,
    variant: o.variant === undefined ? 'out' : v.oneOf(`${argument}.variant`, o.variant, SUPCON_VARIANTS),
    contrastMode: o.contrastMode === undefined ? 'all' : v.oneOf(`${argument}.contrastMode`, o.contrastMode, CONTRAST_MODES),
    normalize: o.normalize === undefined ? false : v.boolean(`${argument}.normalize`, o.normalize),
    reduction: o.reduction === undefined ? 'mean' : v.oneOf(`${argument}.reduction`, o.reduction, REDUCTIONS),
    device: o.device === undefined ? 'auto' : v.oneOf(`${argument}.device`, o.device, LOSS_DEVICES),
    precision: o.precision === undefined ? 'fp32' : v.oneOf(`${argument}.precision`, o.precision, LOSS_PRECISIONS),
  };
}

/**
 * An extra contrast set: rows contrasted against that are not anchors (a memory queue, or the
 * rows of the other workers of a data-parallel step).
 */
export interface ContrastSet {
  /** [M, D] rows, row-major. */
  features: Float32Array;
  /** [M] class ids; required when the main labels are given, absent for SimCLR. */
  labels?: Int32Array | null;
  /**
   * Also compute the rows' gradient dLoss/dContrastFeatures (`contrastGrad` of the result; the
   * tfjs op's gradient of `contrast.features`). Default false: a memory queue needs none, and it
   * costs a pass of M x anchors similarity tiles.
   */
  gradient?: boolean;
}

/** Input of the typed-array API. */
export interface LossInput extends SupConOptions {
  /** Row-major features of `shape`. */
  features: Float32Array;
  /** [N, D], or [B, V, D] for V views of B samples (view-major anchors, docs/loss.md). */
  shape: readonly number[];
  /** [N] (rank 2) or [B] (rank 3) class ids; absent for the self-supervised case (SimCLR, rank 3). */
  labels?: Int32Array | null;
  contrast?: ContrastSet;
  /** Compute the gradient too (default true). */
  wantGrad?: boolean;
}

const INT32_MAX = 2 ** 31 - 1;
/**
 * Every score, loss and gradient bound must stay below this, FLT_MAX / 1024 (about 3.3e35): the
 * headroom for the float32 sums the kernels form from them (native/core/loss.cpp, kRangeLimit).
 */
const RANGE_LIMIT = 3.4028234663852886e38 / 1024;

/** The problem's geometry after validation. */
export interface LossGeometry {
  batch: number;
  views: number;
  dim: number;
  contrastRows: number;
  anchors: number;
}

/** Argument names for messages: the typed-array API and the tfjs op name things differently. */
export interface ArgumentNames {
  features: string;
  labels: string;
  contrastFeatures: string;
}

/**
 * The structural rules every path shares: `shape` ([N, D] or [B, V, D]) with or without labels
 * and an extra contrast set of `contrastRows` rows. 'one' needs views; the loss needs two rows to
 * contrast; without labels a row's only positives are the other views of its sample, so
 * unlabeled rank-2 features (one view) could never have a positive and are refused.
 */
export function lossGeometry(
  shape: readonly number[],
  labeled: boolean,
  contrastRows: number,
  opts: ResolvedSupConOptions,
  names: ArgumentNames,
): LossGeometry {
  const [batch, views, dim] = shape.length === 2 ? [shape[0], 1, shape[1]] : [shape[0], shape[1], shape[2]];
  const rows = batch * views;
  if ((rows + contrastRows) * dim > INT32_MAX) {
    throw new InvalidArgumentError(names.features, `at most ${INT32_MAX} elements with the contrast set`, `shape [${shape.join(', ')}]`);
  }
  if (opts.contrastMode === 'one' && shape.length !== 3) {
    throw new InvalidArgumentError(
      'options.contrastMode',
      "'all' for rank-2 features ('one' needs views: shape [B, V, D])",
      `'one' with shape [${shape.join(', ')}]`,
    );
  }
  if (rows + contrastRows < 2) {
    throw new InvalidArgumentError(names.features, 'at least 2 rows to contrast', `shape [${shape.join(', ')}]`);
  }
  if (!labeled && views < 2) {
    throw new InvalidArgumentError(
      names.labels,
      'class labels, or features [B, V, D] with V >= 2 views (without labels the only positives of a row are the other views of its sample)',
      `no labels with features of shape [${shape.join(', ')}]`,
    );
  }
  const anchors = opts.contrastMode === 'one' ? batch : rows;
  return { batch, views, dim, contrastRows, anchors };
}

/** What the value scan found: the inputs of the gradient's range rule. */
export interface LossRanges {
  /** Largest squared norm of the rows entering the products (1 with normalize). */
  maxSquaredNorm: number;
  /** Smallest norm of the feature rows (they get the gradient). */
  minFeatureNorm: number;
  /** Smallest norm of the extra contrast rows (Infinity without any). */
  minContrastNorm: number;
}

/**
 * The one pass over the values: finite features (and contrast rows), whose similarity scores
 * and loss stay inside float32's range (docs/loss.md, "Valid input").
 */
export function checkLossValues(
  features: ArrayLike<number>,
  contrast: ArrayLike<number> | null,
  geometry: LossGeometry,
  opts: ResolvedSupConOptions,
  names: ArgumentNames,
): LossRanges {
  const f = v.finiteRows(names.features, features, geometry.dim);
  const c = contrast ? v.finiteRows(names.contrastFeatures, contrast, geometry.dim) : { maxSquared: 0, minSquared: Infinity };
  const rawMax = Math.max(f.maxSquared, c.maxSquared);
  const maxSquaredNorm = opts.normalize ? 1 : rawMax;
  const invT = Math.fround(1 / Math.fround(opts.temperature));
  const scoreBound = maxSquaredNorm * Math.max(1, invT);
  if (!(scoreBound <= RANGE_LIMIT)) {
    throw new InvalidArgumentError(
      names.features,
      `rows whose similarity scores stay inside float32's range (max ||z||^2 * max(1, 1/temperature) <= ${RANGE_LIMIT.toPrecision(6)}; normalize the rows or scale them down)`,
      `rows of norm up to ${Math.sqrt(rawMax).toPrecision(6)} with temperature ${opts.temperature} (bound ${scoreBound.toPrecision(6)})`,
    );
  }
  const scale = Math.fround(Math.fround(opts.temperature) / Math.fround(opts.baseTemperature));
  const rows = geometry.batch * geometry.views + geometry.contrastRows;
  const perAnchor = scale * (2 * maxSquaredNorm * invT + Math.log(rows));
  const lossBound = perAnchor * (opts.reduction === 'mean' ? 1 : geometry.anchors);
  if (!(lossBound <= RANGE_LIMIT)) {
    throw new InvalidArgumentError(
      names.features,
      `rows whose loss float32 can hold (temperature/baseTemperature * (2 max|s| + ln C), times the anchors unless reduction is mean, <= ${RANGE_LIMIT.toPrecision(6)})`,
      `a bound of ${lossBound.toPrecision(6)}`,
    );
  }
  return { maxSquaredNorm, minFeatureNorm: Math.sqrt(f.minSquared), minContrastNorm: Math.sqrt(c.minSquared) };
}

/**
 * The gradient's range rule, for an upstream gradient `upstream` (1 value, or one per anchor for
 * reduction 'none'): finite, and 4 W max(1, 1/tau) max||z|| / max(min ||x||, 1e-12 with normalize)
 * <= the limit, W the total anchor weight; the minimum is over the extra contrast rows too when
 * their gradient is computed (`contrastGradient`).
 */
export function checkGradientRange(
  ranges: LossRanges,
  geometry: LossGeometry,
  opts: ResolvedSupConOptions,
  upstream: ArrayLike<number>,
  names: ArgumentNames & { upstream: string },
  contrastGradient = false,
): void {
  let mass = 0;
  for (let i = 0; i < upstream.length; i++) {
    if (!Number.isFinite(upstream[i])) throw new InvalidArgumentError(names.upstream, 'finite values', `${upstream[i]} at index ${i}`);
    mass += Math.abs(upstream[i]);
  }
  const invT = Math.fround(1 / Math.fround(opts.temperature));
  const scale = Math.fround(Math.fround(opts.temperature) / Math.fround(opts.baseTemperature));
  const weight = scale * mass * (opts.reduction === 'sum' ? geometry.anchors : 1);
  const minNorm = contrastGradient ? Math.min(ranges.minFeatureNorm, ranges.minContrastNorm) : ranges.minFeatureNorm;
  const through = opts.normalize ? 1 / Math.max(minNorm, 1e-12) : 1;
  const bound = 4 * weight * Math.max(1, invT) * Math.sqrt(ranges.maxSquaredNorm) * through;
  if (!(bound <= RANGE_LIMIT)) {
    throw new InvalidArgumentError(
      names.features,
      `a problem whose gradient float32 can hold (4 W max(1, 1/temperature) max||z|| / max(min ||x||, 1e-12 if normalized) <= ${RANGE_LIMIT.toPrecision(6)})`,
      `a bound of ${bound.toPrecision(6)}`,
    );
  }
}

/** The upstream gradient of a loss that is the result itself: 1, or one 1 per anchor ('none'). */
export function unitUpstream(geometry: LossGeometry, opts: ResolvedSupConOptions): Float32Array {
  return new Float32Array(opts.reduction === 'none' ? geometry.anchors : 1).fill(1);
}

/** The argument names of the typed-array API. */
export const TYPED_ARRAY_NAMES = {
  features: 'features',
  labels: 'labels',
  contrastFeatures: 'contrast.features',
  upstream: 'upstream',
} as const;

/** A validated problem: the addon's arguments, its geometry and what the value scan found. */
export interface PreparedLoss {
  args: NativeLossArgs;
  geometry: LossGeometry;
  ranges: LossRanges;
}

/**
 * Validates a typed-array problem (once: structure, then one pass over the values) and converts
 * it to the addon's arguments. With `wantGrad`, the gradient's range rule is checked for a unit
 * upstream gradient (the tfjs op checks it again with the real one in its backward).
 */
export function prepareLossArgs(input: LossInput, opts: ResolvedSupConOptions, names: ArgumentNames = TYPED_ARRAY_NAMES): PreparedLoss {
  const shape = v.shape('shape', input.shape, [2, 3]);
  const rank = shape.length as 2 | 3;
  const [batch, views, dim] = rank === 2 ? [shape[0], 1, shape[1]] : [shape[0], shape[1], shape[2]];
  if (batch * views * dim > INT32_MAX) {
    throw new InvalidArgumentError(names.features, `at most ${INT32_MAX} elements`, `shape [${shape.join(', ')}]`);
  }
  const features = v.typedArray(names.features, input.features, Float32Array, batch * views * dim);
  const labels =
    input.labels === undefined || input.labels === null ? null : v.typedArray(names.labels, input.labels, Int32Array, batch);

  let contrastFeatures: Float32Array | null = null;
  let contrastLabels: Int32Array | null = null;
  let contrastRows = 0;
  let wantContrastGrad = false;
  if (input.contrast !== undefined) {
    const c = v.options('contrast', input.contrast, ['features', 'labels', 'gradient']);
    if (c.gradient !== undefined) wantContrastGrad = v.boolean('contrast.gradient', c.gradient);
    contrastFeatures = v.typedArray(names.contrastFeatures, c.features, Float32Array);
    if (contrastFeatures.length === 0 || contrastFeatures.length % dim !== 0) {
      throw new InvalidArgumentError(
        names.contrastFeatures,
        `a non-empty multiple of the feature dimension ${dim} elements`,
        `${contrastFeatures.length} elements`,
      );
    }
    contrastRows = contrastFeatures.length / dim;
    if (labels) {
      if (c.labels === undefined || c.labels === null) {
        throw new InvalidArgumentError('contrast.labels', `Int32Array of length ${contrastRows} (labels were given)`, 'nothing');
      }
      contrastLabels = v.typedArray('contrast.labels', c.labels, Int32Array, contrastRows);
    } else if (c.labels !== undefined && c.labels !== null) {
      throw new InvalidArgumentError('contrast.labels', 'nothing (no labels for the features: SimCLR)', v.describe(c.labels));
    }
  }
  const geometry = lossGeometry(shape, labels !== null, contrastRows, opts, names);
  const wantGrad = input.wantGrad === undefined ? true : v.boolean('wantGrad', input.wantGrad);
  const ranges = checkLossValues(features, contrastFeatures, geometry, opts, names);
  wantContrastGrad = wantContrastGrad && wantGrad;
  if (wantGrad) {
    checkGradientRange(ranges, geometry, opts, unitUpstream(geometry, opts), { ...names, upstream: 'upstream' }, wantContrastGrad);
  }
  const args: NativeLossArgs = {
    features,
    batch,
    views,
    dim,
    labels,
    contrastFeatures,
    contrastLabels,
    contrastRows,
    temperature: opts.temperature,
    baseTemperature: opts.baseTemperature,
    variant: opts.variant,
    contrastMode: opts.contrastMode,
    normalize: opts.normalize,
    reduction: opts.reduction,
    device: opts.device,
    precision: opts.precision,
    wantGrad,
    wantContrastGrad,
  };
  return { args, geometry, ranges };
}
