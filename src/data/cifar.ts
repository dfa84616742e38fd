/**
 * CIFAR-10 and CIFAR-100 in their binary form (https://www.cs.toronto.edu/~kriz/cifar.html).
 *
 * Each record is the label byte(s) followed by a 32x32 RGB image stored channel-major (CHW):
 * 1024 red, then 1024 green, then 1024 blue bytes, each plane row-major. CIFAR-10 records have
 * one label byte; CIFAR-100 records have two: the coarse (20 superclasses) then the fine (100).
 * This module returns images as NHWC uint8, the layout tfjs uses.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetError, GENERIC_DATA_HINT } from './errors';
import { readDataFile } from './idx';
import type { Split } from './datasets';

/** Which CIFAR record layout. */
export type CifarVariant = 'cifar10' | 'cifar100';

/** Side of a CIFAR image, in pixels. */
export const CIFAR_SIZE = 32;
/** Bytes of one CIFAR image (3 x 32 x 32). */
export const CIFAR_IMAGE_BYTES = 3 * CIFAR_SIZE * CIFAR_SIZE;

interface Layout {
  readonly labelBytes: number;
  /** Folder the official archive unpacks to. */
  readonly folder: string;
  readonly files: Readonly<Record<Split, readonly string[]>>;
  /** Exclusive upper bound of each label byte, in file order. */
  readonly labelLimits: readonly number[];
}

const LAYOUTS: Readonly<Record<CifarVariant, Layout>> = {
  cifar10: {
    labelBytes: 1,
    folder: 'cifar-10-batches-bin',
    files: {
      train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
      test: ['test_batch.bin'],
    },
    labelLimits: [10],
  },
  cifar100: {
    labelBytes: 2,
    folder: 'cifar-100-binary',
    files: { train: ['train.bin'], test: ['test.bin'] },
    labelLimits: [20, 100],
  },
};

/** Bytes of one record (labels + image) of a CIFAR variant. */
export function cifarRecordBytes(variant: CifarVariant): number {
  return LAYOUTS[variant].labelBytes + CIFAR_IMAGE_BYTES;
}

/** Decoded CIFAR records. */
export interface CifarRecords {
  /** `count x 32 x 32 x 3` uint8 pixels, NHWC. */
  readonly images: Uint8Array;
  /** CIFAR-10: the class (0-9). CIFAR-100: the fine class (0-99). */
  readonly labels: Int32Array;
  /** CIFAR-100 only: the coarse superclass (0-19). */
  readonly coarseLabels?: Int32Array;
  readonly count: number;
}

/**
 * Decodes the bytes of one CIFAR binary file.
 * @param path Only used in error messages.
 * @throws {@link DatasetError} when the length is not a whole number of records or a label is out
 *   of range (which is what reading a CIFAR-100 file as CIFAR-10, or the reverse, looks like).
 */
export function decodeCifar(
  bytes: Uint8Array,
  variant: CifarVariant,
  path: string,
  hint = GENERIC_DATA_HINT,
): CifarRecords {
  const { labelBytes, labelLimits } = LAYOUTS[variant];
  const recordBytes = labelBytes + CIFAR_IMAGE_BYTES;
  if (bytes.length % recordBytes !== 0 || bytes.length === 0) {
    throw new DatasetError(
      path,
      `truncated or not a ${variant} file: its length ${bytes.length} is not a positive multiple of the ` +
        `${recordBytes}-byte record (${labelBytes} label byte${labelBytes > 1 ? 's' : ''} + ${CIFAR_IMAGE_BYTES} pixels)`,
      hint,
    );
  }
  const count = bytes.length / recordBytes;
  const plane = CIFAR_SIZE * CIFAR_SIZE;
  const images = new Uint8Array(count * CIFAR_IMAGE_BYTES);
  const labelColumns = labelLimits.map(() => new Int32Array(count));
  for (let r = 0; r < count; r++) {
    const record = r * recordBytes;
    for (let k = 0; k < labelBytes; k++) {
      const label = bytes[record + k];
      if (label >= labelLimits[k]) {
        throw new DatasetError(
          path,
          `record ${r} has label ${label} in label byte ${k}, outside [0, ${labelLimits[k] - 1}] ` +
            `(is this really a ${variant} file?)`,
          hint,
        );
      }
      labelColumns[k][r] = label;
    }
    // CHW -> HWC: pixel p of channel c moves from c * 1024 + p to p * 3 + c.
    const src = record + labelBytes;
    const dst = r * CIFAR_IMAGE_BYTES;
    for (let c = 0; c < 3; c++) {
      const srcPlane = src + c * plane;
      for (let p = 0; p < plane; p++) images[dst + 3 * p + c] = bytes[srcPlane + p];
    }
  }
  return variant === 'cifar10'
    ? { images, labels: labelColumns[0], count }
    : { images, labels: labelColumns[1], coarseLabels: labelColumns[0], count };
}

/** Reads and decodes one CIFAR binary file. */
export async function readCifarFile(path: string, variant: CifarVariant, hint = GENERIC_DATA_HINT): Promise<CifarRecords> {
  return decodeCifar(await readDataFile(path, hint), variant, path, hint);
}

/**
 * The files of a split, looked up under `dir/<official folder>/` first, then directly in `dir`.
 * @throws {@link DatasetError} naming the paths tried when the first file is in neither place.
 */
export function cifarSplitFiles(dir: string, variant: CifarVariant, split: Split, hint = GENERIC_DATA_HINT): string[] {
  const { folder, files } = LAYOUTS[variant];
  const candidates = [join(dir, folder), dir];
  const base = candidates.find((c) => existsSync(join(c, files[split][0])));
  if (base === undefined) {
    throw new DatasetError(
      candidates.map((c) => join(c, files[split][0])).join(' or '),
      `no such file (looked for the ${variant} ${split} split)`,
      hint,
    );
  }
  return files[split].map((f) => join(base, f));
}

/** Reads every file of a split and concatenates the records in file order. */
export async function readCifarSplit(
  dir: string,
  variant: CifarVariant,
  split: Split,
  hint = GENERIC_DATA_HINT,
): Promise<CifarRecords> {
  const parts: CifarRecords[] = [];
  for (const file of cifarSplitFiles(dir, variant, split, hint)) parts.push(await readCifarFile(file, variant, hint));
  return concatRecords(parts);
}

function concatRecords(parts: readonly CifarRecords[]): CifarRecords {
  if (parts.length === 1) return parts[0];
  const count = parts.reduce((n, p) => n + p.count, 0);
  const join32 = (pick: (p: CifarRecords) => Int32Array): Int32Array => {
    const out = new Int32Array(count);
    let at = 0;
    for (const p of parts) {
      out.set(pick(p), at);
      at += p.count;
    }
    return out;
  };
  const images = new Uint8Array(count * CIFAR_IMAGE_BYTES);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at);
    at += p.images.length;
  }
  const coarse = parts[0].coarseLabels ? join32((p) => p.coarseLabels!) : undefined;
  return { images, labels: join32((p) => p.labels), ...(coarse ? { coarseLabels: coarse } : {}), count };
}
