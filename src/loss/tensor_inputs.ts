/**
 * Checks the tfjs inputs of the loss (shared by the native op and the pure-tfjs reference) and
 * reads labels once. The geometry rules themselves live in options.ts (prepareLossArgs).
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import * as v from '../validate';
import type { ResolvedSupConOptions, SupConOptions } from './options';

/** Labels as a rank-1 tensor (int32, or float32 holding integers), an Int32Array, or a number array. */
export type LabelsLike = tf.Tensor | Int32Array | readonly number[];

/** Options of the tfjs op: the loss options plus an optional extra contrast set as tensors. */
export interface SupConLossOptions extends SupConOptions {
  /** Rows contrasted against but not anchors, and given no gradient (a memory queue, other workers' rows). */
  contrast?: { features: tf.Tensor; labels?: LabelsLike | null };
}

export interface CheckedTensors {
  batch: number;
  views: number;
  dim: number;
  labels: Int32Array | null;
  contrastLabels: Int32Array | null;
}

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
  const [batch, views, dim] = features.rank === 2 ? [features.shape[0], 1, features.shape[1]] : features.shape;
  if (opts.contrastMode === 'one' && features.rank !== 3) {
    throw new InvalidArgumentError(
      'options.contrastMode',
      "'all' for rank-2 features ('one' needs views: shape [B, V, D])",
      `'one' with shape [${features.shape.join(', ')}]`,
    );
  }
  const lab = labels === undefined || labels === null ? null : labelsToInt32('labels', labels, batch);
  let contrastLabels: Int32Array | null = null;
  const c = options?.contrast;
  if (c !== undefined) {
    v.options('options.contrast', c, ['features', 'labels']);
    if (!(c.features instanceof tf.Tensor) || c.features.rank !== 2 || c.features.shape[1] !== dim) {
      v.fail('options.contrast.features', `a float32 tensor of shape [M, ${dim}]`, c.features instanceof tf.Tensor ? `shape [${c.features.shape.join(', ')}]` : c.features);
    }
    if (c.features.dtype !== 'float32') {
      throw new InvalidArgumentError('options.contrast.features', 'a float32 tensor', `dtype ${c.features.dtype}`);
    }
    const m = c.features.shape[0];
    if (lab) {
      if (c.labels === undefined || c.labels === null) {
        throw new InvalidArgumentError('options.contrast.labels', `${m} labels (labels were given)`, 'nothing');
      }
      contrastLabels = labelsToInt32('options.contrast.labels', c.labels, m);
    } else if (c.labels !== undefined && c.labels !== null) {
      throw new InvalidArgumentError('options.contrast.labels', 'nothing (no labels for the features: SimCLR)', v.describe(c.labels));
    }
  }
  return { batch, views, dim, labels: lab, contrastLabels };
}
