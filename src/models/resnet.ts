/**
 * ResNet encoders built with tfjs layers: images [B, H, W, C] -> features [B, featureDim],
 * taken after global average pooling (no classifier).
 *
 * Conventions (documented once here):
 * - ResNet v1.5 as in torchvision: in a bottleneck block the stride sits on the 3x3 conv.
 * - Shortcuts are identities unless the shape changes, then a 1x1 conv + BN projection
 *   ("option B" of He et al. 2016), also for the small CIFAR ResNets.
 * - Convs have no bias (a BN follows) and He-normal weights with variance 2 / fan_out.
 * - BatchNorm momentum 0.9 (Keras convention: moving = 0.9 * moving + 0.1 * batch, i.e.
 *   PyTorch's momentum 0.1) and epsilon 1e-5.
 * - Padding is tfjs `'same'`: output sizes equal torchvision's (ceil(H / stride)), but a
 *   stride-2 layer on an even input pads one pixel more at the bottom/right than at the
 *   top/left, where torchvision pads symmetrically.
 * - Layer names are fixed (`stem_conv`, `stage2_block1_conv1`, `stage2_block1_shortcut_bn`,
 *   `global_pool`, ...) so weights map by name between builds and checkpoints.
 * - By default (`fused: true`) each conv + BN (+ residual add) (+ ReLU) is one
 *   {@link ConvBatchNorm} layer (`stem_convbn`, `stage2_block1_convbn1`, ...) whose weights keep
 *   the plain layers' names (`stem_conv/kernel`, `stem_bn/gamma`, ...): a fused and a plain
 *   encoder of the same architecture load each other's weights.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { heNormalFanOut, LayerSeeds, MAX_SEED, type WeightInitializer } from './initializers';
import { ConvBatchNorm } from './layers';

/** Every encoder architecture {@link createEncoder} builds. */
export const ENCODER_ARCHS = [
  'resnet8',
  'resnet20',
  'resnet32',
  'resnet56',
  'resnet18',
  'resnet34',
  'resnet50',
  'resnet101',
  'resnet200',
] as const;

/** Name of an encoder architecture. */
export type EncoderArch = (typeof ENCODER_ARCHS)[number];

/** The input stem: the layers before the first residual stage. */
export const ENCODER_STEMS = ['cifar', 'imagenet'] as const;

/**
 * `'imagenet'`: 7x7 conv stride 2 + BN + ReLU + 3x3 max-pool stride 2 (4x downsampling).
 * `'cifar'`: 3x3 conv stride 1 + BN + ReLU, no pooling, for 28-32 px inputs.
 */
export type EncoderStem = (typeof ENCODER_STEMS)[number];

/** Options of {@link createEncoder}. */
export interface EncoderOptions {
  /** Architecture; see {@link ENCODER_ARCHS}. */
  arch: EncoderArch;
  /**
   * Input stem. Default: `'cifar'` for resnet8/20/32/56 (as He et al. define them) and
   * `'imagenet'` for resnet18 and deeper.
   */
  stem?: EncoderStem;
  /**
   * Multiplies every channel count (stem, stages and hence the feature dimension);
   * scaled counts are rounded to the nearest integer, at least 1. Default 1.
   */
  widthMultiplier?: number;
  /** Shape of one image, [height, width, channels]. */
  inputShape: [number, number, number];
  /**
   * Start the last BN of every residual block with gamma = 0, so each block begins as
   * the identity (Goyal et al. 2017). Default false.
   */
  zeroInitResidual?: boolean;
  /** uint32 seed: two builds with the same seed have identical weights. Default: random. */
  seed?: number;
  /**
   * Build conv + BN (+ residual) (+ ReLU) as fused {@link ConvBatchNorm} layers (native kernels on
   * tfjs's cpu backend, tfjs ops elsewhere) rather than separate tfjs layers. Same weights and
   * names either way. Default true.
   */
  fused?: boolean;
}

/** The block layout of one architecture. */
export interface ResNetLayout {
  block: 'basic' | 'bottleneck';
  /** Residual blocks in each stage. */
  blocksPerStage: readonly number[];
  /** Base width of each stage before the width multiplier (bottleneck outputs are 4x). */
  stageWidths: readonly number[];
  /** The stem used when the options give none. */
  defaultStem: EncoderStem;
}

