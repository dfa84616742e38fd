/**
 * ImageFolder datasets: one's own images in torchvision's ImageFolder layout,
 *
 *     DIR/train/<class>/<image>      training images, one subfolder per class
 *     DIR/test/<class>/<image>       test images (DIR/val/... is accepted too)
 *
 * or `DIR/<class>/<image>` (or only `DIR/train/...`) with a `valSplit` fraction of every class
 * held out as the test split. Classes are the sorted names of the training subfolders; images
 * may sit in nested folders below their class folder. Hidden files and folders (names
 * starting with '.') and files without an image extension are ignored.
 *
 * Images are decoded once (see `images.ts`) into a cache file of uint8 pixels in
 * `DIR/.supcon-cache/` (never inside a class folder; in the user's cache folder when DIR is not
 * writable), keyed by each file's path, size and modification time. A split whose pixels exceed
 * `maxMemoryBytes` is not loaded: its batches are read from the cache file as training asks.
 *
 * Records are ordered round-robin over the classes (the first image of every class, then the
 * second, ...), so any prefix of a split (`limitTrain`, the kNN monitor's bank) is class-balanced.
 */
import { createHash } from 'node:crypto';
import { constants, accessSync, closeSync, mkdirSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { homedir, totalmem } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { InvalidArgumentError } from '../errors';
import * as validate from '../validate';
import type { ImageDataset, Normalization, Split } from './datasets';
import { DatasetError } from './errors';
import { CacheFileStore, readCacheRecords, syncImageCache, type CacheSourceFile } from './image_cache';
import { CACHE_DIR_NAME, IMAGE_FORMATS, isImageFile, type DecodeProgress } from './images';
import { Rng } from './rng';

/** Options of {@link loadImageFolder}. */
export interface ImageFolderOptions {
  /** Which split (default 'train'). */
  split?: Split;
  /** Side of the square images in pixels: the shorter side is resized to it, then center-cropped (default 32). */
  imageSize?: number;
  /** 1 (grayscale) or 3 (RGB, default). */
  channels?: 1 | 3;
  /**
   * Fraction in (0, 1) of every class's training images held out as the test split, for a
   * folder without a test/ folder (then required; not allowed with one). The held-out images
   * are a fixed function of the file list (the same for every run and every seed).
   */
  valSplit?: number;
  /** Make an unreadable image an error instead of a skipped file with a warning (default false). */
  strict?: boolean;
  /** Folder for the cache file (default: `DIR/.supcon-cache`, or the user's cache folder when DIR is read-only). */
  cacheDir?: string;
  /**
   * Most bytes of pixels a split may occupy in memory; a larger split is read from the cache
   * file batch by batch (default: a quarter of the machine's memory, at most 2 GiB).
   */
  maxMemoryBytes?: number;
  /** Progress of decoding (only files that are not cached yet are decoded). */
  onProgress?: (progress: DecodeProgress) => void;
  /** Receives each warning (an unreadable image, its summary); default: written to stderr. */
  onWarning?: (message: string) => void;
}

/** The keys of {@link ImageFolderOptions} besides `split`. */
export const IMAGE_FOLDER_OPTION_KEYS = [
  'imageSize',
  'channels',
  'valSplit',
  'strict',
  'cacheDir',
  'maxMemoryBytes',
  'onProgress',
  'onWarning',
] as const;

/** Default side of image-folder images. */
export const DEFAULT_IMAGE_SIZE = 32;

/** A file that could not be used. */
export interface SkippedImage {
  /** Absolute path. */
  path: string;
  reason: string;
}

/** A split of an image folder: an {@link ImageDataset} plus where every record came from. */
export interface ImageFolderDataset extends ImageDataset {
  readonly name: 'image-folder';
  /** Absolute path of every record's file, in record order. */
  readonly paths: readonly string[];
  /** Unreadable images of this split that were left out. */
  readonly skipped: readonly SkippedImage[];
  /** The cache file the pixels come from. */
  readonly cacheFile: string;
}

/** One image file of the layout. */
export interface ImageFolderFile extends CacheSourceFile {
  /** Class index (into the layout's classNames). */
  label: number;
}

/** What {@link scanImageFolder} found. */
export interface ImageFolderLayout {
  /** Absolute path of DIR. */
  root: string;
  /** Sorted names of the training class folders. */
  classNames: string[];
  /** Training images, sorted by path. */
  train: ImageFolderFile[];
  /** Test images, or null when there is no test folder. */
  test: ImageFolderFile[] | null;
  /** The folder the training classes are in (DIR/train or DIR) and the test folder, if any. */
  trainDir: string;
  testDir: string | null;
}

const LAYOUT_HINT =
  'Fix: arrange the images as DIR/train/<class>/<image> and DIR/test/<class>/<image> (or DIR/<class>/<image> with --val-split)';

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() === true;
}

