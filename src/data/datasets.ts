/**
 * The dataset registry: which image datasets exist, where their files live, and a loader that
 * returns any of them in one typed, NHWC uint8 form.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths';
import * as validate from '../validate';
import { DatasetError } from './errors';
import { readIdxImages, readIdxLabels } from './idx';
import { readCifarSplit, type CifarVariant } from './cifar';
import { IMAGE_FOLDER_OPTION_KEYS, loadImageFolder, type ImageFolderOptions } from './image_folder';
import { InvalidArgumentError } from '../errors';

/** The datasets with fixed files and a registry entry ({@link DATASETS}). */
export const BUILTIN_DATASET_NAMES = ['fashion-mnist-mini', 'fashion-mnist', 'mnist', 'cifar10', 'cifar100'] as const;
export type BuiltinDatasetName = (typeof BUILTIN_DATASET_NAMES)[number];

/**
 * The names {@link loadDataset} accepts: the built-in datasets and `'image-folder'`, a folder of
 * one's own images in the torchvision ImageFolder layout (see `loadImageFolder`).
 */
export const DATASET_NAMES = [...BUILTIN_DATASET_NAMES, 'image-folder'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

/** The two splits every dataset has. */
export const SPLITS = ['train', 'test'] as const;
export type Split = (typeof SPLITS)[number];

/** Per-channel statistics of a dataset's training images, on the [0, 1] pixel scale. */
export interface Normalization {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** What is known about a built-in dataset before loading it. */
export interface DatasetInfo {
  readonly name: BuiltinDatasetName;
  readonly height: number;
  readonly width: number;
  readonly channels: 1 | 3;
  readonly numClasses: number;
  readonly classNames: readonly string[];
  /** Records per split in the full dataset. */
  readonly counts: Readonly<Record<Split, number>>;
  /** Mean and std of the training images, for {@link normalize}. */
  readonly normalization: Normalization;
  /** Where the files are looked for when no `dataDir` is given; undefined: `dataDir` is required. */
  readonly defaultDir?: string;
  /** How to obtain the files; part of every error about them. */
  readonly hint: string;
}

/**
 * Pixels that stay on disk and are read record by record: the split of an image folder whose
 * decoded cache is larger than the memory allowed for it (see `loadImageFolder`).
 */
export interface ImageStore {
  /** Bytes per record: height * width * channels. */
  readonly recordBytes: number;
  /** Records in the store. */
  readonly count: number;
  /**
   * Copies the records `indices` (each in [0, count)), in that order, into `out`
   * (`indices.length * recordBytes` bytes).
   * @throws {@link InvalidArgumentError} for an index out of range or an `out` of another size.
   * @throws {@link DatasetError} when the file cannot be read.
   */
  read(indices: ArrayLike<number>, out: Uint8Array): void;
  /** A store of some of these records, in the given order; nothing is copied. */
  subset(indices: ArrayLike<number>): ImageStore;
}

/** A loaded split of a dataset. Images are NHWC uint8, labels int32 in [0, numClasses). */
export interface ImageDataset {
  readonly name: DatasetName;
  readonly split: Split;
  /**
   * `count * height * width * channels` bytes, NHWC, 0 = black; empty when `store` is set
   * (read pixels through `readImages` to handle both).
   */
  readonly images: Uint8Array;
  /** Where the pixels are when they stay on disk (a split too large for memory); else absent. */
  readonly store?: ImageStore;
  /** One class index per image. */
  readonly labels: Int32Array;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: 1 | 3;
  readonly numClasses: number;
  readonly classNames: readonly string[];
  readonly normalization: Normalization;
  /** The folder the files were read from. */
  readonly source: string;
}

/** Options of {@link loadDataset}. */
export interface LoadDatasetOptions extends Omit<ImageFolderOptions, 'split'> {
  /** Folder holding the dataset's files; overrides the default location (required for 'image-folder'). */
  dataDir?: string;
  /** Which split (default 'train'). */
  split?: Split;
  /** CIFAR-100 only: the 100 fine classes (default) or the 20 coarse superclasses. */
  labels?: 'fine' | 'coarse';
}

const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;

/** CIFAR-100 fine classes in label order (alphabetical, as in the archive's meta file). */
export const CIFAR100_FINE_CLASSES: readonly string[] = (
  'apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can ' +
  'castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin ' +
  'elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster ' +
  'man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck ' +
  'pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk ' +
  'skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger ' +
  'tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm'
).split(' ');

/** CIFAR-100 coarse superclasses in label order. */
export const CIFAR100_COARSE_CLASSES: readonly string[] = (
  'aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices ' +
  'household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes ' +
  'large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees ' +
  'vehicles_1 vehicles_2'
).split(' ');

/** Debian's `dataset-fashion-mnist` package installs the four files here. */
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

const FASHION_MNIST_HINT =
  `Fix: install Debian's package (apt-get install dataset-fashion-mnist, files in ${DEBIAN_FASHION_MNIST_DIR}) ` +
  'or download the four *-ubyte.gz files from the zalandoresearch/fashion-mnist repository on GitHub and pass ' +
  'their folder as dataDir (--data-dir)';

// Statistics of each full training split, measured on the [0, 1] scale (see test/data/datasets.test.ts).
const FASHION_NORMALIZATION: Normalization = { mean: [0.286], std: [0.353] };

/** The registry. */
export const DATASETS: Readonly<Record<BuiltinDatasetName, DatasetInfo>> = {
  'fashion-mnist-mini': {
    name: 'fashion-mnist-mini',
    height: 28,
    width: 28,
    channels: 1,
    numClasses: 10,
    classNames: FASHION_CLASSES,
    counts: { train: 10_000, test: 2_000 },
    normalization: FASHION_NORMALIZATION,
    hint:
      'Fix: the subset ships with supcon-native in data/fashion-mnist-mini; reinstall the package, or rebuild it ' +
      'with `npx tsx scripts/make-fashion-mnist-mini.ts` (needs apt-get install dataset-fashion-mnist)',
  },
  'fashion-mnist': {
    name: 'fashion-mnist',
    height: 28,
    width: 28,
    channels: 1,
    numClasses: 10,
    classNames: FASHION_CLASSES,
    counts: { train: 60_000, test: 10_000 },
    normalization: FASHION_NORMALIZATION,
    defaultDir: DEBIAN_FASHION_MNIST_DIR,
    hint: FASHION_MNIST_HINT,
  },
  mnist: {
    name: 'mnist',
    height: 28,
    width: 28,
    channels: 1,
    numClasses: 10,
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    counts: { train: 60_000, test: 10_000 },
    normalization: { mean: [0.1307], std: [0.3081] },
    hint:
      'Fix: download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and ' +
      't10k-labels-idx1-ubyte.gz (the MNIST database) into one folder and pass it as dataDir (--data-dir)',
  },
  cifar10: {
    name: 'cifar10',
    height: 32,
    width: 32,
    channels: 3,
    numClasses: 10,
    classNames: CIFAR10_CLASSES,
    counts: { train: 50_000, test: 10_000 },
    normalization: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
    hint:
      'Fix: download and unpack the CIFAR-10 binary version (cifar-10-binary.tar.gz) and pass the folder holding ' +
      'cifar-10-batches-bin/ (or the .bin files themselves) as dataDir (--data-dir)',
  },
  cifar100: {
    name: 'cifar100',
    height: 32,
    width: 32,
    channels: 3,
    numClasses: 100,
    classNames: CIFAR100_FINE_CLASSES,
    counts: { train: 50_000, test: 10_000 },
    normalization: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] },
    hint:
      'Fix: download and unpack the CIFAR-100 binary version (cifar-100-binary.tar.gz) and pass the folder holding ' +
      'cifar-100-binary/ (or train.bin and test.bin themselves) as dataDir (--data-dir)',
  },
};

