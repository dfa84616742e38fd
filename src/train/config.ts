/**
 * The configuration of a training run: one flat, JSON-serializable object (it is stored in
 * every checkpoint's state.json) with defaults sized for a 2-core CPU and the embedded
 * Fashion-MNIST subset.
 */
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import { checkAugmentSetting, DATASET_NAMES, DEFAULT_IMAGE_SIZE, type AugmentSetting, type DatasetName } from '../data';
import { ENCODER_ARCHS, ENCODER_STEMS, PROJECTION_HEAD_KINDS, type EncoderStem, type ProjectionHeadKind } from '../models';
import { OPTIMIZER_NAMES, type OptimizerName } from './optimizers';

/** Training methods: supervised contrastive, self-supervised contrastive, cross-entropy baseline. */
export const METHODS = ['supcon', 'simclr', 'ce'] as const;
export type Method = (typeof METHODS)[number];

/** Where the SupCon loss sums over positives: `'out'` (L_out, the paper's choice) or `'in'` (L_in). */
export const LOSS_VARIANTS = ['out', 'in'] as const;
export type LossVariant = (typeof LOSS_VARIANTS)[number];

/** Architecture names: the ResNets of `src/models`, or 'custom' for a caller-built encoder. */
export const ARCHS = [...ENCODER_ARCHS, 'custom'] as const;
export type Arch = (typeof ARCHS)[number];

/** Everything that defines a run. */
export interface TrainConfig {
  /** 'supcon' (labels), 'simclr' (no labels) or 'ce' (cross-entropy baseline). */
  method: Method;
  /** Dataset name (see `DATASET_NAMES`). */
  dataset: DatasetName;
  /** Folder of the dataset files (default: the dataset's usual location). */
  dataDir?: string;
  /** Use only the first N training images (default: all). */
  limitTrain?: number;
  /** Use only the first N test images (default: all). */
  limitTest?: number;
  /** Dataset 'image-folder' only: side of the square images in pixels (default 32). */
  imageSize?: number;
  /** Dataset 'image-folder' only: 1 (grayscale) or 3 (RGB) channels (default 3). */
  channels?: 1 | 3;
  /** Dataset 'image-folder' only: fraction of each class held out as the test split (folders without test/). */
  valSplit?: number;
  /** Dataset 'image-folder' only: an unreadable image is an error, not a skipped file (default false). */
  strict?: boolean;
  /**
   * Dataset 'image-folder' only: a labels CSV giving each training image a set of labels
   * (src/data/label_sets.ts; `path,label1;label2`): SupCon's positives are then the images
   * sharing a label. The folder classes stay the classes of kNN and linear evaluation.
   */
  labelsCsv?: string;
  /** Encoder architecture. */
  arch: Arch;
  /** Channel width multiplier of the encoder. */
  width: number;
  /** Encoder stem (default: the architecture's own). */
  stem?: EncoderStem;
  /** Projection head kind (contrastive methods). */
  projectionHead: ProjectionHeadKind;
  /** Length of the projection the loss sees. */
  projectionDim: number;
  /** Pre-training epochs. */
  epochs: number;
  /** Images per step (each gives `views` views in the contrastive methods). */
  batchSize: number;
  /**
   * Augmented views of each image per step in the contrastive methods. Default 1 for SupCon (its
   * positives are then the other images of the class in the batch; at an equal time budget one
   * view for 2E epochs beats the paper's two views for E epochs: `bench/results/sweep-views.json`)
   * and 2 for SimCLR, which needs at least 2 (its only positives are other views).
   * Cross-entropy uses 1.
   */
  views: number;
  /** 'sgd' (momentum) or 'lars'. */
  optimizer: OptimizerName;
  /** Peak learning rate (after warmup). */
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Epochs of linear warmup at the start of the cosine schedule. */
  warmupEpochs: number;
  /** Temperature of the SupCon / NT-Xent loss. */
  temperature: number;
  /**
   * Rows of the cross-batch memory queue (src/train/queue.ts): the last `queueSize` projected
   * rows of earlier steps, detached, are the loss's extra contrast set. 0 (default): none.
   * Contrastive methods only.
   */
  queueSize: number;
  /**
   * Gradient caching (src/train/grad_cache.ts): run the model over the views x batchSize rows in
   * chunks of this many rows, so peak memory follows the chunk, not the batch. 0 (default):
   * one pass over the whole batch. Contrastive methods only.
   */
  chunkSize: number;
  /** L_out or L_in (Khosla et al. 2020, eqs. 2 and 3; see docs/loss.md). */
  lossVariant: LossVariant;
  /**
   * Augmentation: `'auto'` (by the kind of images: `defaultAugmentPreset`), a preset name
   * (`AUGMENT_PRESET_NAMES`), or explicit `AugmentOptions`.
   */
  augment: AugmentSetting;
  /** Epochs of the linear classifier in linear evaluation. */
  linearEpochs: number;
  /** Peak learning rate of the linear classifier. */
  linearLr: number;
  /** Neighbours of the kNN monitor. */
  knnK: number;
  /** Temperature of the kNN monitor's vote weights. */
  knnTemperature: number;
  /** Training images forming the kNN monitor's bank (0 turns the monitor off). */
  knnBank: number;
  /** Test images the kNN monitor classifies (0 turns the monitor off). */
  knnQueries: number;
  /** Seed of the weights, shuffling and augmentation. */
  seed: number;
  /**
   * Data-parallel runs (mpirun -np K): batch norm over the whole global batch (moments averaged
   * across the processes) instead of each process's shard. Needs MPI; ConvBatchNorm encoders.
   */
  syncBatchNorm: boolean;
}