/** Output channels of a bottleneck block relative to its inner width. */
export const BOTTLENECK_EXPANSION = 4;

const SMALL_WIDTHS = [16, 32, 64] as const;
const LARGE_WIDTHS = [64, 128, 256, 512] as const;

/** Block layout of every architecture, keyed by name. */
export const RESNET_LAYOUTS: Readonly<Record<EncoderArch, ResNetLayout>> = {
  resnet8: { block: 'basic', blocksPerStage: [1, 1, 1], stageWidths: SMALL_WIDTHS, defaultStem: 'cifar' },
  resnet20: { block: 'basic', blocksPerStage: [3, 3, 3], stageWidths: SMALL_WIDTHS, defaultStem: 'cifar' },
  resnet32: { block: 'basic', blocksPerStage: [5, 5, 5], stageWidths: SMALL_WIDTHS, defaultStem: 'cifar' },
  resnet56: { block: 'basic', blocksPerStage: [9, 9, 9], stageWidths: SMALL_WIDTHS, defaultStem: 'cifar' },
  resnet18: { block: 'basic', blocksPerStage: [2, 2, 2, 2], stageWidths: LARGE_WIDTHS, defaultStem: 'imagenet' },
  resnet34: { block: 'basic', blocksPerStage: [3, 4, 6, 3], stageWidths: LARGE_WIDTHS, defaultStem: 'imagenet' },
  resnet50: { block: 'bottleneck', blocksPerStage: [3, 4, 6, 3], stageWidths: LARGE_WIDTHS, defaultStem: 'imagenet' },
  resnet101: { block: 'bottleneck', blocksPerStage: [3, 4, 23, 3], stageWidths: LARGE_WIDTHS, defaultStem: 'imagenet' },
  resnet200: { block: 'bottleneck', blocksPerStage: [3, 24, 36, 3], stageWidths: LARGE_WIDTHS, defaultStem: 'imagenet' },
};

/** {@link EncoderOptions} with every default filled in, as the builder uses them. */
export interface ResolvedEncoderOptions {
  arch: EncoderArch;
  stem: EncoderStem;
  widthMultiplier: number;
  inputShape: [number, number, number];
  zeroInitResidual: boolean;
  seed: number | undefined;
  fused: boolean;
}

const ENCODER_OPTION_KEYS = ['arch', 'stem', 'widthMultiplier', 'inputShape', 'zeroInitResidual', 'seed', 'fused'] as const;

/**
 * Validates encoder options and fills in defaults.
 * @throws InvalidArgumentError naming the bad option (e.g. `options.widthMultiplier`).
 */
export function resolveEncoderOptions(options: unknown, argument = 'options'): ResolvedEncoderOptions {
  if (options === undefined) validate.fail(argument, 'an options object', options);
  const raw = validate.options(argument, options, ENCODER_OPTION_KEYS);
  const arch = validate.oneOf(`${argument}.arch`, raw.arch, ENCODER_ARCHS);
  const stem =
    raw.stem === undefined ? RESNET_LAYOUTS[arch].defaultStem : validate.oneOf(`${argument}.stem`, raw.stem, ENCODER_STEMS);
  const widthMultiplier =
    raw.widthMultiplier === undefined ? 1 : validate.number(`${argument}.widthMultiplier`, raw.widthMultiplier, { gt: 0 });
  const inputShape = validate.shape(`${argument}.inputShape`, raw.inputShape, [3]) as [number, number, number];
  const zeroInitResidual =
    raw.zeroInitResidual === undefined ? false : validate.boolean(`${argument}.zeroInitResidual`, raw.zeroInitResidual);
  const seed = raw.seed === undefined ? undefined : validate.integer(`${argument}.seed`, raw.seed, 0, MAX_SEED);
  const fused = raw.fused === undefined ? true : validate.boolean(`${argument}.fused`, raw.fused);
  return { arch, stem, widthMultiplier, inputShape: [...inputShape], zeroInitResidual, seed, fused };
}

/** A base channel count scaled by the width multiplier: rounded, at least 1. */
export function scaleChannels(channels: number, widthMultiplier: number): number {
  return Math.max(1, Math.round(channels * widthMultiplier));
}

/**
 * Length of the feature vector an encoder outputs: the last stage's width times the
 * multiplier (times 4 for bottleneck architectures).
 * @throws InvalidArgumentError for an unknown arch or a widthMultiplier <= 0.
 */
