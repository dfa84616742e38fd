/**
 * Small generated image folders for the image-folder, CLI and TensorBoard tests: every class
 * has its own colour and stripe direction, images come in several formats and sizes, and the
 * folder can hold a corrupt image and a non-image file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

/** Formats cycled through per image. */
export const FORMATS = ['png', 'jpg', 'webp', 'gif', 'tiff', 'avif'] as const;
export type Format = (typeof FORMATS)[number];

const COLOURS: Array<[number, number, number]> = [
  [220, 40, 40],
  [40, 200, 60],
  [50, 60, 220],
  [230, 200, 40],
];

/** An RGB image of class `label`: its colour, with stripes (horizontal for even classes, vertical for odd). */
export function classPixels(label: number, width: number, height: number, variant: number): Buffer {
  const [r, g, b] = COLOURS[label % COLOURS.length];
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const stripe = Math.floor((label % 2 === 0 ? y : x) / 3 + variant) % 2 === 0;
      const k = stripe ? 1 : 0.45;
      const o = 3 * (y * width + x);
      data[o] = Math.round(r * k);
      data[o + 1] = Math.round(g * k);
      data[o + 2] = Math.round(b * k);
    }
  }
  return data;
}

/** Writes raw RGB pixels as an image file of the given format. */
export async function writeImage(path: string, pixels: Buffer, width: number, height: number, format: Format): Promise<void> {
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  const encoded =
    format === 'png' ? image.png() : format === 'jpg' ? image.jpeg({ quality: 95 }) : format === 'webp' ? image.webp({ lossless: true })
      : format === 'gif' ? image.gif() : format === 'tiff' ? image.tiff() : image.avif({ quality: 90, effort: 0 });
  await encoded.toFile(path);
}

/** Options of {@link makeImageFolder}. */
export interface MakeFolderOptions {
  classes: string[];
  /** Images per class in each split folder; `test: 0` makes no test folder. */
  train: number;
  test: number;
  /** `DIR/<class>/...` instead of `DIR/train/<class>/...` (no test folder). */
  flat?: boolean;
  /** Add `train/<first class>/broken.jpg` (not an image) and `train/<first class>/notes.txt`. */
  extras?: boolean;
}

/** Builds the folder and returns the paths of what it wrote, by split. */
export async function makeImageFolder(root: string, options: MakeFolderOptions): Promise<{ train: string[]; test: string[]; corrupt?: string }> {
  const written = { train: [] as string[], test: [] as string[] };
  let n = 0;
  const splits: Array<['train' | 'test', number]> = options.flat ? [['train', options.train]] : [['train', options.train], ['test', options.test]];
  for (const [split, count] of splits) {
    if (count === 0) continue;
    for (const [label, name] of options.classes.entries()) {
      const dir = options.flat ? join(root, name) : join(root, split, name);
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < count; i++) {
        const format = FORMATS[n++ % FORMATS.length];
        const width = 20 + ((i * 7) % 17);
        const height = 20 + ((i * 11) % 13);
        const path = join(dir, `${name}_${i}.${format}`);
        await writeImage(path, classPixels(label, width, height, i), width, height, format);
        written[split].push(path);
      }
    }
  }
  if (!options.extras) return written;
  const first = options.flat ? join(root, options.classes[0]) : join(root, 'train', options.classes[0]);
  const corrupt = join(first, 'broken.jpg');
  writeFileSync(corrupt, Buffer.from('this is not a JPEG file at all'));
  writeFileSync(join(first, 'notes.txt'), 'not an image\n');
  return { ...written, corrupt };
}
