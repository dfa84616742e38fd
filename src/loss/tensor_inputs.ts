/**
 * Checks the tfjs inputs of the loss (shared by the native op and the pure-tfjs reference) and
 * reads labels once. The geometry rules themselves live in options.ts (lossGeometry), shared
 * with the typed-array API.
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import * as v from '../validate';
import { lossGeometry, type ArgumentNames, type LossGeometry, type ResolvedSupConOptions, type SupConOptions } from './options';

/** Labels as a rank-1 tensor (int32, or float32 holding integers), an Int32Array, or a number array. */
export type LabelsLike = tf.Tensor | Int32Array | readonly number[];

/** Options of the tfjs op: the loss options plus an optional extra contrast set as tensors. */
export interface SupConLossOptions extends SupConOptions {
  /**
   * Rows [M, D] contrasted against but not anchors (a memory queue, other workers' rows), with
   * labels [M] when `labels` are given. They get no gradient unless `gradient` is true: then the
   * op is differentiable in `features` too (dLoss/dContrast, docs/loss.md), at the cost of a
   * pass of M x anchors similarity tiles.
   */
  contrast?: { features: tf.Tensor; labels?: LabelsLike | null; gradient?: boolean };
}

/** The argument names of the tfjs op (the upstream gradient is tfjs's dy). */
export const TENSOR_NAMES: ArgumentNames & { upstream: string } = {
  features: 'features',
  labels: 'labels',
  contrastFeatures: 'options.contrast.features',
  upstream: 'dy',
};

export interface CheckedTensors {
  geometry: LossGeometry;
  labels: Int32Array | null;
  contrastLabels: Int32Array | null;
  /** options.contrast.gradient: the contrast rows get a gradient. */
  contrastGradient: boolean;
}

/** Class ids that float32 holds exactly: every integer of magnitude up to 2^24. */
const FLOAT32_EXACT_INTEGER = 2 ** 24;

/**
 * Labels as an Int32Array. A float32 label tensor must hold integers of magnitude <= 2^24:
 * beyond that float32 no longer has every integer (2^24 and 2^24 + 1 are the same float32), so
 * two classes could already have merged; pass such ids as an int32 tensor or an Int32Array.
 */
export function labelsToInt32(argument: string, labels: LabelsLike, length: number): Int32Array {
  if (labels instanceof tf.Tensor) {
    if (labels.rank !== 1 && !(labels.rank === 2 && labels.shape[1] === 1)) {
      throw new InvalidArgumentError(argument, `a rank-1 tensor of length ${length}`, `a tensor of shape [${labels.shape.join(', ')}]`);
    }
    if (labels.dtype !== 'int32' && labels.dtype !== 'float32') {
      throw new InvalidArgumentError(argument, 'an int32 or float32 tensor', `dtype ${labels.dtype}`);
    }
    if (labels.size !== length) {
      throw new InvalidArgumentError(argument, `${length} labels`, `${labels.size} (shape [${labels.shape.join(', ')}])`);
    }
    const data = labels.dataSync();
    if (data instanceof Int32Array) return data;
    v.integerValues(argument, data);
    for (let i = 0; i < data.length; i++) {
      if (Math.abs(data[i]) > FLOAT32_EXACT_INTEGER) {
        throw new InvalidArgumentError(
          argument,
          'float32 labels of magnitude <= 2^24 (float32 does not hold every larger integer: pass an int32 tensor)',
          `${data[i]} at index ${i}`,
        );
      }
    }
    return Int32Array.from(data);
  }
  if (labels instanceof Int32Array) return v.typedArray(argument, labels, Int32Array, length);
  if (Array.isArray(labels)) {
    if (labels.length !== length) throw new InvalidArgumentError(argument, `${length} labels`, `${labels.length}`);
    v.integerValues(argument, labels);
    return Int32Array.from(labels);
  }
  return v.fail(argument, 'a label tensor, Int32Array or array of integers', labels);
}

/** Validates features/labels/contrast tensors; returns the geometry and the labels as Int32Array. */
export function checkTensors(
  features: unknown,
  labels: LabelsLike | null | undefined,
  options: SupConLossOptions | undefined,
  opts: ResolvedSupConOptions,
): CheckedTensors {
  if (!(features instanceof tf.Tensor)) v.fail('features', 'a tf.Tensor of rank 2 or 3', features);
  if (features.rank !== 2 && features.rank !== 3) {
    throw new InvalidArgumentError('features', 'a tensor of rank 2 or 3', `rank ${features.rank} (shape [${features.shape.join(', ')}])`);
  }
  if (features.dtype !== 'float32') throw new InvalidArgumentError('features', 'a float32 tensor', `dtype ${features.dtype}`);
  if (features.size === 0) throw new InvalidArgumentError('features', 'a non-empty tensor', `shape [${features.shape.join(', ')}]`);
  const batch = features.shape[0];
  const dim = features.shape[features.rank - 1];
  const lab = labels === undefined || labels === null ? null : labelsToInt32('labels', labels, batch);
  let contrastLabels: Int32Array | null = null;
  let contrastRows = 0;
  let contrastGradient = false;
  const c = options?.contrast;
  if (c !== undefined) {
    v.options('options.contrast', c, ['features', 'labels', 'gradient']);
    if (c.gradient !== undefined) contrastGradient = v.boolean('options.contrast.gradient', c.gradient);
    if (!(c.features instanceof tf.Tensor)) v.fail(TENSOR_NAMES.contrastFeatures, `a float32 tensor of shape [M, ${dim}]`, c.features);
    if (c.features.rank !== 2 || c.features.shape[1] !== dim || c.features.size === 0) {
      throw new InvalidArgumentError(TENSOR_NAMES.contrastFeatures, `a float32 tensor of shape [M, ${dim}]`, `shape [${c.features.shape.join(', ')}]`);
    }
    if (c.features.dtype !== 'float32') {
      throw new InvalidArgumentError(TENSOR_NAMES.contrastFeatures, 'a float32 tensor', `dtype ${c.features.dtype}`);
    }
    contrastRows = c.features.shape[0];
    if (lab) {
      if (c.labels === undefined || c.labels === null) {
        throw new InvalidArgumentError('options.contrast.labels', `${contrastRows} labels (labels were given)`, 'nothing');
      }
      contrastLabels = labelsToInt32('options.contrast.labels', c.labels, contrastRows);
    } else if (c.labels !== undefined && c.labels !== null) {
      throw new InvalidArgumentError('options.contrast.labels', 'nothing (no labels for the features: SimCLR)', v.describe(c.labels));
    }
  }
  const geometry = lossGeometry(features.shape, lab !== null, contrastRows, opts, TENSOR_NAMES);
  return { geometry, labels: lab, contrastLabels, contrastGradient };
}