/**
 * The registry entry of a built-in dataset.
 * @throws {@link InvalidArgumentError} for an unknown name, or for 'image-folder', whose size,
 *   channels and classes depend on the folder (load it, or read a run's `dataset.json`).
 */
export function datasetInfo(name: BuiltinDatasetName): DatasetInfo {
  if ((name as string) === 'image-folder') {
    validate.fail('name', `a built-in dataset (${BUILTIN_DATASET_NAMES.join(', ')}); an image folder is described by loading it`, name);
  }
  return DATASETS[validate.oneOf('name', name, BUILTIN_DATASET_NAMES)];
}

/** The folder of the Fashion-MNIST subset shipped inside the package. */
export function embeddedDataDir(): string {
  return join(packageRoot(), 'data', 'fashion-mnist-mini');
}

/**
 * Loads one split of a dataset into memory.
 *
 * ```ts
 * const train = await loadDataset('fashion-mnist-mini');                 // shipped, no download
 * const test = await loadDataset('cifar10', { dataDir: '/data', split: 'test' });
 * ```
 * @throws {@link InvalidArgumentError} for an unknown name or option.
 * @throws {@link DatasetError} naming the file when one is missing, truncated or inconsistent,
 *   with a hint on how to get the data.
 */
export async function loadDataset(name: DatasetName, options: LoadDatasetOptions = {}): Promise<ImageDataset> {
  validate.oneOf('name', name, DATASET_NAMES);
  const opts = validate.options('options', options, ['dataDir', 'split', 'labels', ...IMAGE_FOLDER_OPTION_KEYS]);
  const split = opts.split === undefined ? 'train' : validate.oneOf('options.split', opts.split, SPLITS);
  if (name === 'image-folder') {
    if (opts.labels !== undefined) validate.fail('options.labels', "no 'labels' option (only cifar100 has fine and coarse labels)", opts.labels);
    if (opts.dataDir === undefined) {
      throw new InvalidArgumentError('options.dataDir', 'the folder of the images (--data-dir) for dataset image-folder', 'none');
    }
    const { dataDir, labels: _labels, ...folderOptions } = opts as LoadDatasetOptions;
    return loadImageFolder(validate.string('options.dataDir', dataDir), { ...folderOptions, split });
  }
  for (const key of IMAGE_FOLDER_OPTION_KEYS) {
    if (opts[key] !== undefined) validate.fail(`options.${key}`, `no '${key}' option (only dataset image-folder has it)`, opts[key]);
  }
  const info = datasetInfo(name);
  const labelKind = opts.labels === undefined ? 'fine' : validate.oneOf('options.labels', opts.labels, ['fine', 'coarse'] as const);
  if (opts.labels !== undefined && name !== 'cifar100') {
    validate.fail('options.labels', "no 'labels' option (only cifar100 has fine and coarse labels)", opts.labels);
  }
  let dir: string;
  if (opts.dataDir !== undefined) dir = validate.string('options.dataDir', opts.dataDir);
  else if (name === 'fashion-mnist-mini') dir = embeddedDataDir();
  else if (info.defaultDir !== undefined) dir = info.defaultDir;
  else throw new DatasetError('(no dataDir given)', `${name} has no default location`, info.hint);

  if (name === 'cifar10' || name === 'cifar100') return loadCifar(info, name, dir, split, labelKind);
  return loadIdxDataset(info, dir, split);
}

