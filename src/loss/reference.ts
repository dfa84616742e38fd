/**
 * The SupCon loss as a plain composition of tfjs ops (docs/loss.md), differentiated by tfjs's
 * autodiff. It materializes the N x (N+M) similarity matrix, so it is for small problems: the
 * fallback when the addon cannot load, and an independent oracle for tests and benchmarks.
 * It checks its inputs through the same rules as the native path (options.ts) and stays exact
 * at float32's edges the same way: excluded entries are -Infinity (never a finite stand-in),
 * every log-sum-exp row keeps a finite maximum, means are taken of pre-divided terms, and the
 * normalization never differentiates a norm at 0.
 */
import * as tf from '@tensorflow/tfjs';
import {
  checkGradientRange,
  checkLossValues,
  resolveOptions,
  unitUpstream,
  type LossRanges,
  type ResolvedSupConOptions,
} from './options';
import { checkTensors, TENSOR_NAMES, type CheckedTensors, type LabelsLike, type SupConLossOptions } from './tensor_inputs';

const EPSILON = 1e-12;

/**
 * SupCon loss composed of tfjs ops. Same arguments, result and errors as `supConLoss`.
 * @throws InvalidArgumentError as supConLoss.
 */
export function supConLossReference(
  features: tf.Tensor,
  labels?: LabelsLike | null,
  options?: SupConLossOptions,
): tf.Tensor {
  const opts = resolveOptions(options, 'options', ['contrast']);
  const checked = checkTensors(features, labels, options, opts);
  return referenceLoss(features, checked, opts, options?.contrast?.features);
}

/**
 * x / max(||x||, 1e-12) for the rows of x ([rows, D]), as the native path computes it, by
 * autodiff: each row is first divided by a power of two near its largest entry (a constant read
 * from the data, so the rescaling is exact and no square overflows or underflows), and a row
 * whose norm is clamped is a plain scaling by 1/1e-12 (its norm is never differentiated).
 */
function normalizeRows(x: tf.Tensor2D): tf.Tensor2D {
  const [rows, dim] = x.shape;
  const data = x.dataSync();
  const scale = new Float32Array(rows);
  const clamped = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    let largest = 0;
    let ss = 0;
    for (let k = 0; k < dim; k++) {
      const a = Math.abs(data[r * dim + k]);
      largest = Math.max(largest, a);
      ss += a * a;
    }
    scale[r] = largest > 0 ? 2 ** Math.floor(Math.log2(largest)) : 1;
    clamped[r] = Math.sqrt(ss) < EPSILON ? 1 : 0;
  }
  return tf.tidy(() => {
    const c = tf.tensor2d(scale, [rows, 1]);
    const isClamped = tf.tensor2d(clamped, [rows, 1], 'bool');
    const y = tf.div(x, c);
    const squares = tf.sum(tf.square(y), 1, true);
    const norm = tf.sqrt(tf.where(isClamped, tf.onesLike(squares), squares));
    return tf.div(y, tf.where(isClamped, tf.div(EPSILON, c), norm)) as tf.Tensor2D;
  });
}

/**
 * The loss of checked tensors (shared with supConLoss's fallback): the value checks of the native
 * path, then the composed computation; its backward checks the gradient's range for tfjs's dy.
 */
export function referenceLoss(
  features: tf.Tensor,
  checked: CheckedTensors,
  opts: ResolvedSupConOptions,
  extraFeatures?: tf.Tensor,
): tf.Tensor {
  const ranges = checkLossValues(
    features.dataSync(),
    extraFeatures ? extraFeatures.dataSync() : null,
    checked.geometry,
    opts,
    TENSOR_NAMES,
  );
  if (tf.engine().isTapeOn()) {
    // Differentiated: the gradient's range for a unit upstream, up front (as supConLoss).
    checkGradientRange(ranges, checked.geometry, opts, unitUpstream(checked.geometry, opts), TENSOR_NAMES, checked.contrastGradient);
  }
  const guard = gradientRangeGuard(ranges, checked, opts);
  return tf.tidy(() => {
    // Contrast rows get no gradient unless asked for: a copy off the tape (as the native op,
    // which then has no path to them either).
    const extra =
      extraFeatures && !checked.contrastGradient ? tf.tensor(extraFeatures.dataSync(), extraFeatures.shape, 'float32') : extraFeatures;
    return guard(composedLoss(features, checked, opts, extra));
  });
}

