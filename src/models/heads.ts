/**
 * Heads placed on top of an encoder's features: the SupCon projection head (MLP or linear,
 * ending in L2 normalization) and the linear classifier used for evaluation.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { glorotUniform, LayerSeeds, MAX_SEED } from './initializers';

/** Arguments of a tfjs layer's constructor (name, trainable, ...). */
type BaseLayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;

/** Config of {@link L2Normalize}: the base layer's arguments plus `epsilon`. */
export interface L2NormalizeArgs extends BaseLayerArgs {
  /** Norms below this are clamped to it, so a zero row maps to zero, not NaN. Default 1e-12. */
  epsilon?: number;
}

/**
 * Divides every row (the last axis) by its L2 norm: y = x / max(||x||, epsilon), the same
 * rule as PyTorch's `F.normalize`. Registered with tfjs's serialization under
 * `className` 'L2Normalize', so models containing it save and load with
 * `tf.loadLayersModel` once this module has been imported.
 */
export class L2Normalize extends tf.layers.Layer {
  /** The name tfjs stores in a saved model's topology. */
  static className = 'L2Normalize';
  /** Lower bound of the norm a row is divided by. */
  readonly epsilon: number;

  constructor(args: L2NormalizeArgs = {}) {
    const { epsilon, ...layerArgs } = args;
    super(layerArgs);
    this.epsilon = epsilon === undefined ? 1e-12 : validate.number('args.epsilon', epsilon, { gt: 0 });
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const squaredNorm = tf.sum(tf.square(x), -1, true);
      // max(||x||, eps) computed on squares avoids a sqrt of zero (infinite gradient).
      const norm = tf.sqrt(tf.maximum(squaredNorm, this.epsilon * this.epsilon));
      return tf.div(x, norm);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}
tf.serialization.registerClass(L2Normalize);

/** Kinds of projection head: a 2-layer MLP (SupCon/SimCLR default) or one dense layer. */
export const PROJECTION_HEAD_KINDS = ['mlp', 'linear'] as const;
/** Kind of projection head; see {@link PROJECTION_HEAD_KINDS}. */
export type ProjectionHeadKind = (typeof PROJECTION_HEAD_KINDS)[number];

/** Options of {@link createProjectionHead}. */
export interface ProjectionHeadOptions {
  /** Length of the encoder features the head reads. */
  inputDim: number;
  /** `'mlp'` (default): dense -> ReLU -> dense; `'linear'`: one dense layer. */
  kind?: ProjectionHeadKind;
  /** Width of the MLP's hidden layer. Default `inputDim`. Not allowed with kind 'linear'. */
  hiddenDim?: number;
  /** Length of the projection. Default 128. */
  outputDim?: number;
  /** uint32 seed for reproducible weights. Default: random. */
  seed?: number;
}

/**
 * Builds the projection head [B, inputDim] -> [B, outputDim] with unit-L2-norm rows:
 * `dense(hiddenDim) -> ReLU -> dense(outputDim) -> L2Normalize` (dense layers have biases,
 * Glorot-uniform weights), or `dense(outputDim) -> L2Normalize` for kind 'linear'.
 * Layers are named `head_dense1`, `head_relu`, `head_dense2` (`head_dense` when linear)
 * and `head_l2_normalize`; the model is named `projection_head`.
 * @throws InvalidArgumentError naming the bad option.
 */
export function createProjectionHead(options: ProjectionHeadOptions): tf.LayersModel {
  return buildProjectionHead(options, 'options');
}

/** {@link createProjectionHead} with errors naming `argument` (e.g. `options.head`). */
export function buildProjectionHead(options: unknown, argument: string): tf.LayersModel {
  if (options === undefined) validate.fail(argument, 'an options object', options);
  const raw = validate.options(argument, options, ['inputDim', 'kind', 'hiddenDim', 'outputDim', 'seed']);
  const inputDim = validate.integer(`${argument}.inputDim`, raw.inputDim, 1);
  const kind = raw.kind === undefined ? 'mlp' : validate.oneOf(`${argument}.kind`, raw.kind, PROJECTION_HEAD_KINDS);
  if (kind === 'linear' && raw.hiddenDim !== undefined) {
    validate.fail(`${argument}.hiddenDim`, "no hidden width with kind 'linear'", raw.hiddenDim);
  }
  const hiddenDim = raw.hiddenDim === undefined ? inputDim : validate.integer(`${argument}.hiddenDim`, raw.hiddenDim, 1);
  const outputDim = raw.outputDim === undefined ? 128 : validate.integer(`${argument}.outputDim`, raw.outputDim, 1);
  const seed = raw.seed === undefined ? undefined : validate.integer(`${argument}.seed`, raw.seed, 0, MAX_SEED);
  const seeds = new LayerSeeds(seed);

  const dense = (name: string, units: number) =>
    tf.layers.dense({ name, units, useBias: true, kernelInitializer: glorotUniform(seeds.next()), biasInitializer: 'zeros' });
  const input = tf.input({ shape: [inputDim], name: 'head_input' });
  let x: tf.SymbolicTensor;
  if (kind === 'mlp') {
    x = dense('head_dense1', hiddenDim).apply(input) as tf.SymbolicTensor;
    x = tf.layers.reLU({ name: 'head_relu' }).apply(x) as tf.SymbolicTensor;
    x = dense('head_dense2', outputDim).apply(x) as tf.SymbolicTensor;
  } else {
    x = dense('head_dense', outputDim).apply(input) as tf.SymbolicTensor;
  }
  const output = new L2Normalize({ name: 'head_l2_normalize' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: output, name: 'projection_head' });
}

/** Options of {@link createLinearClassifier}. */
export interface LinearClassifierOptions {
  /** Length of the (frozen) encoder features the classifier reads. */
  inputDim: number;
  /** Number of classes: the length of the logits. */
  numClasses: number;
  /** uint32 seed for reproducible weights. Default: random. */
  seed?: number;
}

/**
 * Builds the linear classifier [B, inputDim] -> logits [B, numClasses]: one dense layer
 * named `classifier_dense` with bias and no activation (pair it with a softmax
 * cross-entropy on logits). The model is named `linear_classifier`.
 * @throws InvalidArgumentError naming the bad option.
 */
export function createLinearClassifier(options: LinearClassifierOptions): tf.LayersModel {
  return buildLinearClassifier(options, 'options');
}

/** {@link createLinearClassifier} with errors naming `argument`. */
export function buildLinearClassifier(options: unknown, argument: string): tf.LayersModel {
  if (options === undefined) validate.fail(argument, 'an options object', options);
  const raw = validate.options(argument, options, ['inputDim', 'numClasses', 'seed']);
  const inputDim = validate.integer(`${argument}.inputDim`, raw.inputDim, 1);
  const numClasses = validate.integer(`${argument}.numClasses`, raw.numClasses, 1);
  const seed = raw.seed === undefined ? undefined : validate.integer(`${argument}.seed`, raw.seed, 0, MAX_SEED);
  const input = tf.input({ shape: [inputDim], name: 'classifier_input' });
  const logits = tf.layers
    .dense({
      name: 'classifier_dense',
      units: numClasses,
      useBias: true,
      kernelInitializer: glorotUniform(new LayerSeeds(seed).next()),
      biasInitializer: 'zeros',
    })
    .apply(input) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: logits, name: 'linear_classifier' });
}