export function encoderFeatureDim(arch: EncoderArch, widthMultiplier = 1): number {
  const checkedArch = validate.oneOf('arch', arch, ENCODER_ARCHS);
  const multiplier = validate.number('widthMultiplier', widthMultiplier, { gt: 0 });
  const layout = RESNET_LAYOUTS[checkedArch];
  const lastWidth = scaleChannels(layout.stageWidths[layout.stageWidths.length - 1], multiplier);
  return layout.block === 'bottleneck' ? lastWidth * BOTTLENECK_EXPANSION : lastWidth;
}

/** BatchNorm momentum (Keras convention) and epsilon of every encoder; see the module comment. */
const BN_MOMENTUM = 0.9;
const BN_EPSILON = 1e-5;

/** Builds the layers of one encoder; keeps the seed sequence and the shared settings. */
class ResNetBuilder {
  private readonly seeds: LayerSeeds;

  constructor(private readonly opts: ResolvedEncoderOptions) {
    this.seeds = new LayerSeeds(opts.seed);
  }

  /** The next layer's He-normal kernel initializer (seeds are drawn in conv order). */
  nextInitializer(): WeightInitializer {
    return heNormalFanOut(this.seeds.next());
  }

  /**
   * conv (named `<prefix>_conv<suffix>`) + BN (`<prefix>_bn<suffix>`) + the shortcut when given
   * + ReLU when `relu`: one ConvBatchNorm layer (`<prefix>_convbn<suffix>`) when fused, else the
   * plain layers (the add named `<prefix>_add`, the ReLU `<prefix>_relu<suffix>` or, after a
   * shortcut, `<prefix>_out`).
   */
  unit(
    x: tf.SymbolicTensor,
    prefix: string,
    suffix: string,
    filters: number,
    kernelSize: number,
    strides: number,
    opts: { relu: boolean; shortcut?: tf.SymbolicTensor; zeroGamma?: boolean; kernelInitializer?: WeightInitializer },
  ): tf.SymbolicTensor {
    const convName = `${prefix}_conv${suffix}`;
    const bnName = `${prefix}_bn${suffix}`;
    const kernelInitializer = opts.kernelInitializer ?? this.nextInitializer();
    if (this.opts.fused) {
      const layer = new ConvBatchNorm({
        name: `${prefix}_convbn${suffix}`,
        filters,
        kernelSize,
        strides,
        padding: 'same',
        activation: opts.relu ? 'relu' : 'linear',
        residual: opts.shortcut !== undefined,
        momentum: BN_MOMENTUM,
        epsilon: BN_EPSILON,
        kernelInitializer,
        gammaInitializer: opts.zeroGamma ? 'zeros' : 'ones',
        convName,
        bnName,
      });
      return layer.apply(opts.shortcut ? [x, opts.shortcut] : x) as tf.SymbolicTensor;
    }
    let y = this.conv(x, convName, filters, kernelSize, strides, kernelInitializer);
    y = this.batchNorm(y, bnName, opts.zeroGamma);
    if (opts.shortcut) {
      y = tf.layers.add({ name: `${prefix}_add` }).apply([y, opts.shortcut]) as tf.SymbolicTensor;
      return opts.relu ? this.relu(y, `${prefix}_out`) : y;
    }
    return opts.relu ? this.relu(y, `${prefix}_relu${suffix}`) : y;
  }

  conv(
    x: tf.SymbolicTensor,
    name: string,
    filters: number,
    kernelSize: number,
    strides: number,
    kernelInitializer: WeightInitializer,
  ): tf.SymbolicTensor {
    return tf.layers
      .conv2d({
        name,
        filters,
        kernelSize,
        strides,
        padding: 'same',
        useBias: false,
        kernelInitializer,
      })
      .apply(x) as tf.SymbolicTensor;
  }

  batchNorm(x: tf.SymbolicTensor, name: string, zeroGamma = false): tf.SymbolicTensor {
    return tf.layers
      .batchNormalization({
        name,
        axis: -1,
        momentum: BN_MOMENTUM,
        epsilon: BN_EPSILON,
        gammaInitializer: zeroGamma ? 'zeros' : 'ones',
      })
      .apply(x) as tf.SymbolicTensor;
  }

  relu(x: tf.SymbolicTensor, name: string): tf.SymbolicTensor {
    return tf.layers.reLU({ name }).apply(x) as tf.SymbolicTensor;
  }

