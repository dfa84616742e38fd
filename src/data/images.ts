/**
 * Image files -> fixed-size uint8 pixels, decoded and resized by sharp (libvips): JPEG, PNG,
 * WebP, GIF (first frame), AVIF and TIFF. Every image is turned upright by its EXIF orientation,
 * scaled so that its shorter side is `imageSize` and center-cropped to `imageSize` x
 * `imageSize` (torchvision's `Resize(s)` + `CenterCrop(s)`, with sharp's Lanczos-3 kernel),
 * then converted to 3 sRGB channels with any alpha channel dropped, or to 1 channel of
 * ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B on the sRGB values, as PIL's `convert('L')` and
 * this package's grayscale augmentation compute it).
 *
 * sharp is loaded on first use, so importing the package does not load libvips.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join, relative, sep } from 'node:path';
import * as validate from '../validate';
import { LUMA_WEIGHTS } from './augment';
import { DatasetError } from './errors';

/** File extensions (lower case) read as images. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.avif', '.tif', '.tiff'] as const;

/** The formats, for messages. */
export const IMAGE_FORMATS = 'JPEG, PNG, WebP, GIF, AVIF, TIFF';

/** Name of the cache folder the image-folder loader keeps next to the data; never read as images. */
export const CACHE_DIR_NAME = '.supcon-cache';

/** True for a file name with one of {@link IMAGE_EXTENSIONS} (any case). */
export function isImageFile(name: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());
}

/** How images are decoded: the square size and the channel count of the result. */
export interface DecodeOptions {
  /** Side of the square output in pixels (the shorter side is resized to it, then center-cropped). */
  imageSize: number;
  /** 1: grayscale (luma), 3: sRGB. */
  channels: 1 | 3;
}

/** Validates {@link DecodeOptions}, naming `argument` in errors. */
export function checkDecodeOptions(argument: string, options: unknown): DecodeOptions {
  const o = validate.options(argument, options, ['imageSize', 'channels']);
  const imageSize = validate.integer(`${argument}.imageSize`, o.imageSize, 1, 4096);
  const channels = validate.integer(`${argument}.channels`, o.channels, 1, 3);
  if (channels === 2) validate.fail(`${argument}.channels`, '1 or 3', channels);
  return { imageSize, channels: channels as 1 | 3 };
}

type SharpModule = typeof import('sharp');
let sharpModule: SharpModule | undefined;

function sharp(): SharpModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sharpModule ??= require('sharp') as SharpModule;
  return sharpModule;
}

/**
 * Decodes an image held in memory into `imageSize * imageSize * channels` bytes, HWC.
 * @throws Error (sharp's) when the bytes are not a readable image of a supported format.
 */