/**
 * Defaults of `supcon train` with no flags: SupCon on the embedded 10k-image Fashion-MNIST
 * subset with ResNet-8, chosen by the committed sweeps (`bench/sweeps.ts`, results in
 * `bench/results/sweep-*.json`) to maximize linear-evaluation accuracy within 5 minutes of
 * training and evaluation on a 2-core machine: 30 epochs of one view per image (flip only, the
 * `'auto'` preset for small grayscale images), batch 256, SGD lr 0.4 with 1 warmup epoch and a
 * cosine decay, temperature 0.1, an MLP projection head to 128.
 */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = Object.freeze({
  method: 'supcon',
  dataset: 'fashion-mnist-mini',
  arch: 'resnet8',
  width: 1,
  projectionHead: 'mlp',
  projectionDim: 128,
  epochs: 30,
  batchSize: 256,
  views: 1,
  optimizer: 'sgd',
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 1e-4,
  warmupEpochs: 1,
  temperature: 0.1,
  queueSize: 0,
  chunkSize: 0,
  lossVariant: 'out',
  augment: 'auto',
  linearEpochs: 30,
  linearLr: 0.1,
  knnK: 20,
  knnTemperature: 0.07,
  knnBank: 2000,
  knnQueries: 1000,
  seed: 0,
  syncBatchNorm: false,
} satisfies TrainConfig);

/**
 * Default peak learning rate of each optimizer at the default batch size. SGD: 0.4, from the
 * recipe sweep (`bench/results/sweep-recipe.json`, 30 epochs: lr 0.1 89.25%, 0.2 89.7%, 0.4
 * 91.1%; `sweep-recipe2.json`: 0.8 91.4%, within noise of 0.4, which is kept as the safer rate).
 * LARS multiplies its rate by the trust ratio (~1e-3 x ||w|| / ||g||), so it takes SimCLR's
 * square-root rule, 0.075 * sqrt(256) = 1.2.
 */
export const DEFAULT_LR: Readonly<Record<OptimizerName, number>> = Object.freeze({ sgd: 0.4, lars: 1.2 });

/** Keys of {@link TrainConfig}. */
export const TRAIN_CONFIG_KEYS = [
  'method',
  'dataset',
  'dataDir',
  'limitTrain',
  'limitTest',
  'imageSize',
  'channels',
  'valSplit',
  'strict',
  'labelsCsv',
  'arch',
  'width',
  'stem',
  'projectionHead',
  'projectionDim',
  'epochs',
  'batchSize',
  'views',
  'optimizer',
  'lr',
  'momentum',
  'weightDecay',
  'warmupEpochs',
  'temperature',
  'queueSize',
  'chunkSize',
  'lossVariant',
  'augment',
  'linearEpochs',
  'linearLr',
  'knnK',
  'knnTemperature',
  'knnBank',
  'knnQueries',
  'seed',
  'syncBatchNorm',
] as const satisfies ReadonlyArray<keyof TrainConfig>;

/**
 * Validates a partial config and fills in the defaults ({@link DEFAULT_TRAIN_CONFIG}; the
 * learning rate defaults per optimizer, {@link DEFAULT_LR}).
 * @throws InvalidArgumentError naming the field, e.g. `config.epochs`.
 */
