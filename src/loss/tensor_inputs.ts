/**
 * Checks the tfjs inputs of the loss (shared by the native op and the pure-tfjs reference) and
 * reads labels once. The geometry rules themselves live in options.ts (lossGeometry), shared
 * with the typed-array API.
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import * as v from '../validate';
import {
  checkLabelSets,
  lossGeometry,
  type ArgumentNames,
  type LabelSets,
  type LossGeometry,
  type ResolvedSupConOptions,
  type SupConOptions,
} from './options';

/**
 * Labels: class ids as a rank-1 tensor (int32, or float32 holding integers; [B, 1] too), an
 * Int32Array or a number array; or multi-hot label sets as a [B, C] tensor with C >= 2 (int32,
 * float32 or bool holding 0 and 1), an array of such rows, or a {@link LabelSets}.
 */
export type LabelsLike = tf.Tensor | Int32Array | readonly number[] | ReadonlyArray<readonly number[]> | LabelSets;

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
  /** Class ids, or label sets (one of the two, or neither for SimCLR); the contrast set's of the same kind. */
  labels: Int32Array | null;
  labelSets: LabelSets | null;
  contrastLabels: Int32Array | null;
  contrastLabelSets: LabelSets | null;
  /** options.contrast.gradient: the contrast rows get a gradient. */
  contrastGradient: boolean;
}

/** Labels read once: class ids or label sets. */
export interface ReadLabels {
  ids: Int32Array | null;
  sets: LabelSets | null;
}

function isLabelSetsObject(labels: unknown): labels is LabelSets {
  return typeof labels === 'object' && labels !== null && !Array.isArray(labels) && !(labels instanceof tf.Tensor) && !ArrayBuffer.isView(labels);
}

/**
 * Reads labels of `rows` rows (docs/loss.md, "Positives"): label sets when given as a [rows, C]
 * tensor with C >= 2, an array of rows or a {@link LabelSets} (of `numLabels` labels when that
 * is given), class ids otherwise ({@link labelsToInt32}).
 * @throws InvalidArgumentError naming `argument`.
 */
export function readLabels(argument: string, labels: LabelsLike, rows: number, numLabels?: number): ReadLabels {
  if (isLabelSetsObject(labels)) return { ids: null, sets: checkLabelSets(argument, labels, rows, numLabels) };
  if (labels instanceof tf.Tensor && labels.rank === 2 && labels.shape[1] !== 1) {
    if (labels.dtype !== 'int32' && labels.dtype !== 'float32' && labels.dtype !== 'bool') {
      throw new InvalidArgumentError(argument, 'an int32, float32 or bool tensor of label sets', `dtype ${labels.dtype}`);
    }
    const width = labels.shape[1]!;
    if (labels.shape[0] !== rows || (numLabels !== undefined && width !== numLabels)) {
      throw new InvalidArgumentError(
        argument,
        `label sets of shape [${rows}, ${numLabels ?? 'C'}]`,
        `a tensor of shape [${labels.shape.join(', ')}]`,
      );
    }
    const data = labels.dataSync();
    v.binaryValues(argument, data);
    return { ids: null, sets: { sets: Uint8Array.from(data), numLabels: width } };
  }
  if (Array.isArray(labels) && labels.length > 0 && Array.isArray(labels[0])) {
    const rowsOf = labels as ReadonlyArray<readonly number[]>;
    const width = rowsOf[0].length;
    if (rowsOf.length !== rows) throw new InvalidArgumentError(argument, `${rows} label sets`, `${rowsOf.length}`);
    if (width < 1 || (numLabels !== undefined && width !== numLabels)) {
      throw new InvalidArgumentError(argument, `label sets of ${numLabels ?? 'C >= 1'} labels`, `rows of ${width}`);
    }
    const sets = new Uint8Array(rows * width);
    rowsOf.forEach((row, r) => {
      if (!Array.isArray(row) || row.length !== width) {
        throw new InvalidArgumentError(argument, `label sets of ${width} labels each`, `row ${r} of ${Array.isArray(row) ? row.length : v.describe(row)}`);
      }
      v.binaryValues(`${argument}[${r}]`, row);
      sets.set(row, r * width);
    });
    return { ids: null, sets: { sets, numLabels: width } };
  }
  if (numLabels !== undefined) {
    throw new InvalidArgumentError(argument, `label sets of ${numLabels} labels (the features have label sets)`, 'class ids');
  }
  return { ids: labelsToInt32(argument, labels as tf.Tensor | Int32Array | readonly number[], rows), sets: null };
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
  const read = labels === undefined || labels === null ? null : readLabels('labels', labels, batch);
  const lab = read ? read.ids : null;
  const labelSets = read ? read.sets : null;
  let contrastLabels: Int32Array | null = null;
  let contrastLabelSets: LabelSets | null = null;
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
    if (read) {
      if (c.labels === undefined || c.labels === null) {
        throw new InvalidArgumentError('options.contrast.labels', `${contrastRows} labels (labels were given)`, 'nothing');
      }
      const contrastRead = readLabels('options.contrast.labels', c.labels, contrastRows, labelSets?.numLabels);
      if (lab && contrastRead.sets) {
        throw new InvalidArgumentError('options.contrast.labels', `${contrastRows} class ids (the features have class ids)`, 'label sets');
      }
      contrastLabels = contrastRead.ids;
      contrastLabelSets = contrastRead.sets;
    } else if (c.labels !== undefined && c.labels !== null) {
      throw new InvalidArgumentError('options.contrast.labels', 'nothing (no labels for the features: SimCLR)', v.describe(c.labels));
    }
  }
  const geometry = lossGeometry(features.shape, read !== null, contrastRows, opts, TENSOR_NAMES);
  return { geometry, labels: lab, labelSets, contrastLabels, contrastLabelSets, contrastGradient };
}
