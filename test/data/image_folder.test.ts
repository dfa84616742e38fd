// ImageFolder datasets: layout rules and their errors, decoding (formats, resize + center crop,
// channels), the pixel cache (reuse, invalidation, never inside class folders), streaming from
// the cache, the held-out split, unreadable images.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchOf, loadDataset, readImages, subsetDataset } from '../../src/data';
import { DatasetError } from '../../src/data/errors';
import { decodeImage, listImages } from '../../src/data/images';
import { loadImageFolder, scanImageFolder, type ImageFolderDataset } from '../../src/data/image_folder';
import { InvalidArgumentError } from '../../src/errors';
import { makeImageFolder, writeImage } from '../helpers/image_folder';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'supcon-imgfolder-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Every file below `dir` with its size and mtime, for "nothing was written here" checks. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(`${relative(dir, p)} ${statSync(p).size} ${statSync(p).mtimeMs}`);
    }
  };
  walk(dir);
  return out.sort();
}

describe('decoding', () => {
  it('resizes the shorter side and center-crops, in 3 or 1 channels', async () => {
    // 40x20: left half black, right half white. Shorter side 20 -> 8 gives 16x8; the crop keeps columns 4..11.
    const w = 40;
    const h = 20;
    const pixels = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = w / 2; x < w; x++) pixels.fill(255, 3 * (y * w + x), 3 * (y * w + x) + 3);
    const file = join(root, 'halves.png');
    await writeImage(file, pixels, w, h, 'png');
    const rgb = await decodeImage(file, { imageSize: 8, channels: 3 });
    expect(rgb.length).toBe(8 * 8 * 3);
    for (let y = 0; y < 8; y++) {
      expect(rgb[3 * (y * 8 + 0)]).toBe(0);
      expect(rgb[3 * (y * 8 + 2)]).toBe(0);
      expect(rgb[3 * (y * 8 + 5)]).toBe(255);
      expect(rgb[3 * (y * 8 + 7)]).toBe(255);
    }
    const solid = join(root, 'solid.png');
    await sharp({ create: { width: 12, height: 9, channels: 4, background: { r: 200, g: 10, b: 50, alpha: 1 } } }).png().toFile(solid);
    const s3 = await decodeImage(solid, { imageSize: 4, channels: 3 });
    expect([...s3.subarray(0, 3)]).toEqual([200, 10, 50]);
    expect(new Set(s3).size).toBe(3);
    const s1 = await decodeImage(solid, { imageSize: 4, channels: 1 });
    expect(s1.length).toBe(16);
    expect(new Set(s1)).toEqual(new Set([Math.round(0.299 * 200 + 0.587 * 10 + 0.114 * 50)])); // ITU-R 601 luma
  });

  it('rejects bad options and unreadable files with typed errors naming them', async () => {
    const notImage = join(root, 'fake.png');
    writeFileSync(notImage, 'hello');
    await expect(decodeImage(notImage, { imageSize: 8, channels: 3 })).rejects.toThrow(DatasetError);
    await expect(decodeImage(notImage, { imageSize: 8, channels: 3 })).rejects.toThrow(/fake\.png/);
    await expect(decodeImage(join(root, 'missing.png'), { imageSize: 8, channels: 3 })).rejects.toThrow(/no such file/);
    await expect(decodeImage(notImage, { imageSize: 0, channels: 3 })).rejects.toThrow(/options\.imageSize/);
    await expect(decodeImage(notImage, { imageSize: 8, channels: 2 as never })).rejects.toThrow(InvalidArgumentError);
  });
});

