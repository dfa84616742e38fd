/**
 * The sweeps bench/sweep.ts runs: each is a base config and a list of runs that change a few
 * settings. The results (bench/results/sweep-<name>.json) chose the augmentation presets and the
 * defaults of the main job (src/data/augment.ts, src/train/config.ts); the README's recipe
 * section quotes them.
 */
import { NO_AUGMENTATION, type AugmentOptions, type TrainConfig } from '../src';

export interface SweepRun {
  id: string;
  config: Partial<TrainConfig>;
}

export interface Sweep {
  description: string;
  base: Partial<TrainConfig>;
  runs: SweepRun[];
  /** Summarize the spread (min / median / max) of the test accuracy per value of this setting. */
  spreadBy?: keyof TrainConfig;
}

/** Augmentation options with everything off except what is given. */
const only = (o: AugmentOptions): AugmentOptions => ({ ...NO_AUGMENTATION, ...o });

/** Short SupCon runs on the embedded subset, kNN monitor off (it costs time and does not change training). */
const SHORT_SUPCON: Partial<TrainConfig> = {
  method: 'supcon',
  dataset: 'fashion-mnist-mini',
  arch: 'resnet8',
  width: 1,
  epochs: 5,
  batchSize: 256,
  lr: 0.1,
  temperature: 0.1,
  knnBank: 0,
  knnQueries: 0,
  linearEpochs: 30,
  seed: 0,
};

/** Horizontal flips only. */
const FLIP = only({ flipProbability: 0.5 });
/** The translation + flip augmentation of the augment sweep, as explicit options. */
const PAD4_FLIP = only({ padding: 4, flipProbability: 0.5 });
/** pad4-flip plus random erasing with probability 0.5 (torchvision's area 2-33%, aspect 0.3-3.3). */
const PAD4_FLIP_ERASE = only({ padding: 4, flipProbability: 0.5, eraseProbability: 0.5 });