/** Non-hidden subfolders and files of a folder, sorted. */
async function entriesOf(dir: string): Promise<{ dirs: string[]; files: string[] }> {
  const dirs: string[] = [];
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    const folder = entry.isDirectory() || (entry.isSymbolicLink() && (await isDirectory(path)));
    (folder ? dirs : files).push(entry.name);
  }
  return { dirs: dirs.sort(byName), files: files.sort(byName) };
}

/** Image files below `dir`, recursively, with their stats. */
async function imagesBelow(root: string, dir: string, label: number, out: ImageFolderFile[]): Promise<void> {
  const { dirs, files } = await entriesOf(dir);
  for (const name of files) {
    if (!isImageFile(name)) continue;
    const path = join(dir, name);
    const info = await stat(path);
    out.push({ path, relativePath: relative(root, path).split(sep).join('/'), size: info.size, mtimeMs: info.mtimeMs, label });
  }
  for (const name of dirs) await imagesBelow(root, join(dir, name), label, out);
}

/** The class folders of `dir` and their images; errors for the bad layouts. */
async function scanClasses(root: string, dir: string, what: string, classNames?: string[]): Promise<{ classes: string[]; files: ImageFolderFile[] }> {
  const { dirs, files } = await entriesOf(dir);
  if (dirs.length === 0) {
    const images = files.filter(isImageFile).length;
    throw new DatasetError(
      dir,
      images > 0
        ? `holds ${images} image(s) but no class subfolders: the ${what} images must be in one subfolder per class (${what === 'training' ? 'train' : 'test'}/<class>/<image>)`
        : `has no class subfolders (the ${what} images go in one subfolder per class)`,
      LAYOUT_HINT,
    );
  }
  const out: ImageFolderFile[] = [];
  for (const name of dirs) {
    const label = classNames === undefined ? dirs.indexOf(name) : classNames.indexOf(name);
    if (label < 0) {
      throw new DatasetError(
        join(dir, name),
        `is a test class folder with no training folder of the same name (training classes: ${classNames!.join(', ')})`,
        'Fix: rename or remove the folder, or add training images of that class',
      );
    }
    const before = out.length;
    await imagesBelow(root, join(dir, name), label, out);
    if (out.length === before) {
      throw new DatasetError(join(dir, name), `is a class folder with no ${IMAGE_FORMATS} images`, 'Fix: add images to it or remove it');
    }
  }
  return { classes: dirs, files: out.sort((a, b) => byName(a.relativePath, b.relativePath)) };
}

/**
 * Finds the classes and image files of an ImageFolder directory without decoding anything.
 * @throws {@link DatasetError} naming the folder for every bad layout: no such folder, no class
 *   subfolders, images outside class folders, an empty class folder, a test class that has no
 *   training folder.
 */