/** MNIST-family file names of a split, most common spelling first. */
function idxCandidates(split: Split, kind: 'images' | 'labels'): string[] {
  const prefix = split === 'train' ? 'train' : 't10k';
  const suffix = kind === 'images' ? 'idx3-ubyte' : 'idx1-ubyte';
  return [`${prefix}-${kind}-${suffix}.gz`, `${prefix}-${kind}-${suffix}`, `${prefix}-${kind}.${suffix}`];
}

function findFile(dir: string, names: readonly string[], hint: string): string {
  const paths = names.map((n) => join(dir, n));
  const found = paths.find((p) => existsSync(p));
  if (found === undefined) throw new DatasetError(paths.join(' or '), 'no such file', hint);
  return found;
}

async function loadIdxDataset(info: DatasetInfo, dir: string, split: Split): Promise<ImageDataset> {
  const imagesPath = findFile(dir, idxCandidates(split, 'images'), info.hint);
  const labelsPath = findFile(dir, idxCandidates(split, 'labels'), info.hint);
  const images = await readIdxImages(imagesPath, info.hint);
  const labels = await readIdxLabels(labelsPath, info.hint);
  if (images.height !== info.height || images.width !== info.width) {
    throw new DatasetError(
      imagesPath,
      `expected ${info.height}x${info.width} images for ${info.name} but the file holds ${images.height}x${images.width}`,
      info.hint,
    );
  }
  if (labels.length !== images.count) {
    throw new DatasetError(
      labelsPath,
      `holds ${labels.length} labels but ${imagesPath} holds ${images.count} images`,
      info.hint,
    );
  }
  checkLabelRange(labels, info.numClasses, labelsPath, info.hint);
  return {
    ...describeDataset(info),
    split,
    images: images.pixels,
    labels,
    count: images.count,
    source: dir,
  };
}

