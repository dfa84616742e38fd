/**
 * The fused ResNet unit as a tfjs layer: convolution + batch normalization (+ residual)
 * (+ ReLU), one op forward and one backward (src/kernels/conv_batch_norm.ts). Registered with
 * tfjs's serialization, so `tf.loadLayersModel` loads models containing it once this package is
 * imported; on backends other than `cpu` with the addon it composes tfjs's own ops.
 *
 * Its weights keep the names and layouts of the plain composition it replaces
 * (`tf.layers.conv2d` without bias, then `tf.layers.batchNormalization`): given `convName` and
 * `bnName` they are `<convName>/kernel`, `<bnName>/gamma`, `<bnName>/beta`,
 * `<bnName>/moving_mean`, `<bnName>/moving_variance`, so checkpoints move between a fused
 * encoder and a plain one by weight name (`model.loadWeights`, `tf.io` weight manifests).
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import { convBatchNorm } from '../kernels/conv_batch_norm';
import * as validate from '../validate';
import type { WeightInitializer } from './initializers';

/** Arguments of a tfjs layer's constructor (name, trainable, ...). */
type BaseLayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;

/** A weight initializer: an instance, `'zeros'`/`'ones'`, or its serialized `{className, config}`. */
export type InitializerLike = WeightInitializer | 'zeros' | 'ones' | { className: string; config: tf.serialization.ConfigDict };

/** Activations of {@link ConvBatchNorm}. */
export const CONV_BN_ACTIVATIONS = ['relu', 'linear'] as const;
/** Padding modes of {@link ConvBatchNorm} (tfjs's). */
export const CONV_BN_PADDINGS = ['same', 'valid'] as const;

/** Constructor arguments (and serialized config) of {@link ConvBatchNorm}. */
export interface ConvBatchNormArgs extends BaseLayerArgs {
  /** Output channels. */
  filters: number;
  /** Square kernel size. */
  kernelSize: number;
  /** Stride of the convolution (both axes). Default 1. */
  strides?: number;
  /** `'same'` (default) or `'valid'`, as tfjs's conv2d. */
  padding?: (typeof CONV_BN_PADDINGS)[number];
  /** `'relu'` (default) or `'linear'`, applied after the residual is added. */
  activation?: (typeof CONV_BN_ACTIVATIONS)[number];
  /**
   * When true the layer takes `[x, shortcut]` and adds the shortcut (of the output's shape)
   * before the activation: the end of a residual block. Default false.
   */
  residual?: boolean;
  /** Moving-average momentum, tfjs's convention (0.9 = PyTorch's 0.1). Default 0.99 (tfjs's). */
  momentum?: number;
  /** Added to the variance. Default 1e-3 (tfjs's). */
  epsilon?: number;
  /** Default glorotUniform, as tfjs's conv2d. */
  kernelInitializer?: InitializerLike;
  /** Default 'ones'. */
  gammaInitializer?: InitializerLike;
  /**
   * Name prefix of the kernel weight (`<convName>/kernel`). Default: tfjs's scoped name.
   * (Serialized as `{ name }`: tfjs camel-cases string values of a layer config when it loads a
   * model, except under keys called `name`.)
   */
  convName?: string | { name: string };
  /** Name prefix of the batch-norm weights (`<bnName>/gamma`, ...). Default: tfjs's scoped name. */
  bnName?: string | { name: string };
}

/** A weight-name prefix given as a string or as its serialized `{ name }` form. */
function weightPrefix(argument: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const name = typeof value === 'object' ? (value as { name?: unknown }).name : value;
  if (typeof name !== 'string' || name.length === 0) return validate.fail(argument, 'a non-empty string or { name: string }', value);
  return name;
}

function resolveInitializer(argument: string, value: unknown, fallback: () => WeightInitializer): WeightInitializer {
  if (value === undefined || value === null) return fallback();
  if (value === 'zeros') return tf.initializers.zeros();
  if (value === 'ones') return tf.initializers.ones();
  if (value instanceof tf.serialization.Serializable && typeof (value as WeightInitializer).apply === 'function') {
    return value as WeightInitializer;
  }
  if (typeof value === 'object' && typeof (value as { className?: unknown }).className === 'string') {
    const { className, config } = value as { className: string; config?: tf.serialization.ConfigDict };
    const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
    if (entry) return entry[1](entry[0], config ?? {}) as unknown as WeightInitializer;
  }
  return validate.fail(argument, "an initializer, 'zeros', 'ones' or a serialized {className, config}", value);
}