export async function scanImageFolder(dir: string): Promise<ImageFolderLayout> {
  validate.string('dir', dir);
  const root = resolve(dir);
  if (!(await isDirectory(root))) throw new DatasetError(root, 'no such folder', LAYOUT_HINT);
  const hasTrain = await isDirectory(join(root, 'train'));
  const trainDir = hasTrain ? join(root, 'train') : root;
  let testDir: string | null = null;
  if (hasTrain) {
    if (await isDirectory(join(root, 'test'))) testDir = join(root, 'test');
    else if (await isDirectory(join(root, 'val'))) testDir = join(root, 'val');
  } else if ((await isDirectory(join(root, 'test'))) || (await isDirectory(join(root, 'val')))) {
    throw new DatasetError(root, 'has a test (or val) folder but no train folder', LAYOUT_HINT);
  }
  const train = await scanClasses(root, trainDir, 'training');
  const test = testDir === null ? null : await scanClasses(root, testDir, 'test', train.classes);
  return { root, classNames: train.classes, train: train.files, test: test === null ? null : test.files, trainDir, testDir };
}

/** Seed of the held-out choice of `valSplit`: fixed, so every run and command agrees on it. */
const VAL_SPLIT_SEED = 0x5eed_0f01;

/**
 * Splits training files into train and validation: per class, `round(n * fraction)` files
 * (at most n - 1) chosen by a fixed seeded permutation of the class's sorted files.
 */
function holdOut(files: readonly ImageFolderFile[], numClasses: number, fraction: number): { train: ImageFolderFile[]; test: ImageFolderFile[] } {
  const train: ImageFolderFile[] = [];
  const test: ImageFolderFile[] = [];
  for (let c = 0; c < numClasses; c++) {
    const of = files.filter((f) => f.label === c);
    const held = Math.min(Math.round(of.length * fraction), of.length - 1);
    const chosen = new Set(new Rng([VAL_SPLIT_SEED, c]).permutation(of.length).subarray(0, held));
    of.forEach((f, i) => (chosen.has(i) ? test : train).push(f));
  }
  const sort = (list: ImageFolderFile[]) => list.sort((a, b) => byName(a.relativePath, b.relativePath));
  return { train: sort(train), test: sort(test) };
}

/** Round-robin over classes: every prefix is as class-balanced as the files allow. */
function interleaveClasses<T extends { label: number }>(files: readonly T[], numClasses: number): T[] {
  const perClass: T[][] = Array.from({ length: numClasses }, () => []);
  for (const f of files) perClass[f.label].push(f);
  const out: T[] = [];
  for (let i = 0; out.length < files.length; i++) for (const list of perClass) if (i < list.length) out.push(list[i]);
  return out;
}

function defaultMaxMemory(): number {
  return Math.min(Math.floor(totalmem() / 4), 2 * 1024 ** 3);
}

/** Where the cache of `root` goes: DIR/.supcon-cache when writable, else the user's cache folder. */
function cacheFolder(root: string, cacheDir: string | undefined): string {
  const key = createHash('sha256').update(root).digest('hex').slice(0, 16);
  if (cacheDir !== undefined) return join(resolve(cacheDir), key);
  const beside = join(root, CACHE_DIR_NAME);
  try {
    mkdirSync(beside, { recursive: true });
    accessSync(beside, constants.W_OK);
    return beside;
  } catch {
    const base = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
    return join(base, 'supcon-native', key);
  }
}

/** Warnings already given in this process, so loading both splits warns once per file. */
const warned = new Set<string>();

const writeWarning = (message: string) => process.stderr.write(`supcon: warning: ${message}\n`);

