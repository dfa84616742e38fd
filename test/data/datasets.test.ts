import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  DATASETS,
  DATASET_NAMES,
  BUILTIN_DATASET_NAMES,
  embeddedDataDir,
  firstPerClass,
  loadDataset,
  subsetDataset,
  type ImageDataset,
} from '../../src/data/datasets';
import { encodeIdx, readIdxImages, readIdxLabels } from '../../src/data/idx';
import { DatasetError } from '../../src/data/errors';
import { InvalidArgumentError } from '../../src/errors';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'supcon-datasets-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DEBIAN = '/usr/share/datasets/fashion-mnist';
const haveDebian = existsSync(join(DEBIAN, 'train-images-idx3-ubyte.gz'));
const needsDebian = `(needs ${DEBIAN}, skipped without it: apt-get install dataset-fashion-mnist)`;

function classCounts(d: ImageDataset): number[] {
  const counts = new Array(d.numClasses).fill(0);
  for (const l of d.labels) counts[l]++;
  return counts;
}

function pixelStats(images: Uint8Array): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const v of images) {
    s += v / 255;
    s2 += (v / 255) ** 2;
  }
  const mean = s / images.length;
  return { mean, std: Math.sqrt(s2 / images.length - mean * mean) };
}

/** Writes a tiny MNIST-style dataset: `count` images of 28x28 whose pixels encode their index. */
function writeMnistLike(folder: string, prefix: 'train' | 't10k', count: number, gzip = false): void {
  mkdirSync(folder, { recursive: true });
  const images = Uint8Array.from({ length: count * 784 }, (_, i) => (Math.floor(i / 784) * 17 + i) % 256);
  const labels = Uint8Array.from({ length: count }, (_, i) => (i * 3) % 10);
  const suffix = gzip ? '.gz' : '';
  const write = (name: string, bytes: Uint8Array): void =>
    writeFileSync(join(folder, name), gzip ? gzipSync(bytes) : bytes);
  write(`${prefix}-images-idx3-ubyte${suffix}`, encodeIdx({ dataType: 'uint8', shape: [count, 28, 28], data: images }));
  write(`${prefix}-labels-idx1-ubyte${suffix}`, encodeIdx({ dataType: 'uint8', shape: [count], data: labels }));
}