function serializeInitializer(init: WeightInitializer): tf.serialization.ConfigDict {
  return { className: init.getClassName(), config: init.getConfig() };
}

/** Output size of a convolution along one axis, as tfjs computes it. */
function convOutputSize(size: number | null, kernel: number, stride: number, padding: 'same' | 'valid'): number | null {
  if (size === null) return null;
  return padding === 'same' ? Math.ceil(size / stride) : Math.ceil((size - kernel + 1) / stride);
}

/**
 * `y = act(batchNorm(conv2d(x)) (+ shortcut))`: NHWC input [B, H, W, Cin] (and the shortcut
 * [B, outH, outW, filters] when `residual`) to [B, outH, outW, filters]. The convolution has no
 * bias (the batch norm's beta replaces it). With `{ training: true }` batch norm uses the
 * batch's statistics and updates the moving averages as tfjs's BatchNormalization does;
 * otherwise it uses the moving averages.
 */
export class ConvBatchNorm extends tf.layers.Layer {
  /** The name tfjs stores in a saved model's topology. */
  static className = 'ConvBatchNorm';
  readonly filters: number;
  readonly kernelSize: number;
  readonly strides: number;
  readonly padding: 'same' | 'valid';
  readonly activation: 'relu' | 'linear';
  readonly residual: boolean;
  readonly momentum: number;
  readonly epsilon: number;
  readonly convName: string | undefined;
  readonly bnName: string | undefined;
  private readonly kernelInitializer: WeightInitializer;
  private readonly gammaInitializer: WeightInitializer;
  private kernel: tf.LayerVariable | null = null;
  private gamma: tf.LayerVariable | null = null;
  private beta: tf.LayerVariable | null = null;
  private movingMean: tf.LayerVariable | null = null;
  private movingVariance: tf.LayerVariable | null = null;

  constructor(args: ConvBatchNormArgs) {
    if (args === null || typeof args !== 'object') validate.fail('args', 'an arguments object', args);
    const {
      filters,
      kernelSize,
      strides,
      padding,
      activation,
      residual,
      momentum,
      epsilon,
      kernelInitializer,
      gammaInitializer,
      convName,
      bnName,
      ...layerArgs
    } = args;
    super(layerArgs);
    this.filters = validate.integer('args.filters', filters, 1, 2 ** 31 - 1);
    this.kernelSize = validate.integer('args.kernelSize', kernelSize, 1, 2 ** 31 - 1);
    this.strides = strides === undefined ? 1 : validate.integer('args.strides', strides, 1, 2 ** 31 - 1);
    this.padding = padding === undefined ? 'same' : validate.oneOf('args.padding', padding, CONV_BN_PADDINGS);
    this.activation = activation === undefined ? 'relu' : validate.oneOf('args.activation', activation, CONV_BN_ACTIVATIONS);
    this.residual = residual === undefined ? false : validate.boolean('args.residual', residual);
    this.momentum = momentum === undefined ? 0.99 : validate.number('args.momentum', momentum, { ge: 0, le: 1 });
    this.epsilon = epsilon === undefined ? 1e-3 : validate.number('args.epsilon', epsilon, { gt: 0 });
    this.convName = weightPrefix('args.convName', convName);
    this.bnName = weightPrefix('args.bnName', bnName);
    this.kernelInitializer = resolveInitializer('args.kernelInitializer', kernelInitializer, () => tf.initializers.glorotUniform({}));
    this.gammaInitializer = resolveInitializer('args.gammaInitializer', gammaInitializer, () => tf.initializers.ones());
  }