export async function decodeImageBuffer(data: Uint8Array, options: DecodeOptions): Promise<Uint8Array> {
  const { imageSize, channels } = options;
  // failOn 'warning' (sharp's default) rejects truncated and damaged files instead of returning grey.
  const { data: rgb, info } = await sharp()(data, { failOn: 'warning', pages: 1 })
    .rotate()
    .resize(imageSize, imageSize, { fit: 'cover', position: 'centre' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== imageSize || info.height !== imageSize || info.channels !== 3) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels} instead of ${imageSize}x${imageSize}x3`);
  }
  if (channels === 3) return new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  const gray = new Uint8Array(imageSize * imageSize);
  const [wr, wg, wb] = LUMA_WEIGHTS;
  for (let p = 0; p < gray.length; p++) gray[p] = Math.round(wr * rgb[3 * p] + wg * rgb[3 * p + 1] + wb * rgb[3 * p + 2]);
  return gray;
}

/**
 * Reads and decodes one image file (see the module's notes on resizing and channels).
 * @throws {@link DatasetError} naming the file when it cannot be read or decoded.
 */
export async function decodeImage(path: string, options: DecodeOptions): Promise<Uint8Array> {
  validate.string('path', path);
  const opts = checkDecodeOptions('options', options);
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (e) {
    throw new DatasetError(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message, 'Fix: check the path');
  }
  try {
    return await decodeImageBuffer(data, opts);
  } catch (e) {
    throw new DatasetError(path, `not a readable ${IMAGE_FORMATS} image (${firstLine(e)})`, 'Fix: replace or remove the file');
  }
}

/** The first line of an error's message. */
export function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/** Progress of a decoding pass. */
export interface DecodeProgress {
  /** Images decoded (or found unreadable) so far. */
  done: number;
  /** Images this pass decodes. */
  total: number;
  /** The folder (or file) the images come from. */
  source: string;
}

/** Options of {@link decodeImageFiles}. */
export interface DecodeFilesOptions extends DecodeOptions {
  /** Images decoded at once (default 4, the size of libuv's thread pool). */
  concurrency?: number;
  /** Called after each image, and once with `done = 0` before the first. */
  onProgress?: (progress: DecodeProgress) => void;
  /** Reported as `source` in progress (default ''). */
  source?: string;
}

/** What became of one file in {@link decodeImageFiles}. */
export type DecodeOutcome = { ok: true; pixels: Uint8Array } | { ok: false; reason: string };

/**
 * Decodes many files, `concurrency` at a time, calling `onImage(i, outcome)` as each finishes
 * (in completion order). A file that cannot be decoded is reported, not thrown.
 */
export async function decodeImageFiles(
  paths: readonly string[],
  options: DecodeFilesOptions,
  onImage: (index: number, outcome: DecodeOutcome) => void | Promise<void>,
): Promise<void> {
  const { concurrency: c, onProgress, source, ...decode } = options;
  const opts = checkDecodeOptions('options', decode);
  const concurrency = c === undefined ? 4 : validate.integer('options.concurrency', c, 1, 256);
  const total = paths.length;
  let next = 0;
  let done = 0;
  onProgress?.({ done: 0, total, source: source ?? '' });
  const worker = async () => {
    while (next < total) {
      const i = next++;
      let outcome: DecodeOutcome;
      try {
        outcome = { ok: true, pixels: await decodeImageBuffer(await readFile(paths[i]), opts) };
      } catch (e) {
        outcome = { ok: false, reason: firstLine(e) };
      }
      await onImage(i, outcome);
      done++;
      onProgress?.({ done, total, source: source ?? '' });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(total, 1)) }, worker));
}

/** An image file found under a folder. */
export interface ListedImage {
  /** Absolute path. */
  path: string;
  /** Path relative to the listed folder, with '/' separators. */
  relativePath: string;
  /** Name of the folder holding the file when it is below a subfolder of the listed folder, else null. */
  className: string | null;
}

/**
 * The image files of a file or a folder: a file is taken as it is (whatever its extension); a
 * folder is walked recursively, in sorted order, skipping hidden entries (names starting with
 * '.', such as the loader's `.supcon-cache`) and files without an image extension.
 * @throws {@link DatasetError} when the path does not exist or a folder holds no images.
 */
export async function listImages(pathOrDir: string): Promise<ListedImage[]> {
  validate.string('pathOrDir', pathOrDir);
  let info;
  try {
    info = await stat(pathOrDir);
  } catch {
    throw new DatasetError(pathOrDir, 'no such file or folder', 'Fix: check the path');
  }
  if (!info.isDirectory()) return [{ path: pathOrDir, relativePath: basename(pathOrDir), className: null }];
  const found: ListedImage[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      const isDir = entry.isDirectory() || (entry.isSymbolicLink() && (await stat(path).catch(() => null))?.isDirectory() === true);
      if (isDir) await walk(path);
      else if (isImageFile(entry.name)) {
        const rel = relative(pathOrDir, path).split(sep);
        found.push({ path, relativePath: rel.join('/'), className: rel.length > 1 ? rel[rel.length - 2] : null });
      }
    }
  };
  await walk(pathOrDir);
  if (found.length === 0) throw new DatasetError(pathOrDir, `holds no ${IMAGE_FORMATS} images`, 'Fix: check the path');
  return found;
}
