/**
 * The schema of a run directory, shared by training, evaluation and progress display without
 * importing the training loop: the files a run writes ({@link RUN_FILES}, beside the
 * checkpoint's `CHECKPOINT_FILES`), the contents of its state.json ({@link TrainingState}) and
 * how to read it, and what a running run reports to its callbacks.
 */
import type { SavedQueueInfo } from './queue';
import { join } from 'node:path';
import { CHECKPOINT_FILES, readCheckpointJson } from './checkpoint';
import { resolveTrainConfig, type TrainConfig } from './config';
import { CheckpointError } from './errors';
import type { EpochRecord, ResultRecord } from './metrics';
import { RUN_DATASET_FILE, type DataHooks } from './run_dataset';
import { TENSORBOARD_DIR } from './tensorboard';

/** Files of a run directory besides the checkpoint's (`CHECKPOINT_FILES`). */
export const RUN_FILES = Object.freeze({
  metrics: 'metrics.jsonl',
  result: 'result.json',
  linearClassifier: 'linear',
  robustness: 'robustness.json',
  dataset: RUN_DATASET_FILE,
  tensorboard: TENSORBOARD_DIR,
});

/** Format tag of state.json. */
export const STATE_FORMAT = 'supcon-training-state';

/** Contents of a checkpoint's state.json. */
export interface TrainingState {
  format: typeof STATE_FORMAT;
  version: 1;
  config: TrainConfig;
  /** Epochs completed. */
  epoch: number;
  /** Next batch of epoch `epoch` (0 at an epoch boundary; > 0 after an interrupted epoch). */
  batch: number;
  /** Optimizer steps taken. */
  step: number;
  stepsPerEpoch: number;
  /** Processes of the data-parallel run that saved it (absent: 1); a resume needs as many. */
  worldSize?: number;
  /** Size of the training and test sets the run used (checked on resume). */
  trainCount: number;
  testCount: number;
  /** Where the random streams stand: they are derived from (seed, epoch, batch). */
  rng: { seed: number; epoch: number; batch: number; shuffle: string; augmentation: string };
  /** Sums over the steps already taken in an interrupted epoch. */
  partialEpoch: { lossSum: number; steps: number; seconds: number; images: number };
  /** Records of the completed epochs. */
  metrics: EpochRecord[];
  /** True once every pre-training epoch is done. */
  pretrainingDone: boolean;
  /** The memory queue's layout when `config.queueSize` > 0; its rows are in queue.bin. */
  queue?: SavedQueueInfo;
  /** The final evaluation, once done. */
  result?: ResultRecord;
  savedAt: string;
}

/** One optimizer step, as reported to {@link TrainCallbacks.onStep}. */
export interface StepInfo {
  /** 0-based epoch. */
  epoch: number;
  /** 0-based batch within the epoch. */
  batch: number;
  stepsPerEpoch: number;
  /** Steps taken in total, this one included. */
  step: number;
  loss: number;
  lr: number;
  /** Throughput of this epoch so far. */
  imagesPerSecond: number;
  /** Seconds this step took. */
  seconds: number;
}

/** What a run reports at its start. */
export interface StartInfo {
  config: TrainConfig;
  outDir: string;
  resumed: boolean;
  /** 0-based epoch and batch the run starts at. */
  epoch: number;
  batch: number;
  stepsPerEpoch: number;
  trainCount: number;
  testCount: number;
  parameters: number;
  /** Names of the native tfjs kernels in use ([] when none). */
  fastKernels: string[];
  /** The augmentation preset the run uses (`'auto'` resolved), or `'custom'` for explicit options. */
  augmentation: string;
  /** Processes of a data-parallel run (1: one process); each step's batch is split across them. */
  worldSize: number;
}

/** Hooks for progress display (and image-folder decoding); all optional. */
export interface TrainCallbacks extends DataHooks {
  onStart?(info: StartInfo): void;
  onEpochStart?(epoch: number, firstBatch: number, stepsPerEpoch: number): void;
  onStep?(info: StepInfo): void;
  onEpochEnd?(record: EpochRecord): void;
  /** A phase that takes a while without steps: 'knn', 'checkpoint', 'linear-eval', 'test'. */
  onPhase?(phase: 'knn' | 'checkpoint' | 'linear-eval' | 'test', detail?: string): void;
}

/**
 * Reads and checks a run's state.json.
 * @throws {@link CheckpointError} when it is missing, corrupt, or of another format.
 */
export async function readTrainingState(dir: string): Promise<TrainingState> {
  const path = join(dir, CHECKPOINT_FILES.state);
  const json = await readCheckpointJson(path);
  if (json.format !== STATE_FORMAT) {
    throw new CheckpointError(path, `has format ${JSON.stringify(json.format)} but '${STATE_FORMAT}' was expected`);
  }
  for (const key of ['epoch', 'batch', 'step', 'stepsPerEpoch', 'trainCount', 'testCount'] as const) {
    const v = json[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new CheckpointError(path, `'${key}' is not a non-negative integer`);
  }
  if (json.worldSize !== undefined && (typeof json.worldSize !== 'number' || !Number.isInteger(json.worldSize) || json.worldSize < 1)) {
    throw new CheckpointError(path, `'worldSize' is not a positive integer (the processes of the run that saved it)`);
  }
  const config = json.config as Record<string, unknown> | undefined;
  // Runs saved before the config had `augment` and `views` fields trained with the paper's recipe
  // and two views per image.
  if (config !== null && typeof config === 'object') {
    if (config.augment === undefined) config.augment = 'paper';
    if (config.views === undefined) config.views = 2;
  }
  try {
    resolveTrainConfig(json.config as Partial<TrainConfig>, 'config');
  } catch (e) {
    throw new CheckpointError(path, `holds an invalid config: ${(e as Error).message}`);
  }
  return json as unknown as TrainingState;
}
