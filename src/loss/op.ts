/**
 * `supConLoss`: the fused native loss as a differentiable tfjs op (tf.customGrad). It works on
 * any tfjs backend: it reads the features as host memory (zero-copy on the cpu backend; other
 * backends download them), runs the native forward, and in the gradient the native backward
 * from the saved per-row statistics. Falls back to the pure-tfjs reference, with a one-time
 * warning, when the addon is not available. Both paths check their inputs through the same
 * rules (options.ts) and refuse the same ones.
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import * as v from '../validate';
import { callNative, loadNative, nativeLoadError } from '../native';
import { checkGradientRange, prepareLossArgs, resolveOptions, type SupConOptions } from './options';
import { referenceLoss } from './reference';
import { checkTensors, labelsToInt32, TENSOR_NAMES, type LabelsLike, type SupConLossOptions } from './tensor_inputs';

let warnedFallback = false;

function warnFallbackOnce(): void {
  if (warnedFallback) return;
  warnedFallback = true;
  process.emitWarning(`${nativeLoadError()}. supConLoss is using the pure-tfjs reference (slow, O(N^2) memory).`, {
    code: 'SUPCON_NO_ADDON',
  });
}

/**
 * Supervised contrastive loss (docs/loss.md; Khosla et al. 2020) of `features`: [N, D], or
 * [B, V, D] with V views per sample (anchors view-major). `labels` ([N] or [B]) are int32 class
 * ids; omit them for SimCLR / NT-Xent (each sample its own class, so rank-3 features with
 * V >= 2). Returns a scalar, or per-anchor losses [anchors] with `reduction: 'none'`.
 * Options and their defaults: {@link SupConOptions}; `contrast` adds rows that are contrasted
 * against but are not anchors and get no gradient.
 * @throws InvalidArgumentError for bad input, including inputs whose scores, loss or gradient
 * would leave float32's range (docs/loss.md, "Valid input"); NativeError for native failures.
 */
export function supConLoss(features: tf.Tensor, labels?: LabelsLike | null, options?: SupConLossOptions): tf.Tensor {
  const opts = resolveOptions(options, 'options', ['contrast']);
  const checked = checkTensors(features, labels, options, opts);
  const addon = loadNative();
  if (!addon) {
    warnFallbackOnce();
    return referenceLoss(features, checked, opts, options?.contrast?.features);
  }
  const contrastTensor = options?.contrast?.features;
  const contrastGradient = checked.contrastGradient;
  // Being differentiated, it checks the gradient's range for a unit upstream up front, where a
  // refusal leaves nothing behind (tfjs cannot release its tape when a gradient function throws),
  // and again in the backward with tfjs's dy.
  const differentiated = tf.engine().isTapeOn();

  // customGrad passes the inputs (features, then the contrast rows when they get a gradient)
  // followed by the save function.
  const op = tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = inputs[0] as tf.Tensor;
    const save = inputs[inputs.length - 1] as tf.GradSaveFunc;
    const contrastRows = contrastTensor
      ? {
          features: (contrastGradient ? (inputs[1] as tf.Tensor) : contrastTensor).dataSync() as Float32Array,
          labels: checked.contrastLabels,
          gradient: contrastGradient,
        }
      : undefined;
    const { args, geometry, ranges } = prepareLossArgs(
      { features: x.dataSync() as Float32Array, shape: x.shape, labels: checked.labels, contrast: contrastRows, wantGrad: differentiated },
      opts,
      TENSOR_NAMES,
    );
    const forward = callNative(() => addon.lossForward(args));
    save(contrastGradient ? [x, inputs[1] as tf.Tensor] : [x]);
    const value = opts.reduction === 'none' ? tf.tensor1d(forward.perAnchor) : tf.scalar(forward.loss);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const xs = saved[0];
        const upstream = Float32Array.from(dy.dataSync());
        checkGradientRange(ranges, geometry, opts, upstream, TENSOR_NAMES, contrastGradient);
        args.features = xs.dataSync() as Float32Array;
        if (!contrastGradient) {
          const grad = callNative(() => addon.lossBackward(args, forward.stats, upstream));
          return tf.tensor(grad, xs.shape, 'float32');
        }
        const cs = saved[1];
        args.contrastFeatures = cs.dataSync() as Float32Array;
        const contrastGrad = new Float32Array(cs.size);
        const grad = callNative(() => addon.lossBackward(args, forward.stats, upstream, contrastGrad));
        return [tf.tensor(grad, xs.shape, 'float32'), tf.tensor(contrastGrad, cs.shape, 'float32')];
      },
    };
  });
  return contrastGradient && contrastTensor ? op(features, contrastTensor) : op(features);
}

/**
 * Labels from Keras-style targets: [B] or [B, 1], or the prediction's shape ([B, D] or
 * [B, V, D], as {@link supConTargets} builds them) with every entry of a sample equal.
 */