describe('an ImageFolder with train/ and test/', () => {
  let dir: string;
  let corrupt: string;
  let train: ImageFolderDataset;
  let test: ImageFolderDataset;
  const warnings: string[] = [];
  let decodedOnFirstLoad = 0;
  let before: string[];

  beforeAll(async () => {
    dir = join(root, 'shapes');
    const made = await makeImageFolder(dir, { classes: ['red', 'green', 'blue'], train: 6, test: 2, extras: true });
    corrupt = made.corrupt!;
    // An empty subfolder inside a class folder is fine (nested folders belong to the class).
    mkdirSync(join(dir, 'train', 'blue', 'more'));
    await writeImage(join(dir, 'train', 'blue', 'more', 'nested.png'), Buffer.alloc(20 * 20 * 3, 90), 20, 20, 'png');
    before = snapshot(join(dir, 'train')).concat(snapshot(join(dir, 'test')));
    train = await loadImageFolder(dir, {
      imageSize: 16,
      onWarning: (m) => warnings.push(m),
      onProgress: (p) => (decodedOnFirstLoad = p.total),
    });
    test = await loadImageFolder(dir, { imageSize: 16, split: 'test', onWarning: (m) => warnings.push(m) });
  });

  it('has the sorted class folders as classes and every readable image once, classes interleaved', () => {
    expect(train.classNames).toEqual(['blue', 'green', 'red']);
    expect(train.count).toBe(19);
    expect(test.count).toBe(6);
    expect([train.height, train.width, train.channels]).toEqual([16, 16, 3]);
    expect(train.images.length).toBe(19 * 16 * 16 * 3);
    expect([...train.labels.subarray(0, 6)]).toEqual([0, 1, 2, 0, 1, 2]);
    expect(new Set(train.paths).size).toBe(19);
    expect(train.paths.every((p) => p.startsWith(join(dir, 'train')))).toBe(true);
    for (let i = 0; i < train.count; i++) expect(train.paths[i]).toContain(`/train/${train.classNames[train.labels[i]]}/`);
    expect(train.paths.some((p) => p.endsWith('nested.png'))).toBe(true);
    expect(decodedOnFirstLoad).toBe(26); // 25 images + the corrupt one; notes.txt is not an image
    expect(test.normalization).toEqual(train.normalization);
    expect(train.normalization.mean).toHaveLength(3);
  });

  it('decodes the pixels each class was drawn with', () => {
    // Red images: the R channel dominates the mean of every red record.
    for (let i = 0; i < train.count; i++) {
      if (train.classNames[train.labels[i]] !== 'red') continue;
      const px = readImages(train, [i]);
      let r = 0;
      let g = 0;
      for (let p = 0; p < px.length; p += 3) {
        r += px[p];
        g += px[p + 1];
      }
      expect(r).toBeGreaterThan(2 * g);
    }
  });

  it('skips the corrupt file with one warning naming it and a summary', () => {
    expect(train.skipped).toEqual([{ path: corrupt, reason: expect.any(String) }]);
    expect(warnings.filter((w) => w.includes(corrupt))).toHaveLength(1);
    expect(warnings.some((w) => /skipped 1 unreadable image\(s\) of 26/.test(w))).toBe(true);
    expect(test.skipped).toEqual([]);
  });

  it('writes nothing inside the class folders, only DIR/.supcon-cache', () => {
    expect(snapshot(join(dir, 'train')).concat(snapshot(join(dir, 'test')))).toEqual(before);
    expect(readdirSync(dir).sort()).toEqual(['.supcon-cache', 'test', 'train']);
    expect(train.cacheFile).toBe(join(dir, '.supcon-cache', 'images-16px-3ch.cache'));
  });

  it('reads the cache on a second load, and re-decodes only a changed file', async () => {
    let decoded = -1;
    const again = await loadImageFolder(dir, { imageSize: 16, onProgress: (p) => (decoded = p.total), onWarning: () => undefined });
    expect(decoded).toBe(-1); // nothing to decode: no progress at all
    expect(again.images).toEqual(train.images);

    const changed = train.paths.find((p) => p.endsWith('red_0.png'))!;
    const index = train.paths.indexOf(changed);
    await writeImage(changed, Buffer.alloc(20 * 20 * 3, 255), 20, 20, 'png');
    utimesSync(changed, new Date(), new Date(Date.now() + 5000));
    const updated = await loadImageFolder(dir, { imageSize: 16, onProgress: (p) => (decoded = p.total), onWarning: () => undefined });
    expect(decoded).toBe(1);
    expect(updated.paths).toEqual(train.paths);
    expect(new Set(readImages(updated, [index]))).toEqual(new Set([255]));
    for (let i = 0; i < train.count; i++) if (i !== index) expect(readImages(updated, [i])).toEqual(readImages(train, [i]));
    // A different size or channel count is another cache file.
    const gray = await loadImageFolder(dir, { imageSize: 8, channels: 1, onWarning: () => undefined });
    expect(gray.cacheFile).toBe(join(dir, '.supcon-cache', 'images-8px-1ch.cache'));
    expect(gray.images.length).toBe(19 * 8 * 8);
  });

  it('streams a split larger than maxMemoryBytes from the cache file, batch for batch the same', async () => {
    const inMemory = await loadImageFolder(dir, { imageSize: 16, onWarning: () => undefined });
    const streamed = await loadImageFolder(dir, { imageSize: 16, maxMemoryBytes: 1000, onWarning: () => undefined });
    expect(streamed.store).toBeDefined();
    expect(streamed.images.length).toBe(0);
    expect(streamed.normalization).toEqual(inMemory.normalization);
    const order = [5, 0, 18, 7, 8, 9];
    const a = batchOf(inMemory, order);
    const b = batchOf(streamed, order);
    expect(b.images.dataSync()).toEqual(a.images.dataSync());
    expect(b.labels.dataSync()).toEqual(a.labels.dataSync());
    a.images.dispose();
    a.labels.dispose();
    b.images.dispose();
    b.labels.dispose();
    const part = subsetDataset(streamed, [3, 2]);
    expect(part.store).toBeDefined();
    expect(part.paths).toEqual([streamed.paths[3], streamed.paths[2]]);
    expect(subsetDataset(inMemory, [7]).paths).toEqual([inMemory.paths[7]]);
    expect(readImages(part, [0, 1])).toEqual(readImages(inMemory, [3, 2]));
    expect(() => readImages(streamed, [19])).toThrow(InvalidArgumentError);
  });

  it('is what loadDataset("image-folder") returns, and --strict makes the corrupt file an error', async () => {
    const viaRegistry = await loadDataset('image-folder', { dataDir: dir, imageSize: 16, split: 'test' });
    expect(viaRegistry.count).toBe(6);
    const e = (await loadImageFolder(dir, { imageSize: 16, strict: true }).catch((x: unknown) => x)) as DatasetError;
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.path).toBe(corrupt);
    await expect(loadDataset('image-folder', { imageSize: 16 })).rejects.toThrow(/options\.dataDir/);
    await expect(loadDataset('mnist', { imageSize: 16 })).rejects.toThrow(/options\.imageSize/);
    await expect(loadImageFolder(dir, { valSplit: 0.2 })).rejects.toThrow(/no value: .* has a test folder/);
    await expect(loadImageFolder(dir, { channels: 2 as never })).rejects.toThrow(/options\.channels/);
  });
});