/** Per-channel mean and std on the [0, 1] scale of up to 10,000 evenly spaced records. */
function channelStatistics(read: (slots: Int32Array, out: Uint8Array) => void, slots: Int32Array, recordBytes: number, channels: number): Normalization {
  const sample = Math.min(slots.length, 10_000);
  const picked = Int32Array.from({ length: sample }, (_, i) => slots[Math.floor((i * slots.length) / sample)]);
  const sum = new Float64Array(channels);
  const squares = new Float64Array(channels);
  const chunk = 256;
  const buffer = new Uint8Array(chunk * recordBytes);
  for (let start = 0; start < sample; start += chunk) {
    const part = picked.subarray(start, Math.min(start + chunk, sample));
    const bytes = buffer.subarray(0, part.length * recordBytes);
    read(part, bytes);
    for (let p = 0; p < bytes.length; p++) {
      const v = bytes[p] / 255;
      sum[p % channels] += v;
      squares[p % channels] += v * v;
    }
  }
  const n = (sample * recordBytes) / channels;
  const mean = Array.from(sum, (s) => s / n);
  // A constant channel would divide by zero: its std is floored at one grey level.
  const std = Array.from(squares, (q, c) => Math.max(Math.sqrt(Math.max(q / n - mean[c] ** 2, 0)), 1 / 255));
  return { mean: mean.map((m) => Number(m.toFixed(6))), std: std.map((s) => Number(s.toFixed(6))) };
}

/**
 * Loads one split of an image folder (layout, caching and ordering in the module notes).
 *
 * ```ts
 * const train = await loadImageFolder('photos', { imageSize: 64, valSplit: 0.1 });
 * const test = await loadImageFolder('photos', { imageSize: 64, valSplit: 0.1, split: 'test' });
 * ```
 * Both splits carry the training split's per-channel normalization.
 * @throws {@link InvalidArgumentError} for a bad option.
 * @throws {@link DatasetError} for a bad layout (see {@link scanImageFolder}), a folder without
 *   a test folder and no `valSplit`, a class left with no readable image, any unreadable image
 *   with `strict`, or a cache that cannot be written.
 */