describe('dataset registry', () => {
  it('loads the embedded subset by default: 10,000 train and 2,000 test records, balanced', async () => {
    const train = await loadDataset('fashion-mnist-mini');
    expect(train).toMatchObject({ name: 'fashion-mnist-mini', split: 'train', count: 10_000, height: 28, width: 28 });
    expect(train.channels).toBe(1);
    expect(train.images.length).toBe(10_000 * 784);
    expect(train.source).toBe(embeddedDataDir());
    expect(classCounts(train)).toEqual(new Array(10).fill(1000));
    const test = await loadDataset('fashion-mnist-mini', { split: 'test' });
    expect(test.count).toBe(2000);
    expect(classCounts(test)).toEqual(new Array(10).fill(200));
    expect(train.classNames).toHaveLength(10);
    // The registry's statistics describe the pixels (measured on the full set; the subset is close).
    const stats = pixelStats(train.images);
    expect(Math.abs(stats.mean - train.normalization.mean[0])).toBeLessThan(0.005);
    expect(Math.abs(stats.std - train.normalization.std[0])).toBeLessThan(0.005);
  });

  it.skipIf(!haveDebian)(`the embedded subset is byte-identical to the first records of each class ${needsDebian}`, async () => {
    for (const [split, prefix, perClass] of [
      ['train', 'train', 1000],
      ['test', 't10k', 200],
    ] as const) {
      const mini = await loadDataset('fashion-mnist-mini', { split });
      // Independent selection: walk the Debian labels in file order.
      const fullImages = await readIdxImages(join(DEBIAN, `${prefix}-images-idx3-ubyte.gz`));
      const fullLabels = await readIdxLabels(join(DEBIAN, `${prefix}-labels-idx1-ubyte.gz`));
      const seen = new Array(10).fill(0);
      let k = 0;
      for (let i = 0; i < fullLabels.length; i++) {
        if (seen[fullLabels[i]] >= perClass) continue;
        seen[fullLabels[i]]++;
        expect(mini.labels[k]).toBe(fullLabels[i]);
        const a = mini.images.subarray(k * 784, (k + 1) * 784);
        const b = fullImages.pixels.subarray(i * 784, (i + 1) * 784);
        if (Buffer.compare(a, b) !== 0) throw new Error(`${split} record ${k} differs from Debian record ${i}`);
        k++;
      }
      expect(k).toBe(mini.count);
    }
  });

  it.skipIf(!haveDebian)(`the build script reproduces the committed subset byte for byte ${needsDebian}`, () => {
    const out = join(dir, 'rebuilt-mini');
    const script = join(__dirname, '..', '..', 'scripts', 'make-fashion-mnist-mini.ts');
    const tsx = join(__dirname, '..', '..', 'node_modules', '.bin', 'tsx');
    const run = spawnSync(tsx, [script, '--out', out], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    for (const name of readdirSync(embeddedDataDir()).filter((f) => f.endsWith('.gz'))) {
      const committed = readFileSync(join(embeddedDataDir(), name));
      if (Buffer.compare(committed, readFileSync(join(out, name))) !== 0) throw new Error(`${name} differs from the script's output`);
    }
  });

  it.skipIf(!haveDebian)(`loads full Fashion-MNIST from Debian's folder by default ${needsDebian}`, async () => {
    const train = await loadDataset('fashion-mnist');
    expect(train.count).toBe(60_000);
    expect(train.source).toBe(DEBIAN);
    const stats = pixelStats(train.images);
    expect(Math.abs(stats.mean - DATASETS['fashion-mnist'].normalization.mean[0])).toBeLessThan(5e-4);
    expect(Math.abs(stats.std - DATASETS['fashion-mnist'].normalization.std[0])).toBeLessThan(5e-4);
    const test = await loadDataset('fashion-mnist', { split: 'test' });
    expect(test.count).toBe(10_000);
  });

  it('loads MNIST-style files from dataDir, raw or gzipped', async () => {
    const raw = join(dir, 'mnist-raw');
    writeMnistLike(raw, 'train', 5);
    const gz = join(dir, 'mnist-gz');
    writeMnistLike(gz, 't10k', 3, true);
    const train = await loadDataset('mnist', { dataDir: raw });
    expect(train).toMatchObject({ count: 5, channels: 1, numClasses: 10, source: raw });
    expect([...train.labels]).toEqual([0, 3, 6, 9, 2]);
    expect(train.images[2 * 784 + 10]).toBe((2 * 17 + 2 * 784 + 10) % 256);
    const test = await loadDataset('mnist', { dataDir: gz, split: 'test' });
    expect([...test.labels]).toEqual([0, 3, 6]);
  });

  it('a missing file names every path tried and how to get the data', async () => {
    const empty = join(dir, 'nothing-here');
    mkdirSync(empty);
    const e = (await loadDataset('fashion-mnist', { dataDir: empty }).catch((x: unknown) => x)) as DatasetError;
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toContain(join(empty, 'train-images-idx3-ubyte.gz'));
    expect(e.message).toContain(join(empty, 'train-images-idx3-ubyte'));
    expect(e.message).toContain('apt-get install dataset-fashion-mnist');
    expect(e.message).toMatch(/dataDir|--data-dir/);
    // MNIST has no default folder: the error says so and how to get it.
    await expect(loadDataset('mnist')).rejects.toThrow(/no default location.*dataDir/);
  });

  it('rejects images and labels that disagree', async () => {
    const folder = join(dir, 'mismatch');
    writeMnistLike(folder, 'train', 4);
    writeFileSync(join(folder, 'train-labels-idx1-ubyte'), encodeIdx({ dataType: 'uint8', shape: [3], data: new Uint8Array(3) }));
    await expect(loadDataset('mnist', { dataDir: folder })).rejects.toThrow(/holds 3 labels but .* holds 4 images/);
    writeFileSync(join(folder, 'train-labels-idx1-ubyte'), encodeIdx({ dataType: 'uint8', shape: [4], data: Uint8Array.of(1, 2, 10, 3) }));
    await expect(loadDataset('mnist', { dataDir: folder })).rejects.toThrow(/label 10 at record 2/);
    writeFileSync(
      join(folder, 'train-images-idx3-ubyte'),
      encodeIdx({ dataType: 'uint8', shape: [4, 32, 32], data: new Uint8Array(4 * 1024) }),
    );
    await expect(loadDataset('mnist', { dataDir: folder })).rejects.toThrow(/expected 28x28 images for mnist/);
  });

  it('loads CIFAR-10 and CIFAR-100 (fine or coarse labels) from dataDir', async () => {
    const record = (labels: number[], fill: number): number[] => [...labels, ...new Array(3072).fill(fill)];
    const c10 = join(dir, 'c10', 'cifar-10-batches-bin');
    mkdirSync(c10, { recursive: true });
    for (let b = 1; b <= 5; b++) writeFileSync(join(c10, `data_batch_${b}.bin`), Uint8Array.from(record([b], b * 10)));
    writeFileSync(join(c10, 'test_batch.bin'), Uint8Array.from([...record([0], 1), ...record([9], 2)]));
    const train = await loadDataset('cifar10', { dataDir: join(dir, 'c10') });
    expect(train).toMatchObject({ count: 5, height: 32, width: 32, channels: 3, numClasses: 10 });
    expect([...train.labels]).toEqual([1, 2, 3, 4, 5]);
    expect(train.images[3072 * 2]).toBe(30);
    expect((await loadDataset('cifar10', { dataDir: join(dir, 'c10'), split: 'test' })).count).toBe(2);

    const c100 = join(dir, 'c100');
    mkdirSync(c100);
    writeFileSync(join(c100, 'train.bin'), Uint8Array.from([...record([3, 77], 0), ...record([19, 5], 0)]));
    const fine = await loadDataset('cifar100', { dataDir: c100 });
    expect(fine.numClasses).toBe(100);
    expect([...fine.labels]).toEqual([77, 5]);
    expect(fine.classNames[77]).toBe('snail');
    expect([fine.classNames[0], fine.classNames[70], fine.classNames[99]]).toEqual(['apple', 'rose', 'worm']);
    const coarse = await loadDataset('cifar100', { dataDir: c100, labels: 'coarse' });
    expect(coarse.numClasses).toBe(20);
    expect([...coarse.labels]).toEqual([3, 19]);
    expect(coarse.classNames[3]).toBe('food_containers');
  });

  it('rejects unknown names and options with InvalidArgumentError listing what is valid', async () => {
    const e = (await loadDataset('imagenet' as never).catch((x: unknown) => x)) as InvalidArgumentError;
    expect(e).toBeInstanceOf(InvalidArgumentError);
    for (const name of DATASET_NAMES) expect(e.message).toContain(`'${name}'`);
    await expect(loadDataset('mnist', { split: 'val' as never })).rejects.toThrow(/'train', 'test' for options.split/);
    await expect(loadDataset('mnist', { bogus: 1 } as never)).rejects.toThrow(/unknown option 'bogus'/);
    await expect(loadDataset('cifar10', { labels: 'coarse' })).rejects.toThrow(/only cifar100/);
  });

  it('registry entries are consistent', () => {
    expect(DATASET_NAMES).toEqual([...BUILTIN_DATASET_NAMES, 'image-folder']);
    for (const name of BUILTIN_DATASET_NAMES) {
      const info = DATASETS[name];
      expect(info.name).toBe(name);
      expect(info.classNames).toHaveLength(info.numClasses);
      expect(new Set(info.classNames).size).toBe(info.numClasses);
      expect(info.normalization.mean).toHaveLength(info.channels);
      expect(info.normalization.std).toHaveLength(info.channels);
      expect(info.hint).toMatch(/^Fix: /);
    }
  });

  it('firstPerClass and subsetDataset pick the first records of each class in file order', () => {
    const labels = Int32Array.from([2, 0, 0, 1, 2, 0, 1, 1, 2]);
    expect([...firstPerClass(labels, 3, 2)]).toEqual([0, 1, 2, 3, 4, 6]);
    expect(() => firstPerClass(labels, 4, 1)).toThrow(InvalidArgumentError);
    const dataset: ImageDataset = {
      ...DATASETS.mnist,
      height: 1,
      width: 2,
      split: 'train',
      images: Uint8Array.from([0, 1, 10, 11, 20, 21]),
      labels: Int32Array.from([5, 6, 7]),
      count: 3,
      source: 'memory',
    };
    const sub = subsetDataset(dataset, [2, 0]);
    expect([...sub.images]).toEqual([20, 21, 0, 1]);
    expect([...sub.labels]).toEqual([7, 5]);
    expect(sub.count).toBe(2);
    expect(() => subsetDataset(dataset, [3])).toThrow(/indices\[0\]/);
  });
});