export function resolveTrainConfig(config: Partial<TrainConfig> = {}, argument = 'config'): TrainConfig {
  const c = validate.options(argument, config, TRAIN_CONFIG_KEYS);
  const d = DEFAULT_TRAIN_CONFIG;
  const name = (key: string) => `${argument}.${key}`;
  const int = (key: keyof TrainConfig, min: number, max = Number.MAX_SAFE_INTEGER): number =>
    c[key] === undefined ? (d[key] as number) : validate.integer(name(key), c[key], min, max);
  const num = (key: keyof TrainConfig, range: { gt?: number; ge?: number; lt?: number; le?: number }): number =>
    c[key] === undefined ? (d[key] as number) : validate.number(name(key), c[key], range);
  const optimizer = c.optimizer === undefined ? d.optimizer : validate.oneOf(name('optimizer'), c.optimizer, OPTIMIZER_NAMES);
  const resolved: TrainConfig = {
    method: c.method === undefined ? d.method : validate.oneOf(name('method'), c.method, METHODS),
    dataset: c.dataset === undefined ? d.dataset : validate.oneOf(name('dataset'), c.dataset, DATASET_NAMES),
    arch: c.arch === undefined ? d.arch : validate.oneOf(name('arch'), c.arch, ARCHS),
    width: num('width', { gt: 0 }),
    projectionHead:
      c.projectionHead === undefined ? d.projectionHead : validate.oneOf(name('projectionHead'), c.projectionHead, PROJECTION_HEAD_KINDS),
    projectionDim: int('projectionDim', 1),
    epochs: int('epochs', 1),
    batchSize: int('batchSize', 2),
    views: c.views === undefined ? (c.method === 'simclr' ? 2 : d.views) : validate.integer(name('views'), c.views, 1, 16),
    optimizer,
    lr: c.lr === undefined ? DEFAULT_LR[optimizer] : validate.number(name('lr'), c.lr, { gt: 0 }),
    momentum: num('momentum', { ge: 0, lt: 1 }),
    weightDecay: num('weightDecay', { ge: 0 }),
    warmupEpochs: int('warmupEpochs', 0),
    // The loss's own rule (its float32 value and reciprocal finite and nonzero): refused here, up front.
    temperature: c.temperature === undefined ? d.temperature : validate.positiveFloat32(name('temperature'), c.temperature, { reciprocal: true }),
    queueSize: int('queueSize', 0, 2 ** 31 - 1),
    chunkSize: int('chunkSize', 0, 2 ** 31 - 1),
    lossVariant: c.lossVariant === undefined ? d.lossVariant : validate.oneOf(name('lossVariant'), c.lossVariant, LOSS_VARIANTS),
    augment: c.augment === undefined ? d.augment : checkAugmentSetting(name('augment'), c.augment),
    linearEpochs: int('linearEpochs', 1),
    linearLr: num('linearLr', { gt: 0 }),
    knnK: int('knnK', 1),
    knnTemperature: num('knnTemperature', { gt: 0 }),
    knnBank: int('knnBank', 0),
    knnQueries: int('knnQueries', 0),
    seed: int('seed', 0, 2 ** 32 - 1),
    syncBatchNorm: c.syncBatchNorm === undefined ? d.syncBatchNorm : validate.boolean(name('syncBatchNorm'), c.syncBatchNorm),
  };
  if (c.dataDir !== undefined) resolved.dataDir = validate.string(name('dataDir'), c.dataDir);
  if (c.limitTrain !== undefined) resolved.limitTrain = validate.integer(name('limitTrain'), c.limitTrain, 2);
  if (c.limitTest !== undefined) resolved.limitTest = validate.integer(name('limitTest'), c.limitTest, 1);
  if (c.stem !== undefined) resolved.stem = validate.oneOf(name('stem'), c.stem, ENCODER_STEMS);
  if (resolved.method === 'simclr' && resolved.views < 2) {
    throw new InvalidArgumentError(name('views'), "at least 2 with method 'simclr' (its only positives are other views)", `${resolved.views}`);
  }
  if (resolved.dataset === 'image-folder') {
    if (resolved.dataDir === undefined) {
      throw new InvalidArgumentError(name('dataDir'), "the image folder (--data-dir) for dataset 'image-folder'", 'none');
    }
    resolved.imageSize = c.imageSize === undefined ? DEFAULT_IMAGE_SIZE : validate.integer(name('imageSize'), c.imageSize, 8, 4096);
    const channels = c.channels === undefined ? 3 : validate.integer(name('channels'), c.channels, 1, 3);
    if (channels === 2) validate.fail(name('channels'), '1 or 3', channels);
    resolved.channels = channels as 1 | 3;
    if (c.valSplit !== undefined) resolved.valSplit = validate.number(name('valSplit'), c.valSplit, { gt: 0, lt: 1 });
    if (c.strict !== undefined) resolved.strict = validate.boolean(name('strict'), c.strict);
    if (c.labelsCsv !== undefined) resolved.labelsCsv = validate.string(name('labelsCsv'), c.labelsCsv);
  } else {
    for (const key of ['imageSize', 'channels', 'valSplit', 'strict', 'labelsCsv'] as const) {
      if (c[key] !== undefined) validate.fail(name(key), `no value (only dataset 'image-folder' has ${key})`, c[key]);
    }
  }
  if (resolved.method === 'ce' && resolved.queueSize > 0) {
    throw new InvalidArgumentError(name('queueSize'), "0 for method 'ce' (a queue feeds the contrastive loss)", `${resolved.queueSize}`);
  }
  if (resolved.method === 'ce' && resolved.chunkSize > 0) {
    throw new InvalidArgumentError(name('chunkSize'), "0 for method 'ce' (gradient caching serves the contrastive loss)", `${resolved.chunkSize}`);
  }
  if (resolved.warmupEpochs > resolved.epochs) {
    throw new InvalidArgumentError(
      name('warmupEpochs'),
      `an integer <= ${argument}.epochs (${resolved.epochs})`,
      `${resolved.warmupEpochs}`,
    );
  }
  return resolved;
}