export async function loadImageFolder(dir: string, options: ImageFolderOptions = {}): Promise<ImageFolderDataset> {
  validate.string('dir', dir);
  const o = validate.options('options', options, ['split', ...IMAGE_FOLDER_OPTION_KEYS]);
  const split = o.split === undefined ? 'train' : validate.oneOf('options.split', o.split, ['train', 'test'] as const);
  const imageSize = o.imageSize === undefined ? DEFAULT_IMAGE_SIZE : validate.integer('options.imageSize', o.imageSize, 1, 4096);
  const channels = o.channels === undefined ? 3 : validate.integer('options.channels', o.channels, 1, 3);
  if (channels === 2) validate.fail('options.channels', '1 or 3', channels);
  const valSplit = o.valSplit === undefined ? undefined : validate.number('options.valSplit', o.valSplit, { gt: 0, lt: 1 });
  const strict = o.strict === undefined ? false : validate.boolean('options.strict', o.strict);
  const cacheDir = o.cacheDir === undefined ? undefined : validate.string('options.cacheDir', o.cacheDir);
  const maxMemoryBytes = o.maxMemoryBytes === undefined ? defaultMaxMemory() : validate.integer('options.maxMemoryBytes', o.maxMemoryBytes, 0);
  for (const key of ['onProgress', 'onWarning'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'function') validate.fail(`options.${key}`, 'a function', o[key]);
  }
  const onProgress = o.onProgress as ImageFolderOptions['onProgress'];
  const onWarning = (o.onWarning as ImageFolderOptions['onWarning']) ?? writeWarning;

  const layout = await scanImageFolder(dir);
  const { root, classNames } = layout;
  if (layout.test === null && valSplit === undefined) {
    throw new DatasetError(
      root,
      'has no test folder (DIR/test/<class>/...)',
      'Fix: add one, or hold out part of the training images with valSplit (--val-split 0.1)',
    );
  }
  if (layout.test !== null && valSplit !== undefined) {
    throw new InvalidArgumentError('options.valSplit', `no value: ${root} has a test folder (${layout.testDir})`, `${valSplit}`);
  }
  const splits = layout.test === null ? holdOut(layout.train, classNames.length, valSplit!) : { train: layout.train, test: layout.test };

  const all = [...layout.train, ...(layout.test ?? [])].sort((a, b) => byName(a.relativePath, b.relativePath));
  const cacheFile = join(cacheFolder(root, cacheDir), `images-${imageSize}px-${channels}ch.cache`);
  const cache = await syncImageCache(cacheFile, all, { imageSize, channels: channels as 1 | 3 }, onProgress, root);
  let ownsFd = true;
  try {
    // Unreadable images: a warning per file (once per process), then a summary, or an error with strict.
    const unreadable = all.filter((f) => !cache.slots.get(f.relativePath)!.entry.ok);
    if (unreadable.length > 0) {
      const reasonOf = (f: ImageFolderFile) => cache.slots.get(f.relativePath)!.entry.reason ?? 'unreadable';
      if (strict) {
        throw new DatasetError(
          unreadable[0].path,
          `is not a readable ${IMAGE_FORMATS} image (${reasonOf(unreadable[0])})` +
            (unreadable.length > 1 ? `; ${unreadable.length - 1} more unreadable image(s) in ${root}` : ''),
          'Fix: replace or remove the file(s), or drop strict (--strict) to skip them',
        );
      }
      let fresh = 0;
      for (const f of unreadable) {
        const key = `${f.path}:${f.size}:${f.mtimeMs}`;
        if (warned.has(key)) continue;
        warned.add(key);
        fresh++;
        onWarning(`skipped unreadable image ${f.path}: ${reasonOf(f)}`);
      }
      if (fresh > 0) onWarning(`skipped ${unreadable.length} unreadable image(s) of ${all.length} in ${root}`);
    }
    const usable = (files: ImageFolderFile[]) => files.filter((f) => cache.slots.get(f.relativePath)!.entry.ok);
    const train = usable(splits.train);
    for (let c = 0; c < classNames.length; c++) {
      if (!train.some((f) => f.label === c)) {
        throw new DatasetError(
          join(layout.trainDir, classNames[c]),
          valSplit === undefined ? 'is a class folder with no readable image' : 'is a class folder with no readable image left for training',
          'Fix: add readable images to it or remove it',
        );
      }
    }
    const chosen = interleaveClasses(split === 'train' ? train : usable(splits.test), classNames.length);
    const slotsOf = (files: ImageFolderFile[]) => Int32Array.from(files, (f) => cache.slots.get(f.relativePath)!.slot);
    const slots = slotsOf(chosen);
    const recordBytes = cache.recordBytes;
    const read = (s: Int32Array, out: Uint8Array) => readCacheRecords(cache.fd, cacheFile, recordBytes, s, out);
    const normalization = channelStatistics(read, slotsOf(train), recordBytes, channels);

    let images = new Uint8Array(0);
    let store: CacheFileStore | undefined;
    if (slots.length * recordBytes <= maxMemoryBytes) {
      images = new Uint8Array(slots.length * recordBytes);
      read(slots, images);
    } else {
      store = CacheFileStore.open(cache.fd, cacheFile, recordBytes, slots);
      ownsFd = false;
    }
    const skippedFiles = (split === 'train' ? splits.train : splits.test).filter((f) => !cache.slots.get(f.relativePath)!.entry.ok);
    return {
      name: 'image-folder',
      split,
      images,
      ...(store ? { store } : {}),
      labels: Int32Array.from(chosen, (f) => f.label),
      count: chosen.length,
      height: imageSize,
      width: imageSize,
      channels: channels as 1 | 3,
      numClasses: classNames.length,
      classNames,
      normalization,
      source: root,
      paths: chosen.map((f) => f.path),
      skipped: skippedFiles.map((f) => ({ path: f.path, reason: cache.slots.get(f.relativePath)!.entry.reason ?? 'unreadable' })),
      cacheFile,
    };
  } finally {
    if (ownsFd) closeSync(cache.fd);
  }
}
