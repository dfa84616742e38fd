import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { batchCount, batches, datasetTensors, epochOrder, evaluationBatches } from '../../src/data/loader';
import { DATASETS, type ImageDataset } from '../../src/data/datasets';
import { InvalidArgumentError } from '../../src/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** A 2x3 RGB dataset whose record r has every pixel equal to r (mod 256) and label r % 5. */
function syntheticDataset(count: number): ImageDataset {
  const recordSize = 2 * 3 * 3;
  const images = new Uint8Array(count * recordSize);
  for (let r = 0; r < count; r++) images.fill(r % 256, r * recordSize, (r + 1) * recordSize);
  return {
    ...DATASETS.cifar10,
    height: 2,
    width: 3,
    channels: 3,
    split: 'train',
    images: images.map((v, i) => (i % 3 === 1 ? 255 - v : v)), // channel 1 differs, so layout errors show
    labels: Int32Array.from({ length: count }, (_, r) => r % 5),
    count,
    source: 'memory',
  } as ImageDataset;
}

function collect(dataset: ImageDataset, options: Parameters<typeof batches>[1]): number[][] {
  const out: number[][] = [];
  for (const batch of batches(dataset, options)) {
    out.push([...batch.indices]);
    batch.images.dispose();
    batch.labels.dispose();
  }
  return out;
}

describe('loader', () => {
  const data = syntheticDataset(23);

  it('covers every index exactly once per epoch, and tensors hold those records', () => {
    const seen: number[] = [];
    for (const batch of batches(data, { batchSize: 5, seed: 7 })) {
      const n = batch.indices.length;
      expect(batch.images.shape).toEqual([n, 2, 3, 3]);
      expect(batch.images.dtype).toBe('float32');
      expect(batch.labels.dtype).toBe('int32');
      const pixels = batch.images.dataSync();
      const labels = batch.labels.dataSync();
      batch.indices.forEach((r, i) => {
        expect(labels[i]).toBe(r % 5);
        expect(pixels[i * 18 + 0]).toBeCloseTo(r / 255, 6); // channel 0 = r
        expect(pixels[i * 18 + 1]).toBeCloseTo((255 - r) / 255, 6); // channel 1 = 255 - r
      });
      seen.push(...batch.indices);
      batch.images.dispose();
      batch.labels.dispose();
    }
    expect(seen).toHaveLength(23);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(seen).not.toEqual(Array.from({ length: 23 }, (_, i) => i)); // really shuffled
  });

  it('is deterministic per (seed, epoch) and differs across epochs and seeds', () => {
    const a = collect(data, { batchSize: 4, seed: 3, epoch: 2 });
    expect(collect(data, { batchSize: 4, seed: 3, epoch: 2 })).toEqual(a);
    expect(collect(data, { batchSize: 4, seed: 3, epoch: 3 })).not.toEqual(a);
    expect(collect(data, { batchSize: 4, seed: 4, epoch: 2 })).not.toEqual(a);
    expect([...epochOrder(23, { seed: 3, epoch: 2 })]).toEqual(a.flat());
    // Distinct epochs give many distinct orders, not a few repeating ones.
    const firsts = new Set(Array.from({ length: 30 }, (_, e) => epochOrder(1000, { seed: 1, epoch: e }).join(',')));
    expect(firsts.size).toBe(30);
  });

  it('without shuffle visits records in file order', () => {
    expect(collect(data, { batchSize: 10, shuffle: false })).toEqual([
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
      [20, 21, 22],
    ]);
  });

  it('dropLast drops only the short final batch', () => {
    const kept = collect(data, { batchSize: 5, dropLast: true, seed: 1 });
    expect(kept.map((b) => b.length)).toEqual([5, 5, 5, 5]);
    const all = collect(data, { batchSize: 5, dropLast: false, seed: 1 });
    expect(all.map((b) => b.length)).toEqual([5, 5, 5, 5, 3]);
    expect(kept).toEqual(all.slice(0, 4)); // same order, last batch removed
    expect(collect(data, { batchSize: 23, dropLast: true }).map((b) => b.length)).toEqual([23]);
    expect(collect(data, { batchSize: 24, dropLast: true })).toEqual([]);
    expect(batchCount(23, 5, true)).toBe(4);
    expect(batchCount(23, 5)).toBe(5);
  });

  it('leaks no tensors: full epochs, early exit, evaluation chunks', () => {
    const before = tf.memory().numTensors;
    collect(data, { batchSize: 4, seed: 2 });
    for (const batch of batches(data, { batchSize: 4 })) {
      batch.images.dispose();
      batch.labels.dispose();
      break; // the generator must not have created the next batch
    }
    for (const chunk of evaluationBatches(data, 10)) {
      chunk.images.dispose();
      chunk.labels.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('evaluationBatches and datasetTensors cover the split in order', () => {
    const chunks = [...evaluationBatches(data, 10)];
    expect(chunks.map((c) => c.indices.length)).toEqual([10, 10, 3]);
    const whole = datasetTensors(data);
    const joined = tf.concat(chunks.map((c) => c.images));
    expect(whole.images.shape).toEqual([23, 2, 3, 3]);
    expect(tf.max(tf.abs(tf.sub(whole.images, joined))).dataSync()[0]).toBe(0);
    expect([...whole.labels.dataSync()]).toEqual(Array.from({ length: 23 }, (_, r) => r % 5));
    const part = datasetTensors(data, { start: 20 });
    expect([...part.labels.dataSync()]).toEqual([0, 1, 2]);
    tf.dispose([...chunks.flatMap((c) => [c.images, c.labels]), whole.images, whole.labels, joined, part.images, part.labels]);
  });

  it('validates options and the dataset', () => {
    expect(() => collect(data, { batchSize: 0 })).toThrow(/integer >= 1 for options.batchSize/);
    expect(() => collect(data, { batchSize: 2, seed: 0.5 })).toThrow(/options.seed/);
    expect(() => collect(data, { batchSize: 2, epoch: -1 })).toThrow(/options.epoch/);
    expect(() => collect(data, { batchSize: 2, shufle: true } as never)).toThrow(/unknown option 'shufle'/);
    const broken = { ...data, labels: new Int32Array(3) };
    expect(() => collect(broken, { batchSize: 2 })).toThrow(InvalidArgumentError);
    expect(() => collect(broken, { batchSize: 2 })).toThrow(/dataset.labels/);
  });
});