async function loadCifar(
  info: DatasetInfo,
  variant: CifarVariant,
  dir: string,
  split: Split,
  labelKind: 'fine' | 'coarse',
): Promise<ImageDataset> {
  const records = await readCifarSplit(dir, variant, split, info.hint);
  const coarse = variant === 'cifar100' && labelKind === 'coarse';
  return {
    ...describeDataset(info),
    ...(coarse ? { numClasses: CIFAR100_COARSE_CLASSES.length, classNames: CIFAR100_COARSE_CLASSES } : {}),
    split,
    images: records.images,
    labels: coarse ? records.coarseLabels! : records.labels,
    count: records.count,
    source: dir,
  };
}

function describeDataset(info: DatasetInfo): Omit<ImageDataset, 'split' | 'images' | 'labels' | 'count' | 'source'> {
  const { name, height, width, channels, numClasses, classNames, normalization } = info;
  return { name, height, width, channels, numClasses, classNames, normalization };
}

function checkLabelRange(labels: Int32Array, numClasses: number, path: string, hint: string): void {
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] < 0 || labels[i] >= numClasses) {
      throw new DatasetError(path, `label ${labels[i]} at record ${i} is outside [0, ${numClasses - 1}]`, hint);
    }
  }
}

/**
 * A dataset made of some records of another, in the given order (e.g. a class-balanced subset).
 * Per-record file paths (an image folder's `paths`) follow their records.
 * @throws {@link InvalidArgumentError} when an index is out of range.
 */
export function subsetDataset<D extends ImageDataset>(dataset: D, indices: ArrayLike<number>): D {
  const recordBytes = dataset.height * dataset.width * dataset.channels;
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const r = validate.integer(`indices[${i}]`, indices[i], 0, dataset.count - 1);
    labels[i] = dataset.labels[r];
  }
  const paths = (dataset as { paths?: readonly string[] }).paths;
  const perRecord = Array.isArray(paths) ? { paths: Array.from(indices, (r) => paths[r]) } : {};
  // A split on disk stays on disk: the subset is a view of the same file.
  if (dataset.store !== undefined) return { ...dataset, ...perRecord, store: dataset.store.subset(indices), labels, count: indices.length };
  const images = new Uint8Array(indices.length * recordBytes);
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    images.set(dataset.images.subarray(r * recordBytes, (r + 1) * recordBytes), i * recordBytes);
  }
  return { ...dataset, ...perRecord, images, labels, count: indices.length };
}

/**
 * The uint8 pixels of the records `indices` of a split, NHWC, in that order, wherever they are
 * (in memory or in a {@link ImageStore}). `out` (optional) receives them.
 * @throws {@link InvalidArgumentError} for an index out of range or an `out` of another size.
 */
export function readImages(dataset: ImageDataset, indices: ArrayLike<number>, out?: Uint8Array): Uint8Array {
  const recordBytes = dataset.height * dataset.width * dataset.channels;
  const bytes = out ?? new Uint8Array(indices.length * recordBytes);
  if (bytes.length !== indices.length * recordBytes) {
    throw new InvalidArgumentError('out', `Uint8Array of length ${indices.length * recordBytes}`, `length ${bytes.length}`);
  }
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    if (!Number.isInteger(r) || r < 0 || r >= dataset.count) validate.fail(`indices[${i}]`, `integer in [0, ${dataset.count - 1}]`, r);
  }
  if (dataset.store !== undefined) {
    dataset.store.read(indices, bytes);
    return bytes;
  }
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    bytes.set(dataset.images.subarray(r * recordBytes, (r + 1) * recordBytes), i * recordBytes);
  }
  return bytes;
}

/**
 * Indices of the first `perClass` records of each class, kept in file order: a deterministic,
 * class-balanced subset.
 * @throws {@link InvalidArgumentError} when some class has fewer than `perClass` records.
 */
export function firstPerClass(labels: Int32Array, numClasses: number, perClass: number): Int32Array {
  validate.integer('numClasses', numClasses, 1);
  validate.integer('perClass', perClass, 0);
  const taken = new Int32Array(numClasses);
  const picked: number[] = [];
  for (let i = 0; i < labels.length && picked.length < numClasses * perClass; i++) {
    const c = labels[i];
    if (c >= 0 && c < numClasses && taken[c] < perClass) {
      taken[c]++;
      picked.push(i);
    }
  }
  const short = taken.findIndex((n) => n < perClass);
  if (short >= 0) {
    validate.fail('perClass', `at most ${taken[short]} (the records of class ${short})`, perClass);
  }
  return Int32Array.from(picked);
}