function composedLoss(
  features: tf.Tensor,
  checked: CheckedTensors,
  opts: ResolvedSupConOptions,
  extraFeatures?: tf.Tensor,
): tf.Tensor {
  const { geometry, labels: lab, contrastLabels } = checked;
  const { batch, views, dim } = geometry;
  return tf.tidy(() => {
    // View-major rows: row v*B + b is view v of sample b.
    let z = (features.rank === 3 ? tf.transpose(features, [1, 0, 2]).reshape([views * batch, dim]) : features) as tf.Tensor2D;
    const sampleLabels = lab ? tf.tensor1d(lab, 'int32') : tf.range(0, batch, 1, 'int32');
    const rowLabels = tf.tile(sampleLabels, [views]);
    if (opts.normalize) z = normalizeRows(z);

    let contrast = z;
    let contrastRowLabels = rowLabels;
    if (extraFeatures) {
      const ez = opts.normalize ? normalizeRows(extraFeatures as tf.Tensor2D) : extraFeatures;
      contrast = tf.concat([z, ez as tf.Tensor2D], 0);
      const m = extraFeatures.shape[0];
      // Without labels the extra rows are negatives of every anchor: ids no anchor has.
      const el = contrastLabels ? tf.tensor1d(contrastLabels, 'int32') : tf.range(-1, -1 - m, -1, 'int32');
      contrastRowLabels = tf.concat([rowLabels, el]);
    }
    const anchorCount = geometry.anchors;
    const anchors = opts.contrastMode === 'one' ? z.slice([0, 0], [batch, dim]) : z;
    const anchorLabels = opts.contrastMode === 'one' ? rowLabels.slice(0, batch) : rowLabels;
    const contrastCount = contrast.shape[0];

    const s = tf.div(tf.matMul(anchors, contrast, false, true), opts.temperature);
    // Anchor k is contrast row k in both modes (view-major order), so self-contrast is the diagonal.
    const self = tf.oneHot(tf.range(0, anchorCount, 1, 'int32'), contrastCount).cast('bool');
    const others = tf.logicalNot(self);
    const positive = tf.logicalAnd(tf.equal(anchorLabels.expandDims(1), contrastRowLabels.expandDims(0)), others);
    const absent = tf.fill(s.shape, -Infinity);
    // Log-sum-exps as (max, log of the sum of exp(s - max)), kept apart like the native path's, so
    // that differences of large terms are taken before log(sum) is added.
    const logSumExp = (x: tf.Tensor) => {
      const m = tf.max(x, 1, true);
      return { m: m.squeeze([1]), logSum: tf.log(tf.sum(tf.exp(tf.sub(x, m)), 1)) };
    };
    const all = logSumExp(tf.where(self, absent, s));
    const count = positive.cast('float32').sum(1);
    const valid = tf.greater(count, 0);
    const safeCount = tf.maximum(count, 1).expandDims(1);
    let perAnchor: tf.Tensor;
    if (opts.variant === 'out') {
      // The mean of the positives' scores as a sum of s / |P| (a sum of s could overflow).
      const meanPositive = tf.sum(tf.where(positive, tf.div(s, safeCount), tf.zerosLike(s)), 1);
      perAnchor = tf.add(tf.sub(all.m, meanPositive), all.logSum);
    } else {
      // Rows without positives take their other scores instead, so every row's maximum is finite
      // (their result is masked out below, and so is their gradient).
      const inSet = tf.logicalOr(positive, tf.logicalAnd(tf.logicalNot(valid).expandDims(1), others));
      const pos = logSumExp(tf.where(inSet, s, absent));
      perAnchor = tf.add(tf.add(tf.sub(all.m, pos.m), tf.sub(all.logSum, pos.logSum)), tf.log(safeCount.squeeze([1])));
    }
    perAnchor = tf.mul(tf.where(valid, perAnchor, tf.zerosLike(perAnchor)), opts.temperature / opts.baseTemperature);
    if (opts.reduction === 'none') return perAnchor;
    const total = tf.sum(perAnchor);
    if (opts.reduction === 'sum') return total;
    return tf.div(total, tf.maximum(valid.cast('float32').sum(), 1));
  });
}

/** The identity, whose backward checks tfjs's dy against the gradient's range rule. */
function gradientRangeGuard(ranges: LossRanges, checked: CheckedTensors, opts: ResolvedSupConOptions) {
  return tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const t = inputs[0] as tf.Tensor;
    return {
      value: t.clone(),
      gradFunc: (dy: tf.Tensor) => {
        checkGradientRange(ranges, checked.geometry, opts, dy.dataSync(), TENSOR_NAMES, checked.contrastGradient);
        return dy.clone();
      },
    };
  });
}
