/**
 * The SupCon loss as a plain composition of tfjs ops (docs/loss.md), differentiated by tfjs's
 * autodiff. It materializes the N x (N+M) similarity matrix, so it is for small problems: the
 * fallback when the addon cannot load, and an independent oracle for tests and benchmarks.
 */
import * as tf from '@tensorflow/tfjs';
import { resolveOptions } from './options';
import { checkTensors, type LabelsLike, type SupConLossOptions } from './tensor_inputs';

const MASKED = -1e9;

/** SupCon loss composed of tfjs ops. Same arguments and result as `supConLoss`. */
export function supConLossReference(
  features: tf.Tensor,
  labels?: LabelsLike | null,
  options?: SupConLossOptions,
): tf.Tensor {
  const opts = resolveOptions(options, 'options', ['contrast']);
  const { batch, views, dim, labels: lab, contrastLabels } = checkTensors(features, labels, options, opts);
  return tf.tidy(() => {
    // View-major rows: row v*B + b is view v of sample b.
    let z = features.rank === 3 ? tf.transpose(features, [1, 0, 2]).reshape([views * batch, dim]) : features;
    const sampleLabels = lab ? tf.tensor1d(lab, 'int32') : tf.range(0, batch, 1, 'int32');
    const rowLabels = tf.tile(sampleLabels, [views]);
    const normalize = (x: tf.Tensor) => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', 1, true), 1e-12));
    if (opts.normalize) z = normalize(z);

    let contrast = z;
    let contrastRowLabels = rowLabels;
    const extra = options?.contrast;
    if (extra) {
      const ez = opts.normalize ? normalize(extra.features) : extra.features;
      contrast = tf.concat([z, ez], 0);
      const m = extra.features.shape[0];
      // Without labels the extra rows are negatives of every anchor: ids no anchor has.
      const el = contrastLabels ? tf.tensor1d(contrastLabels, 'int32') : tf.range(-1, -1 - m, -1, 'int32');
      contrastRowLabels = tf.concat([rowLabels, el]);
    }
    const anchorCount = opts.contrastMode === 'one' ? batch : batch * views;
    const anchors = opts.contrastMode === 'one' ? z.slice([0, 0], [batch, dim]) : z;
    const anchorLabels = opts.contrastMode === 'one' ? rowLabels.slice(0, batch) : rowLabels;
    const contrastCount = contrast.shape[0];

    const s = tf.div(tf.matMul(anchors, contrast, false, true), opts.temperature);
    // Anchor k is contrast row k in both modes (view-major order), so self-contrast is the diagonal.
    const self = tf.oneHot(tf.range(0, anchorCount, 1, 'int32'), contrastCount).cast('bool');
    const positive = tf.logicalAnd(tf.equal(anchorLabels.expandDims(1), contrastRowLabels.expandDims(0)), tf.logicalNot(self));
    const lse = tf.logSumExp(tf.where(self, tf.fill(s.shape, MASKED), s), 1);
    const count = positive.cast('float32').sum(1);
    const valid = tf.greater(count, 0);
    const safeCount = tf.maximum(count, 1);
    let perAnchor: tf.Tensor;
    if (opts.variant === 'out') {
      const meanPositive = tf.div(tf.sum(tf.where(positive, s, tf.zerosLike(s)), 1), safeCount);
      perAnchor = tf.sub(lse, meanPositive);
    } else {
      const lseP = tf.logSumExp(tf.where(positive, s, tf.fill(s.shape, MASKED)), 1);
      perAnchor = tf.add(tf.sub(lse, lseP), tf.log(safeCount));
    }
    perAnchor = tf.mul(tf.where(valid, perAnchor, tf.zerosLike(perAnchor)), opts.temperature / opts.baseTemperature);
    if (opts.reduction === 'none') return perAnchor;
    const total = tf.sum(perAnchor);
    if (opts.reduction === 'sum') return total;
    return tf.div(total, tf.maximum(valid.cast('float32').sum(), 1));
  });
}