export const SWEEPS: Record<string, Sweep> = {
  augment: {
    description:
      'Augmentation for small grayscale images: SupCon, ResNet-8, 5 epochs, batch 256, lr 0.1, temperature 0.1, ' +
      'fashion-mnist-mini, linear evaluation (30 epochs)',
    base: SHORT_SUPCON,
    runs: [
      { id: 'paper', config: { augment: 'paper' } },
      { id: 'pad4-flip', config: { augment: only({ padding: 4, flipProbability: 0.5 }) } },
      { id: 'pad4-flip-erase0.5', config: { augment: only({ padding: 4, flipProbability: 0.5, eraseProbability: 0.5 }) } },
      { id: 'none', config: { augment: 'none' } },
      { id: 'flip', config: { augment: only({ flipProbability: 0.5 }) } },
      { id: 'pad2-flip', config: { augment: only({ padding: 2, flipProbability: 0.5 }) } },
      {
        id: 'pad4-flip-jitter',
        config: { augment: only({ padding: 4, flipProbability: 0.5, jitterProbability: 0.8, brightness: 0.4, contrast: 0.4 }) },
      },
      { id: 'crop0.6-flip', config: { augment: only({ cropScale: [0.6, 1], flipProbability: 0.5 }) } },
      { id: 'pad4', config: { augment: only({ padding: 4 }) } },
    ],
  },
  schedule: {
    description:
      'Learning rate, warmup and batch size: SupCon, ResNet-8, 5 epochs, temperature 0.1, pad4-flip augmentation, ' +
      'fashion-mnist-mini, linear evaluation (30 epochs)',
    base: { ...SHORT_SUPCON, augment: PAD4_FLIP },
    runs: [
      { id: 'b256-lr0.1-warm1', config: { lr: 0.1, warmupEpochs: 1 } },
      { id: 'b256-lr0.3-warm0', config: { lr: 0.3, warmupEpochs: 0 } },
      { id: 'b128-lr0.2-warm0', config: { batchSize: 128, lr: 0.2, warmupEpochs: 0 } },
      { id: 'b64-lr0.1-warm0', config: { batchSize: 64, lr: 0.1, warmupEpochs: 0 } },
      { id: 'b256-lr0.1-warm0', config: { lr: 0.1, warmupEpochs: 0 } },
      { id: 'b256-lr0.8-warm0', config: { lr: 0.8, warmupEpochs: 0 } },
      { id: 'b128-lr0.5-warm0', config: { batchSize: 128, lr: 0.5, warmupEpochs: 0 } },
      { id: 'b64-lr0.3-warm0', config: { batchSize: 64, lr: 0.3, warmupEpochs: 0 } },
    ],
  },
  views: {
    description:
      'Views per image at an equal number of images processed (about equal time): SupCon, ResNet-8, 2 views x 5 epochs ' +
      'vs 1 view x 10 epochs, batch 256, lr 0.1, temperature 0.1, fashion-mnist-mini, linear evaluation (30 epochs)',
    base: SHORT_SUPCON,
    runs: [
      { id: 'v1-e10-none', config: { views: 1, epochs: 10, augment: 'none' } },
      { id: 'v1-e10-flip', config: { views: 1, epochs: 10, augment: FLIP } },
      { id: 'v1-e10-pad4-flip', config: { views: 1, epochs: 10, augment: PAD4_FLIP } },
      { id: 'v2-e5-none', config: { views: 2, epochs: 5, augment: 'none' } },
      { id: 'v2-e5-flip', config: { views: 2, epochs: 5, augment: FLIP } },
      { id: 'v2-e5-pad4-flip', config: { views: 2, epochs: 5, augment: PAD4_FLIP } },
    ],
  },
  'epochs-augment': {
    description:
      'Augmentation at longer budgets, one view per image: SupCon, ResNet-8, batch 256, lr 0.1, temperature 0.1, ' +
      'fashion-mnist-mini, linear evaluation (30 epochs)',
    base: { ...SHORT_SUPCON, views: 1 },
    runs: [
      { id: 'e20-none', config: { epochs: 20, augment: 'none' } },
      { id: 'e20-flip', config: { epochs: 20, augment: FLIP } },
      { id: 'e20-pad2-flip', config: { epochs: 20, augment: only({ padding: 2, flipProbability: 0.5 }) } },
      { id: 'e20-pad4-flip', config: { epochs: 20, augment: PAD4_FLIP } },
      { id: 'e30-none', config: { epochs: 30, augment: 'none' } },
      { id: 'e30-flip', config: { epochs: 30, augment: FLIP } },
      { id: 'e30-pad4-flip', config: { epochs: 30, augment: PAD4_FLIP } },
      { id: 'e30-pad4-flip-erase', config: { epochs: 30, augment: PAD4_FLIP_ERASE } },
    ],
  },
  recipe: {
    description:
      'Learning rate, temperature, batch, width and projection head at 30 epochs: SupCon, ResNet-8, one view per ' +
      'image, flip augmentation, fashion-mnist-mini, linear evaluation (30 epochs); base: batch 256, lr 0.1, ' +
      'temperature 0.1, MLP head to 128 (the epochs-augment sweep\'s e30-flip)',
    base: { ...SHORT_SUPCON, views: 1, epochs: 30, augment: FLIP },
    runs: [
      { id: 'lr0.2', config: { lr: 0.2 } },
      { id: 'lr0.4', config: { lr: 0.4 } },
      { id: 'tau0.2', config: { temperature: 0.2 } },
      { id: 'tau0.5', config: { temperature: 0.5 } },
      { id: 'b128', config: { batchSize: 128 } },
      { id: 'b512-lr0.2', config: { batchSize: 512, lr: 0.2 } },
      { id: 'proj32', config: { projectionDim: 32 } },
      { id: 'head-linear', config: { projectionHead: 'linear' } },
      { id: 'tau0.05', config: { temperature: 0.05 } },
      { id: 'width2-e10', config: { width: 2, epochs: 10 } },
    ],
  },
  ce: {
    description: 'Cross-entropy with the same encoder, augmentation and epochs (30), learning rate: ResNet-8, flip, batch 256, fashion-mnist-mini',
    base: { ...SHORT_SUPCON, method: 'ce', epochs: 30, augment: FLIP },
    runs: [
      { id: 'lr0.05', config: { lr: 0.05 } },
      { id: 'lr0.1', config: { lr: 0.1 } },
      { id: 'lr0.2', config: { lr: 0.2 } },
      { id: 'lr0.4', config: { lr: 0.4 } },
      { id: 'lr0.8', config: { lr: 0.8 } },
    ],
  },
  recipe2: {
    description:
      'Larger learning rates, weight decay and stronger augmentation at 30 epochs: SupCon, ResNet-8, one view per image, ' +
      'batch 256, temperature 0.1, fashion-mnist-mini, linear evaluation (30 epochs)',
    base: { ...SHORT_SUPCON, views: 1, epochs: 30, augment: FLIP },
    runs: [
      { id: 'lr0.8', config: { lr: 0.8 } },
      { id: 'lr1.6', config: { lr: 1.6 } },
      { id: 'lr0.4-pad4-flip-erase', config: { lr: 0.4, augment: PAD4_FLIP_ERASE } },
      { id: 'lr0.8-pad4-flip-erase', config: { lr: 0.8, augment: PAD4_FLIP_ERASE } },
      { id: 'lr0.4-tau0.2', config: { lr: 0.4, temperature: 0.2 } },
      { id: 'lr0.4-wd5e-4', config: { lr: 0.4, weightDecay: 5e-4 } },
      { id: 'lr0.4-pad4-flip', config: { lr: 0.4, augment: PAD4_FLIP } },
    ],
  },
  stability: stabilitySweep(),
};

