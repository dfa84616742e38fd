/**
 * `supConLoss`: the fused native loss as a differentiable tfjs op (tf.customGrad). It works on
 * any tfjs backend: it reads the features as host memory (zero-copy on the cpu backend; other
 * backends download them), runs the native forward, and in the gradient the native backward
 * from the saved per-row statistics. Falls back to the pure-tfjs reference, with a one-time
 * warning, when the addon is not available.
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import { integer } from '../validate';
import { callNative, loadNative, nativeLoadError } from '../native';
import { prepareLossArgs, resolveOptions, type SupConOptions } from './options';
import { supConLossReference } from './reference';
import { checkTensors, labelsToInt32, type LabelsLike, type SupConLossOptions } from './tensor_inputs';

let warnedFallback = false;

function warnFallbackOnce(): void {
  if (warnedFallback) return;
  warnedFallback = true;
  process.emitWarning(`${nativeLoadError()}. supConLoss is using the pure-tfjs reference (slow, O(N^2) memory).`, {
    code: 'SUPCON_NO_ADDON',
  });
}

/**
 * Supervised contrastive loss of `features` ([N, D], or [B, V, D] with V views per sample).
 * `labels` ([N] or [B]) are class ids; omit them for SimCLR (each sample is its own class).
 * Returns a scalar, or per-anchor losses [anchors] with `reduction: 'none'`.
 */
export function supConLoss(features: tf.Tensor, labels?: LabelsLike | null, options?: SupConLossOptions): tf.Tensor {
  const opts = resolveOptions(options, 'options', ['contrast']);
  const checked = checkTensors(features, labels, options, opts);
  const addon = loadNative();
  if (!addon) {
    warnFallbackOnce();
    return supConLossReference(features, labels, options);
  }
  const contrast = options?.contrast
    ? { features: options.contrast.features.dataSync() as Float32Array, labels: checked.contrastLabels }
    : undefined;

  // customGrad passes the inputs followed by the save function.
  const op = tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = inputs[0] as tf.Tensor;
    const save = inputs[1] as tf.GradSaveFunc;
    const { args } = prepareLossArgs(
      { features: x.dataSync() as Float32Array, shape: x.shape, labels: checked.labels, contrast, wantGrad: false },
      opts,
    );
    const forward = callNative(() => addon.lossForward(args));
    save([x]);
    const value = opts.reduction === 'none' ? tf.tensor1d(forward.perAnchor) : tf.scalar(forward.loss);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const xs = saved[0];
        args.features = xs.dataSync() as Float32Array;
        const upstream = Float32Array.from(dy.dataSync());
        const grad = callNative(() => addon.lossBackward(args, forward.stats, upstream));
        return tf.tensor(grad, xs.shape, 'float32');
      },
    };
  });
  return op(features);
}

/**
 * A Keras-style loss for `model.compile({ optimizer, loss: supConLossFn() })`: the labels are the
 * targets and the model's [B, D] (or [B, V, D]) embeddings the predictions. The reduction must be
 * 'mean' or 'sum'.
 *
 * `yTrue` may be [B] or [B, 1] (fitDataset, custom loops) or, because tfjs's `model.fit` insists
 * that targets have the output's shape, [B, D] with each row holding its label in every column:
 * build those with {@link supConTargets}.
 */
export function supConLossFn(options?: SupConOptions): (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Scalar {
  const opts = resolveOptions(options);
  if (opts.reduction === 'none') {
    throw new InvalidArgumentError('options.reduction', "'mean' or 'sum' for a Keras loss", "'none'");
  }
  return (yTrue: tf.Tensor, yPred: tf.Tensor) => {
    const batch = yPred.shape[0];
    const labels = tf.tidy(() => {
      if (yTrue.rank === 2 && yTrue.shape[1] !== 1) {
        // Targets from supConTargets: every column holds the label.
        const spread = tf.sub(tf.max(yTrue, 1), tf.min(yTrue, 1)).max().dataSync()[0];
        if (spread !== 0) {
          throw new InvalidArgumentError('yTrue', 'labels, one per row (see supConTargets)', `rows with differing values`);
        }
        return yTrue.slice([0, 0], [-1, 1]).reshape([-1]);
      }
      return yTrue.reshape([-1]);
    });
    try {
      return supConLoss(yPred, labelsToInt32('yTrue', labels, batch), opts) as tf.Scalar;
    } finally {
      labels.dispose();
    }
  };
}

/**
 * Targets for `model.fit(x, supConTargets(labels, D), ...)` with {@link supConLossFn}: tfjs's
 * fit requires targets of the output's shape [B, D], so each label is repeated over D columns.
 */
export function supConTargets(labels: tf.Tensor | readonly number[] | Int32Array, dim: number): tf.Tensor2D {
  const d = integer('dim', dim, 1);
  return tf.tidy(() => {
    const t = labels instanceof tf.Tensor ? labels.reshape([-1]).cast('float32') : tf.tensor1d(Array.from(labels), 'float32');
    return tf.tile(t.expandDims(1), [1, d]) as tf.Tensor2D;
  });
}
