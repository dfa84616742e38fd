/**
 * Whole models: encoder + projection head for contrastive training, encoder + dense layer
 * for the cross-entropy baseline and for linear evaluation, and layer freezing.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { buildLinearClassifier, buildProjectionHead, type ProjectionHeadOptions } from './heads';
import { buildEncoder, type EncoderOptions } from './resnet';

/** Options of {@link createSupConModel}. */
export interface SupConModelOptions {
  /** Encoder options (a new encoder is built) or an encoder built before (it is shared). */
  encoder: EncoderOptions | tf.LayersModel;
  /** Projection head options; `inputDim` comes from the encoder. Default: MLP to 128. */
  head?: Omit<ProjectionHeadOptions, 'inputDim'>;
}

/** The parts of a contrastive model. All three share the same layer objects and weights. */
export interface SupConModel {
  /** Images [B, H, W, C] -> features [B, featureDim]. */
  encoder: tf.LayersModel;
  /** Features [B, featureDim] -> projections [B, outputDim] with unit L2 norm. */
  head: tf.LayersModel;
  /** Images -> projections: the encoder then the head, named `supcon_model`. */
  model: tf.LayersModel;
}

/** Options of {@link createClassifierModel}. */
export interface ClassifierModelOptions {
  /** Encoder options (a new encoder is built) or an encoder built before (it is shared). */
  encoder: EncoderOptions | tf.LayersModel;
  /** Number of classes: the length of the logits. */
  numClasses: number;
  /** uint32 seed of the classifier's dense layer. Default: random. */
  seed?: number;
}

/** The parts of a classification model, sharing layers and weights. */
export interface ClassifierModel {
  /** Images [B, H, W, C] -> features [B, featureDim]. */
  encoder: tf.LayersModel;
  /** Features [B, featureDim] -> logits [B, numClasses] (see createLinearClassifier). */
  classifier: tf.LayersModel;
  /** Images -> logits: the encoder then the classifier, named `classifier_model`. */
  model: tf.LayersModel;
}

/** Builds the encoder from options, or checks that a given model can serve as one. */
function resolveEncoder(value: unknown, argument: string): tf.LayersModel {
  if (value instanceof tf.LayersModel) {
    if (value.inputs.length !== 1 || value.outputs.length !== 1 || value.outputs[0].shape.length !== 2) {
      validate.fail(argument, 'a LayersModel with one input and one output of rank 2 (features [B, D])', value);
    }
    return value;
  }
  return buildEncoder(value, argument);
}

/** Feeds the encoder's output into `head` and wraps images -> head output in one model. */
function stack(encoder: tf.LayersModel, head: tf.LayersModel, name: string): tf.LayersModel {
  const imageShape = encoder.inputs[0].shape.slice(1) as number[];
  const images = tf.input({ shape: imageShape, name: 'images' });
  const features = encoder.apply(images) as tf.SymbolicTensor;
  return tf.model({ inputs: images, outputs: head.apply(features) as tf.SymbolicTensor, name });
}

/**
 * Builds `{ encoder, head, model }` for contrastive training: `model` maps images to
 * unit-norm projections by running `encoder` then `head` as nested models, so training
 * `model` trains the very weights of `encoder` (no copies).
 * @throws InvalidArgumentError naming the bad option.
 */
export function createSupConModel(options: SupConModelOptions): SupConModel {
  if (options === undefined) validate.fail('options', 'an options object', options);
  const raw = validate.options('options', options, ['encoder', 'head']);
  const encoder = resolveEncoder(raw.encoder, 'options.encoder');
  const headOptions = validate.options('options.head', raw.head, ['kind', 'hiddenDim', 'outputDim', 'seed']);
  const featureDim = encoder.outputs[0].shape[1] as number;
  const head = buildProjectionHead({ ...headOptions, inputDim: featureDim }, 'options.head');
  return { encoder, head, model: stack(encoder, head, 'supcon_model') };
}

/**
 * Builds `{ encoder, classifier, model }`: images -> encoder -> dense(numClasses) logits.
 * Used for the cross-entropy baseline (train everything) and for linear evaluation
 * (freeze the encoder with {@link setTrainable} and train only the classifier).
 * @throws InvalidArgumentError naming the bad option.
 */
export function createClassifierModel(options: ClassifierModelOptions): ClassifierModel {
  if (options === undefined) validate.fail('options', 'an options object', options);
  const raw = validate.options('options', options, ['encoder', 'numClasses', 'seed']);
  const encoder = resolveEncoder(raw.encoder, 'options.encoder');
  const featureDim = encoder.outputs[0].shape[1] as number;
  const classifier = buildLinearClassifier(
    { inputDim: featureDim, numClasses: raw.numClasses, ...(raw.seed === undefined ? {} : { seed: raw.seed }) },
    'options',
  );
  return { encoder, classifier, model: stack(encoder, classifier, 'classifier_model') };
}

/**
 * Freezes (`false`) or unfreezes (`true`) every weight of a model or layer, recursing
 * into nested models. tfjs's own `model.trainable = false` does not reach the layers of a
 * nested model, whose variables would then stay in `tf.variableGrads`'s default list.
 *
 * Freezing does not switch BatchNorm to inference: a call with `{ training: true }` still
 * normalizes with batch statistics and updates the moving averages. For linear evaluation,
 * run the frozen encoder with `training: false` (e.g. `encoder.predict`).
 */
export function setTrainable(model: tf.LayersModel | tf.layers.Layer, trainable: boolean): void {
  if (!(model instanceof tf.layers.Layer)) validate.fail('model', 'a tfjs LayersModel or Layer', model);
  validate.boolean('trainable', trainable);
  if (model instanceof tf.LayersModel) {
    for (const layer of model.layers) setTrainable(layer, trainable);
  }
  model.trainable = trainable;
}