function labelsFromTargets(yTrue: tf.Tensor, yPred: tf.Tensor): Int32Array {
  const batch = yPred.shape[0];
  if (yTrue.shape[0] !== batch) {
    throw new InvalidArgumentError('yTrue', `targets for ${batch} samples (as yPred)`, `shape [${yTrue.shape.join(', ')}]`);
  }
  const perSample = tf.tidy(() => {
    const rows = tf.reshape(yTrue, [batch, -1]);
    if (rows.shape[1] !== 1) {
      const spread = tf.sub(tf.max(rows, 1), tf.min(rows, 1)).max().dataSync()[0];
      if (spread !== 0) {
        throw new InvalidArgumentError('yTrue', "labels, one per sample, repeated over the sample's entries (see supConTargets)", 'samples with differing values');
      }
    }
    return rows.slice([0, 0], [-1, 1]).reshape([-1]);
  });
  try {
    return labelsToInt32('yTrue', perSample, batch);
  } finally {
    perSample.dispose();
  }
}

/** Whether any anchor of a batch can have a positive: two views, or a label that repeats. */
function canHavePositive(labels: Int32Array, views: number): boolean {
  if (views >= 2) return true;
  return new Set(labels).size < labels.length;
}

/**
 * A Keras-style loss for `model.compile({ optimizer, loss: supConLossFn() })`: the labels are the
 * targets and the model's [B, D] (or [B, V, D]) embeddings the predictions; the options are those
 * of {@link supConLoss}, with reduction 'mean' or 'sum'.
 *
 * `yTrue` may be [B] or [B, 1] (fitDataset, custom loops) or, because tfjs's `model.fit` insists
 * that targets have the output's shape, the prediction's shape with a sample's label in every
 * entry: build those with {@link supConTargets}.
 *
 * A batch in which no anchor can have a positive (one row, or all labels distinct with one view:
 * the last, short batch of an epoch, say) contributes a zero loss and gradient instead of
 * stopping the training run, and is reported once per loss function (warning code
 * SUPCON_NO_POSITIVES).
 * @throws InvalidArgumentError for bad options (at once) and for bad targets or predictions.
 */
export function supConLossFn(options?: SupConOptions): (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Scalar {
  const opts = resolveOptions(options);
  if (opts.reduction === 'none') {
    throw new InvalidArgumentError('options.reduction', "'mean' or 'sum' for a Keras loss", "'none'");
  }
  let reported = false;
  return (yTrue: tf.Tensor, yPred: tf.Tensor) => {
    if (!(yPred instanceof tf.Tensor) || (yPred.rank !== 2 && yPred.rank !== 3)) {
      v.fail('yPred', 'a tf.Tensor of rank 2 or 3', yPred);
    }
    const labels = labelsFromTargets(yTrue, yPred);
    const views = yPred.rank === 3 ? yPred.shape[1]! : 1;
    if (!canHavePositive(labels, views)) {
      if (!reported) {
        reported = true;
        process.emitWarning(
          `supConLossFn: a batch of ${labels.length} sample(s) with one view and no repeated label has no anchor with a positive; ` +
            'such batches contribute no loss (reported once).',
          { code: 'SUPCON_NO_POSITIVES' },
        );
      }
      v.finiteValues('yPred', yPred.dataSync());
      // Exactly +0, with a (zero) gradient path to the predictions, which tfjs's fit needs.
      return tf.tidy(() => tf.sum(tf.sub(yPred, yPred))) as tf.Scalar;
    }
    return supConLoss(yPred, labels, opts) as tf.Scalar;
  };
}

/**
 * Targets for `model.fit(x, supConTargets(labels, shape), ...)` with {@link supConLossFn}: tfjs's
 * fit requires targets of the output's shape, so each label is repeated over a sample's entries.
 * `shape` is the output's shape past the batch: D for [B, D] embeddings, [V, D] for [B, V, D].
 * The targets are int32, so every int32 label keeps its identity (float32 would merge ids above
 * 2^24).
 */
export function supConTargets(labels: tf.Tensor | readonly number[] | Int32Array, shape: number): tf.Tensor2D;
export function supConTargets(labels: tf.Tensor | readonly number[] | Int32Array, shape: readonly [number, number]): tf.Tensor3D;
export function supConTargets(labels: tf.Tensor | readonly number[] | Int32Array, shape: number | readonly number[]): tf.Tensor {
  const dims = typeof shape === 'number' ? [v.integer('shape', shape, 1)] : v.shape('shape', shape, [1, 2]);
  const count = labels instanceof tf.Tensor ? labels.shape[0] : Array.isArray(labels) || labels instanceof Int32Array ? labels.length : 0;
  const ids = labelsToInt32('labels', labels as LabelsLike, count);
  return tf.tidy(() => {
    const column = tf.tensor(ids, [ids.length, ...dims.map(() => 1)], 'int32');
    return tf.tile(column, [1, ...dims]);
  });
}