describe('a folder of class folders with valSplit', () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(root, 'flat');
    await makeImageFolder(dir, { classes: ['a', 'b'], train: 10, test: 0, flat: true });
  });

  it('holds out the same fraction of every class, the same way every time', async () => {
    const opts = { imageSize: 8, valSplit: 0.3 } as const;
    const train = await loadImageFolder(dir, opts);
    const test = await loadImageFolder(dir, { ...opts, split: 'test' });
    expect(train.count).toBe(14);
    expect(test.count).toBe(6);
    expect([...test.labels].filter((l) => l === 0)).toHaveLength(3);
    expect(new Set([...train.paths, ...test.paths]).size).toBe(20);
    const again = await loadImageFolder(dir, { ...opts, split: 'test' });
    expect(again.paths).toEqual(test.paths);
    expect(readdirSync(dir).sort()).toEqual(['.supcon-cache', 'a', 'b']); // the cache folder is not a class
    expect((await scanImageFolder(dir)).classNames).toEqual(['a', 'b']);
  });

  it('asks for valSplit when there is no test folder', async () => {
    await expect(loadImageFolder(dir, { imageSize: 8 })).rejects.toThrow(/has no test folder .*--val-split/);
  });

  it('puts the cache in cacheDir when given', async () => {
    const cacheDir = join(root, 'elsewhere');
    const d = await loadImageFolder(dir, { imageSize: 8, valSplit: 0.3, cacheDir });
    expect(d.cacheFile.startsWith(cacheDir)).toBe(true);
  });
});