/**
 * The paper's stability claim (Khosla et al. 2020, section 4: SupCon's accuracy varies less than
 * cross-entropy's across optimizers and augmentations), at this machine's scale: both methods
 * with every optimizer (SGD with momentum 0.9 at lr 0.4, plain SGD at 10x that rate (the same
 * effective step), LARS at lr 1.2) and two augmentation strengths (the flip the main job uses,
 * the paper's ImageNet recipe), 5 epochs each (12 runs, about 10 minutes on a quiet 2-core
 * machine), one view per image for SupCon.
 */
function stabilitySweep(): Sweep {
  const optimizers: Array<[string, Partial<TrainConfig>]> = [
    ['sgd', { optimizer: 'sgd', lr: 0.4, momentum: 0.9 }],
    ['plain-sgd', { optimizer: 'sgd', lr: 4, momentum: 0 }],
    ['lars', { optimizer: 'lars', lr: 1.2, momentum: 0.9 }],
  ];
  const augmentations: Array<[string, TrainConfig['augment']]> = [
    ['flip', 'flip'],
    ['paper', 'paper'],
  ];
  const runs: SweepRun[] = [];
  for (const method of ['supcon', 'ce'] as const) {
    for (const [o, optimizer] of optimizers) {
      for (const [a, augment] of augmentations) runs.push({ id: `${method}-${o}-${a}`, config: { method, ...optimizer, augment } });
    }
  }
  return {
    description:
      'Stability over optimizers (SGD momentum 0.9 lr 0.4, plain SGD lr 4, LARS lr 1.2) and augmentation strengths ' +
      '(flip, the paper recipe): SupCon (one view) vs cross-entropy, ResNet-8, 5 epochs, batch 256, ' +
      'temperature 0.1, fashion-mnist-mini',
    base: { ...SHORT_SUPCON, views: 1, epochs: 5 },
    runs,
    spreadBy: 'method',
  };
}
