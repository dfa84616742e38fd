/**
 * The data side of a run: loading a split as the run's config says (built-in datasets and
 * image folders alike), and `dataset.json`, the description of the training data a run keeps
 * (image shape, classes, normalization) so that its checkpoint can be used, embedded and
 * exported without the data at hand.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { datasetInfo, loadDataset, type DatasetName, type DecodeProgress, type ImageDataset, type LoadDatasetOptions, type Normalization, type Split } from '../data';
import type { TrainConfig } from './config';
import { CheckpointError } from './errors';

/** Name of the description file in a run directory. */
export const RUN_DATASET_FILE = 'dataset.json';

/** What a run knows about its training data. */
export interface RunDatasetInfo {
  format: 'supcon-run-dataset';
  version: 1;
  /** Dataset name ('image-folder' for one's own images). */
  name: DatasetName;
  height: number;
  width: number;
  channels: 1 | 3;
  numClasses: number;
  classNames: string[];
  /** Per-channel mean and std on the [0, 1] scale that inputs are normalized with. */
  normalization: Normalization;
  /** The folder the data was read from. */
  source: string;
}

/** Hooks for the data-loading part of a command: decoding progress and warnings (unreadable images). */
export interface DataHooks {
  onDataProgress?(progress: DecodeProgress): void;
  onDataWarning?(message: string): void;
}

/** Options of `loadDataset` that a config implies: the folder, and for image folders the decoding. */
export function datasetOptions(config: TrainConfig, hooks: DataHooks = {}): Omit<LoadDatasetOptions, 'split'> {
  const options: Omit<LoadDatasetOptions, 'split'> = config.dataDir === undefined ? {} : { dataDir: config.dataDir };
  if (config.dataset === 'image-folder') {
    Object.assign(options, {
      ...(config.imageSize === undefined ? {} : { imageSize: config.imageSize }),
      ...(config.channels === undefined ? {} : { channels: config.channels }),
      ...(config.valSplit === undefined ? {} : { valSplit: config.valSplit }),
      ...(config.strict === undefined ? {} : { strict: config.strict }),
      ...(hooks.onDataProgress ? { onProgress: (p: DecodeProgress) => hooks.onDataProgress!(p) } : {}),
      ...(hooks.onDataWarning ? { onWarning: (m: string) => hooks.onDataWarning!(m) } : {}),
    });
  }
  return options;
}

/** Loads one split of the config's dataset (no limits applied). */
export async function loadConfigSplit(config: TrainConfig, split: Split, hooks: DataHooks = {}): Promise<ImageDataset> {
  return loadDataset(config.dataset, { split, ...datasetOptions(config, hooks) });
}

/** The description of a loaded training split. */
export function describeRunDataset(train: ImageDataset): RunDatasetInfo {
  return {
    format: 'supcon-run-dataset',
    version: 1,
    name: train.name,
    height: train.height,
    width: train.width,
    channels: train.channels,
    numClasses: train.numClasses,
    classNames: [...train.classNames],
    normalization: { mean: [...train.normalization.mean], std: [...train.normalization.std] },
    source: train.source,
  };
}

/** Writes `dataset.json` into a run directory. */
export async function writeRunDataset(dir: string, train: ImageDataset): Promise<void> {
  await writeFile(join(dir, RUN_DATASET_FILE), JSON.stringify(describeRunDataset(train), null, 2) + '\n');
}

/**
 * The training data of a run: its `dataset.json`, or for runs of built-in datasets written
 * before that file existed, the dataset registry.
 * @throws {@link CheckpointError} when the file is missing for an image-folder run, or corrupt.
 */
export async function readRunDataset(dir: string, config: TrainConfig): Promise<RunDatasetInfo> {
  const path = join(dir, RUN_DATASET_FILE);
  if (!existsSync(path)) {
    if (config.dataset === 'image-folder') throw new CheckpointError(path, 'no such file (an image-folder run keeps its classes and image size there)');
    const info = datasetInfo(config.dataset);
    return {
      format: 'supcon-run-dataset',
      version: 1,
      name: info.name,
      height: info.height,
      width: info.width,
      channels: info.channels,
      numClasses: info.numClasses,
      classNames: [...info.classNames],
      normalization: { mean: [...info.normalization.mean], std: [...info.normalization.std] },
      source: config.dataDir ?? info.defaultDir ?? '',
    };
  }
  let parsed: RunDatasetInfo;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8')) as RunDatasetInfo;
  } catch (e) {
    throw new CheckpointError(path, `not valid JSON (${(e as Error).message})`);
  }
  const ok =
    parsed?.format === 'supcon-run-dataset' &&
    [parsed.height, parsed.width, parsed.numClasses].every((v) => Number.isInteger(v) && v > 0) &&
    (parsed.channels === 1 || parsed.channels === 3) &&
    Array.isArray(parsed.classNames) &&
    parsed.classNames.length === parsed.numClasses &&
    Array.isArray(parsed.normalization?.mean) &&
    parsed.normalization.mean.length === parsed.channels &&
    Array.isArray(parsed.normalization?.std) &&
    parsed.normalization.std.length === parsed.channels;
  if (!ok) throw new CheckpointError(path, "is not a run's dataset description (format 'supcon-run-dataset')");
  return parsed;
}