describe('bad layouts get a DatasetError naming the folder', () => {
  const make = (name: string, files: Record<string, string | Buffer | null>) => {
    const d = join(root, 'bad', name);
    for (const [path, content] of Object.entries(files)) {
      const full = join(d, path);
      if (content === null) mkdirSync(full, { recursive: true });
      else {
        mkdirSync(join(full, '..'), { recursive: true });
        writeFileSync(full, content);
      }
    }
    return d;
  };
  let png: Buffer;
  beforeAll(async () => {
    png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } }).png().toBuffer();
  });
  const cases: Array<[string, () => Record<string, string | Buffer | null>, RegExp, string]> = [
    ['no such folder', () => ({}), /no such folder/, ''],
    ['images but no class folders', () => ({ 'train/a.png': png }), /holds 1 image\(s\) but no class subfolders/, 'train'],
    ['an empty class folder', () => ({ 'train/cat/a.png': png, 'train/dog': null, 'test/cat/b.png': png }), /class folder with no .* images/, 'train/dog'],
    ['a class folder of non-images', () => ({ 'train/cat/a.png': png, 'train/dog/readme.txt': 'x', 'test/cat/b.png': png }), /class folder with no/, 'train/dog'],
    ['a test class missing from train', () => ({ 'train/cat/a.png': png, 'test/cat/b.png': png, 'test/cow/c.png': png }), /test class folder with no training folder/, 'test/cow'],
    ['a test folder without train', () => ({ 'test/cat/b.png': png, 'cat/a.png': png }), /has a test \(or val\) folder but no train folder/, ''],
    ['no images at all', () => ({ 'readme.txt': 'x' }), /has no class subfolders/, ''],
  ];
  it.each(cases)('%s', async (name, files, message, where) => {
    const d = name === 'no such folder' ? join(root, 'bad', 'missing') : make(name.replace(/ /g, '-'), files());
    const e = (await loadImageFolder(d, { imageSize: 8, valSplit: 0.5 }).catch((x: unknown) => x)) as DatasetError;
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(message);
    expect(e.path).toBe(where === '' ? d : join(d, where));
  });

  it('a class whose only image is unreadable', async () => {
    const d = make('all-broken', { 'train/cat/a.png': png, 'train/dog/b.jpg': 'garbage', 'test/cat/c.png': png });
    const e = (await loadImageFolder(d, { imageSize: 8, onWarning: () => undefined }).catch((x: unknown) => x)) as DatasetError;
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.path).toBe(join(d, 'train', 'dog'));
    expect(e.message).toMatch(/no readable image/);
  });
});

describe('listImages', () => {
  it('walks a folder in sorted order, skipping hidden entries and non-images, with parent folder classes', async () => {
    const d = join(root, 'list');
    await makeImageFolder(d, { classes: ['x', 'y'], train: 2, test: 0, flat: true, extras: true });
    await writeImage(join(d, 'top.png'), Buffer.alloc(12, 1), 2, 2, 'png');
    mkdirSync(join(d, '.hidden'));
    await writeImage(join(d, '.hidden', 'h.png'), Buffer.alloc(12, 1), 2, 2, 'png');
    const listed = await listImages(d);
    expect(listed.map((l) => l.relativePath)).toEqual(['top.png', 'x/broken.jpg', 'x/x_0.png', 'x/x_1.jpg', 'y/y_0.webp', 'y/y_1.gif']);
    expect(listed.map((l) => l.className)).toEqual([null, 'x', 'x', 'x', 'y', 'y']);
    expect(await listImages(join(d, 'top.png'))).toEqual([{ path: join(d, 'top.png'), relativePath: 'top.png', className: null }]);
    await expect(listImages(join(d, 'nope'))).rejects.toThrow(DatasetError);
  });
});
