/**
 * The one options type of the loss, shared by the typed-array API (`supcon.forwardBackward`),
 * the tfjs op (`supConLoss`) and the Keras-style loss (`supConLossFn`), and its validation.
 * Semantics: docs/loss.md.
 */
import * as v from '../validate';
import { InvalidArgumentError } from '../errors';
import type { NativeLossArgs } from '../native';

export type SupConVariant = 'out' | 'in';
export type ContrastMode = 'all' | 'one';
export type Reduction = 'mean' | 'sum' | 'none';
export type LossDevice = 'auto' | 'cpu' | 'cuda';
export type LossPrecision = 'fp32' | 'tf32' | 'bf16';

/** Options of the SupCon loss. Every field is optional; defaults follow the paper. */
export interface SupConOptions {
  /** Softmax temperature tau > 0. Default 0.1 (the paper's best for SupCon). */
  temperature?: number;
  /** The loss is multiplied by temperature / baseTemperature. Default: temperature (factor 1). */
  baseTemperature?: number;
  /** 'out' (L_out, default: summation outside the log) or 'in' (L_in). */
  variant?: SupConVariant;
  /** 'all' (every row is an anchor, default) or 'one' (rank-3 features: view 0 rows only). */
  contrastMode?: ContrastMode;
  /** L2-normalize each row inside the op (the gradient goes through it). Default false. */
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

/** Validates options (unknown keys are errors) and fills in defaults. */
export function resolveOptions(
  options: unknown,
  argument = 'options',
  extraKeys: readonly string[] = [],
): ResolvedSupConOptions {
  const o = v.options(argument, options, [...SUPCON_OPTION_KEYS, ...extraKeys]);
  const temperature = o.temperature === undefined ? 0.1 : v.number(`${argument}.temperature`, o.temperature, { gt: 0 });
  const baseTemperature =
    o.baseTemperature === undefined ? temperature : v.number(`${argument}.baseTemperature`, o.baseTemperature, { gt: 0 });
  return {
    temperature,
    baseTemperature,
    variant: o.variant === undefined ? 'out' : v.oneOf(`${argument}.variant`, o.variant, ['out', 'in'] as const),
    contrastMode:
      o.contrastMode === undefined ? 'all' : v.oneOf(`${argument}.contrastMode`, o.contrastMode, ['all', 'one'] as const),
    normalize: o.normalize === undefined ? false : v.boolean(`${argument}.normalize`, o.normalize),
    reduction:
      o.reduction === undefined ? 'mean' : v.oneOf(`${argument}.reduction`, o.reduction, ['mean', 'sum', 'none'] as const),
    device: o.device === undefined ? 'auto' : v.oneOf(`${argument}.device`, o.device, ['auto', 'cpu', 'cuda'] as const),
    precision:
      o.precision === undefined ? 'fp32' : v.oneOf(`${argument}.precision`, o.precision, ['fp32', 'tf32', 'bf16'] as const),
  };
}

/** An extra contrast set: rows contrasted against that are not anchors and get no gradient. */
export interface ContrastSet {
  /** [M, D] rows, row-major. */
  features: Float32Array;
  /** [M] class ids; required when the main labels are given, absent for SimCLR. */
  labels?: Int32Array | null;
}

/** Input of the typed-array API. */
export interface LossInput extends SupConOptions {
  /** Row-major features of `shape`. */
  features: Float32Array;
  /** [N, D], or [B, V, D] for V views of B samples (view-major anchors, docs/loss.md). */
  shape: readonly number[];
  /** [N] (rank 2) or [B] (rank 3) class ids; absent for the self-supervised case (SimCLR). */
  labels?: Int32Array | null;
  contrast?: ContrastSet;
  /** Compute the gradient too (default true). */
  wantGrad?: boolean;
}

const INT32_MAX = 2 ** 31 - 1;

/** The problem's geometry after validation. */
export interface LossGeometry {
  batch: number;
  views: number;
  dim: number;
  rank: 2 | 3;
  contrastRows: number;
  anchors: number;
}

/**
 * Validates a typed-array problem and converts it to the addon's arguments. `names` lets the
 * tfjs op report its own argument names (e.g. 'features' for a tensor).
 */
export function prepareLossArgs(
  input: LossInput,
  opts: ResolvedSupConOptions,
  scanValues = true,
): { args: NativeLossArgs; geometry: LossGeometry } {
  const shape = v.shape('shape', input.shape, [2, 3]);
  const rank = shape.length as 2 | 3;
  const [batch, views, dim] = rank === 2 ? [shape[0], 1, shape[1]] : [shape[0], shape[1], shape[2]];
  const rows = batch * views;
  if (rows * dim > INT32_MAX) {
    throw new InvalidArgumentError('features', `at most ${INT32_MAX} elements`, `shape [${shape.join(', ')}]`);
  }
  const features = v.typedArray('features', input.features, Float32Array, rows * dim);
  if (opts.contrastMode === 'one' && rank !== 3) {
    throw new InvalidArgumentError(
      'options.contrastMode',
      "'all' for rank-2 features ('one' needs views: shape [B, V, D])",
      `'one' with shape [${shape.join(', ')}]`,
    );
  }
  const labels =
    input.labels === undefined || input.labels === null ? null : v.typedArray('labels', input.labels, Int32Array, batch);

  let contrastFeatures: Float32Array | null = null;
  let contrastLabels: Int32Array | null = null;
  let contrastRows = 0;
  if (input.contrast !== undefined) {
    const c = v.options('contrast', input.contrast, ['features', 'labels']);
    contrastFeatures = v.typedArray('contrast.features', c.features, Float32Array);
    if (contrastFeatures.length === 0 || contrastFeatures.length % dim !== 0) {
      throw new InvalidArgumentError(
        'contrast.features',
        `a non-empty multiple of the feature dimension ${dim} elements`,
        `${contrastFeatures.length} elements`,
      );
    }
    contrastRows = contrastFeatures.length / dim;
    if ((rows + contrastRows) * dim > INT32_MAX) {
      throw new InvalidArgumentError('contrast.features', `(rows + contrast rows) * dim <= ${INT32_MAX}`, `${(rows + contrastRows) * dim}`);
    }
    if (labels) {
      if (c.labels === undefined || c.labels === null) {
        throw new InvalidArgumentError('contrast.labels', `Int32Array of length ${contrastRows} (labels were given)`, 'nothing');
      }
      contrastLabels = v.typedArray('contrast.labels', c.labels, Int32Array, contrastRows);
    } else if (c.labels !== undefined && c.labels !== null) {
      throw new InvalidArgumentError('contrast.labels', 'nothing (no labels for the features: SimCLR)', v.describe(c.labels));
    }
  }
  if (rows + contrastRows < 2) {
    throw new InvalidArgumentError('features', 'at least 2 rows to contrast', `shape [${shape.join(', ')}]`);
  }
  if (scanValues) {
    v.finiteValues('features', features);
    if (contrastFeatures) v.finiteValues('contrast.features', contrastFeatures);
  }
  const wantGrad = input.wantGrad === undefined ? true : v.boolean('wantGrad', input.wantGrad);
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
    variant: opts.variant === 'in' ? 1 : 0,
    contrastMode: opts.contrastMode === 'one' ? 1 : 0,
    normalize: opts.normalize,
    reduction: opts.reduction === 'mean' ? 0 : opts.reduction === 'sum' ? 1 : 2,
    device: opts.device === 'cpu' ? 0 : opts.device === 'cuda' ? 1 : 2,
    precision: opts.precision === 'fp32' ? 0 : opts.precision === 'tf32' ? 1 : 2,
    cudaDevice: 0,
    wantGrad,
  };
  const anchors = opts.contrastMode === 'one' ? batch : rows;
  return { args, geometry: { batch, views, dim, rank, contrastRows, anchors } };
}
