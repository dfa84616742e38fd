/**
 * Image-folder loading: decoding with sharp into the pixel cache (first load) against reading the
 * cache (later loads), and batches streamed from the cache file against batches from memory.
 *   npx tsx bench/images.ts [--count 2000] [--source 128] [--size 32]
 * Generates `count` JPEG photos-like images of `source` x 0.75 `source` pixels in 10 class folders
 * under a temporary folder, then loads the training split at `size` px. Writes bench/results/images.json.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { batchOf, epochOrder, loadImageFolder } from '../src/data';
import { machine, printTable, writeJson } from './util';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const count = arg('count', 2000);
  const source = arg('source', 128);
  const size = arg('size', 32);
  const dir = mkdtempSync(join(tmpdir(), 'supcon-bench-images-'));
  try {
    const classes = 10;
    const width = source;
    const height = Math.round(source * 0.75);
    for (let i = 0; i < count; i++) {
      const c = i % classes;
      const folder = join(dir, 'train', `class${c}`);
      mkdirSync(folder, { recursive: true });
      const noise = Buffer.alloc(width * height * 3);
      for (let p = 0; p < noise.length; p++) noise[p] = (p * 2654435761 + i * 97 + c * 40) & 0xff;
      await sharp(noise, { raw: { width, height, channels: 3 } }).jpeg({ quality: 85 }).toFile(join(folder, `img${i}.jpg`));
    }
    mkdirSync(join(dir, 'test', 'class0'), { recursive: true });
    await sharp({ create: { width, height, channels: 3, background: '#777' } }).jpeg().toFile(join(dir, 'test', 'class0', 'a.jpg'));

    const t0 = performance.now();
    const first = await loadImageFolder(dir, { imageSize: size });
    const decodeSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    await loadImageFolder(dir, { imageSize: size });
    const cachedSeconds = (performance.now() - t1) / 1000;
    const streamed = await loadImageFolder(dir, { imageSize: size, maxMemoryBytes: 0 });

    const batch = 256;
    const order = epochOrder(first.count, { seed: 1 });
    const batchesPerSecond = (dataset: typeof first) => {
      const t = performance.now();
      let n = 0;
      for (let b = 0; b + batch <= order.length; b += batch, n++) {
        const x = batchOf(dataset, order.subarray(b, b + batch));
        x.images.dispose();
        x.labels.dispose();
      }
      return (n * batch) / ((performance.now() - t) / 1000);
    };
    const memoryRate = batchesPerSecond(first);
    const streamRate = batchesPerSecond(streamed);
    const rows = [
      ['first load: decode + write cache', count + 1, decodeSeconds, (count + 1) / decodeSeconds],
      ['later load: read cache', count + 1, cachedSeconds, (count + 1) / cachedSeconds],
    ];
    printTable(`image folder, ${count} JPEGs of ${width}x${height} -> ${size}x${size}x3`, ['step', 'images', 'seconds', 'images/s'], rows);
    printTable(`shuffled batches of ${batch} (float32 tensors)`, ['pixels from', 'images/s'], [
      ['memory', memoryRate],
      ['cache file (streamed)', streamRate],
    ]);
    writeJson('bench/results/images.json', { machine: machine(), count, source: [width, height], size, decodeSeconds, cachedSeconds, memoryRate, streamRate });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
