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
};