  stem(x: tf.SymbolicTensor, width: number): tf.SymbolicTensor {
    const imagenet = this.opts.stem === 'imagenet';
    let y = this.unit(x, 'stem', '', width, imagenet ? 7 : 3, imagenet ? 2 : 1, { relu: true });
    if (imagenet) {
      y = tf.layers.maxPooling2d({ name: 'stem_pool', poolSize: 3, strides: 2, padding: 'same' }).apply(y) as tf.SymbolicTensor;
    }
    return y;
  }

  /** 1x1 conv + BN when the block changes resolution or channel count, else the identity. */
  shortcut(x: tf.SymbolicTensor, prefix: string, inChannels: number, outChannels: number, stride: number): tf.SymbolicTensor {
    if (stride === 1 && inChannels === outChannels) return x;
    return this.unit(x, `${prefix}_shortcut`, '', outChannels, 1, stride, { relu: false });
  }

  /** Two 3x3 convs; the stride sits on the first. Output has `width` channels. */
  basicBlock(x: tf.SymbolicTensor, prefix: string, inChannels: number, width: number, stride: number): tf.SymbolicTensor {
    const y = this.unit(x, prefix, '1', width, 3, stride, { relu: true });
    const kernelInitializer = this.nextInitializer();  // conv2 draws its seed before the shortcut's
    const shortcut = this.shortcut(x, prefix, inChannels, width, stride);
    return this.unit(y, prefix, '2', width, 3, 1, { relu: true, shortcut, zeroGamma: this.opts.zeroInitResidual, kernelInitializer });
  }

  /** 1x1 reduce, 3x3 (strided), 1x1 expand to `width * 4` channels. */
  bottleneckBlock(x: tf.SymbolicTensor, prefix: string, inChannels: number, width: number, stride: number): tf.SymbolicTensor {
    const outChannels = width * BOTTLENECK_EXPANSION;
    let y = this.unit(x, prefix, '1', width, 1, 1, { relu: true });
    y = this.unit(y, prefix, '2', width, 3, stride, { relu: true });
    const kernelInitializer = this.nextInitializer();
    const shortcut = this.shortcut(x, prefix, inChannels, outChannels, stride);
    return this.unit(y, prefix, '3', outChannels, 1, 1, {
      relu: true,
      shortcut,
      zeroGamma: this.opts.zeroInitResidual,
      kernelInitializer,
    });
  }

  build(): tf.LayersModel {
    const { arch, widthMultiplier, inputShape } = this.opts;
    const layout = RESNET_LAYOUTS[arch];
    const input = tf.input({ shape: inputShape, name: 'image' });
    const stemWidth = scaleChannels(layout.stageWidths[0], widthMultiplier);
    let x = this.stem(input, stemWidth);
    let channels = stemWidth;
    layout.blocksPerStage.forEach((blocks, stageIndex) => {
      const width = scaleChannels(layout.stageWidths[stageIndex], widthMultiplier);
      for (let b = 0; b < blocks; b++) {
        // The first block of every stage but the first halves the resolution.
        const stride = stageIndex > 0 && b === 0 ? 2 : 1;
        const prefix = `stage${stageIndex + 1}_block${b + 1}`;
        if (layout.block === 'basic') {
          x = this.basicBlock(x, prefix, channels, width, stride);
          channels = width;
        } else {
          x = this.bottleneckBlock(x, prefix, channels, width, stride);
          channels = width * BOTTLENECK_EXPANSION;
        }
      }
    });
    const features = tf.layers.globalAveragePooling2d({ name: 'global_pool' }).apply(x) as tf.SymbolicTensor;
    return tf.model({ inputs: input, outputs: features, name: 'encoder' });
  }
}

/**
 * Builds a ResNet encoder mapping images [B, H, W, C] to features [B, featureDim]
 * (see {@link encoderFeatureDim}). Conventions are listed at the top of this module.
 * @throws InvalidArgumentError naming the bad option.
 */
export function createEncoder(options: EncoderOptions): tf.LayersModel {
  return buildEncoder(options, 'options');
}

/** {@link createEncoder} with errors naming `argument` (e.g. `options.encoder`). */
export function buildEncoder(options: unknown, argument: string): tf.LayersModel {
  return new ResNetBuilder(resolveEncoderOptions(options, argument)).build();
}