  /** [x shape, shortcut shape] or the x shape, checked against this layer's arguments. */
  private inputShapes(inputShape: tf.Shape | tf.Shape[]): { x: tf.Shape; shortcut: tf.Shape | null } {
    const nested = Array.isArray(inputShape[0]);
    const shapes = (nested ? inputShape : [inputShape]) as tf.Shape[];
    if (shapes.length !== (this.residual ? 2 : 1)) {
      throw new InvalidArgumentError(
        `${this.name} inputs`,
        this.residual ? '[x, shortcut] (residual: true)' : 'one input (residual: false)',
        `${shapes.length} inputs`,
      );
    }
    const x = shapes[0];
    if (x.length !== 4) throw new InvalidArgumentError(`${this.name} input`, 'rank 4 (NHWC)', `shape [${x.join(', ')}]`);
    return { x, shortcut: this.residual ? shapes[1] : null };
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const { x, shortcut } = this.inputShapes(inputShape);
    const out: tf.Shape = [
      x[0],
      convOutputSize(x[1], this.kernelSize, this.strides, this.padding),
      convOutputSize(x[2], this.kernelSize, this.strides, this.padding),
      this.filters,
    ];
    if (shortcut && !shortcut.every((d, i) => d === null || out[i] === null || d === out[i])) {
      throw new InvalidArgumentError(`${this.name} shortcut`, `shape [${out.join(', ')}] (the output's)`, `shape [${shortcut.join(', ')}]`);
    }
    return out;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const { x } = this.inputShapes(inputShape);
    const inChannels = x[3];
    if (inChannels === null) throw new InvalidArgumentError(`${this.name} input`, 'a known channel count', 'null');
    const named = (weight: tf.LayerVariable, prefix: string | undefined, suffix: string) => {
      // The plain composition's name, so weight files move between fused and plain encoders.
      if (prefix !== undefined) (weight as { originalName: string }).originalName = `${prefix}/${suffix}`;
      return weight;
    };
    const k = this.kernelSize;
    this.kernel = named(this.addWeight('kernel', [k, k, inChannels, this.filters], 'float32', this.kernelInitializer), this.convName, 'kernel');
    const perChannel = [this.filters];
    this.gamma = named(this.addWeight('gamma', perChannel, 'float32', this.gammaInitializer), this.bnName, 'gamma');
    this.beta = named(this.addWeight('beta', perChannel, 'float32', tf.initializers.zeros()), this.bnName, 'beta');
    this.movingMean = named(
      this.addWeight('moving_mean', perChannel, 'float32', tf.initializers.zeros(), undefined, false),
      this.bnName,
      'moving_mean',
    );
    this.movingVariance = named(
      this.addWeight('moving_variance', perChannel, 'float32', tf.initializers.ones(), undefined, false),
      this.bnName,
      'moving_variance',
    );
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: tf.serialization.ConfigDict): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const training = kwargs?.training === true;
    return tf.tidy(() => {
      const result = convBatchNorm(
        {
          x: list[0] as tf.Tensor4D,
          filter: this.kernel!.read() as tf.Tensor4D,
          gamma: this.gamma!.read() as tf.Tensor1D,
          beta: this.beta!.read() as tf.Tensor1D,
          movingMean: this.movingMean!.read() as tf.Tensor1D,
          movingVariance: this.movingVariance!.read() as tf.Tensor1D,
          residual: this.residual ? (list[1] as tf.Tensor4D) : null,
        },
        {
          strides: this.strides,
          padding: this.padding,
          epsilon: this.epsilon,
          momentum: this.momentum,
          relu: this.activation === 'relu',
          training,
        },
      );
      if (result.movingMean && result.movingVariance) {
        this.movingMean!.write(result.movingMean);
        this.movingVariance!.write(result.movingVariance);
      }
      return result.y;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      filters: this.filters,
      kernelSize: this.kernelSize,
      strides: this.strides,
      padding: this.padding,
      activation: this.activation,
      residual: this.residual,
      momentum: this.momentum,
      epsilon: this.epsilon,
      kernelInitializer: serializeInitializer(this.kernelInitializer),
      gammaInitializer: serializeInitializer(this.gammaInitializer),
      ...(this.convName === undefined ? {} : { convName: { name: this.convName } }),
      ...(this.bnName === undefined ? {} : { bnName: { name: this.bnName } }),
    };
  }
}
tf.serialization.registerClass(ConvBatchNorm);
