import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeCifar, readCifarFile, readCifarSplit, cifarRecordBytes } from '../../src/data/cifar';
import { DatasetError } from '../../src/data/errors';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'supcon-cifar-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The pixel value the crafted files hold at record r, channel c, row y, column x. */
const pixel = (r: number, c: number, y: number, x: number): number => (r * 101 + c * 71 + y * 13 + x * 7) % 256;

/** CIFAR records written in the documented CHW layout, independently of the reader. */
function craftRecords(labelRows: number[][]): Uint8Array {
  const out: number[] = [];
  labelRows.forEach((labels, r) => {
    out.push(...labels);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) out.push(pixel(r, c, y, x));
  });
  return Uint8Array.from(out);
}

/** Checks every pixel of a decoded NHWC image against `pixel`, with a record offset for concatenated files. */
function expectPixels(images: Uint8Array, count: number, recordOf: (i: number) => number): void {
  expect(images.length).toBe(count * 32 * 32 * 3);
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        for (let c = 0; c < 3; c++) {
          const got = images[((i * 32 + y) * 32 + x) * 3 + c];
          if (got !== pixel(recordOf(i), c, y, x)) {
            throw new Error(`image ${i} (y=${y}, x=${x}, c=${c}): got ${got}, want ${pixel(recordOf(i), c, y, x)}`);
          }
        }
      }
    }
  }
}

describe('CIFAR binary reader', () => {
  it('decodes CIFAR-10 records: CHW planes become NHWC pixels, label byte first', () => {
    const bytes = craftRecords([[3], [9], [0]]);
    expect(bytes.length).toBe(3 * cifarRecordBytes('cifar10'));
    const records = decodeCifar(bytes, 'cifar10', 'crafted');
    expect(records.count).toBe(3);
    expect([...records.labels]).toEqual([3, 9, 0]);
    expect(records.coarseLabels).toBeUndefined();
    expectPixels(records.images, 3, (i) => i);
    // One spot check written out: record 1, row 2, column 5, green = (101 + 71 + 26 + 35) % 256.
    expect(records.images[((1 * 32 + 2) * 32 + 5) * 3 + 1]).toBe(233);
  });

  it('decodes CIFAR-100 records: coarse then fine label bytes', () => {
    const records = decodeCifar(craftRecords([[19, 99], [4, 30]]), 'cifar100', 'crafted');
    expect([...records.labels]).toEqual([99, 30]);
    expect([...records.coarseLabels!]).toEqual([19, 4]);
    expectPixels(records.images, 2, (i) => i);
  });

  it('rejects a truncated file, naming it and the record size', async () => {
    const path = join(dir, 'data_batch_1.bin');
    writeFileSync(path, craftRecords([[1], [2]]).subarray(0, 2 * 3073 - 100));
    const e = await readCifarFile(path, 'cifar10').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DatasetError);
    expect((e as DatasetError).path).toBe(path);
    expect((e as DatasetError).message).toContain(path);
    expect((e as DatasetError).message).toMatch(/truncated.*3073-byte record/);
    expect(() => decodeCifar(new Uint8Array(0), 'cifar10', 'empty.bin')).toThrow(/empty\.bin.*truncated/);
  });

  it('rejects a CIFAR-100 file read as CIFAR-10 by its out-of-range labels or length', () => {
    // 2 CIFAR-100 records = 6148 bytes = 2 * 3074; not a multiple of 3073.
    expect(() => decodeCifar(craftRecords([[1, 50], [2, 60]]), 'cifar10', 'x.bin')).toThrow(/multiple of the 3073-byte/);
    // A CIFAR-10 record with label 42 is out of range.
    expect(() => decodeCifar(craftRecords([[42]]), 'cifar10', 'x.bin')).toThrow(/label 42/);
  });

  it('reads a split from the official folder layout or from the folder itself, in file order', async () => {
    const nested = join(dir, 'nested');
    mkdirSync(join(nested, 'cifar-10-batches-bin'), { recursive: true });
    const flat = join(dir, 'flat');
    mkdirSync(flat);
    // Record r of the whole training split holds label r % 10 and the pixels of record r.
    const all = craftRecords(Array.from({ length: 10 }, (_, r) => [r % 10]));
    const recordBytes = cifarRecordBytes('cifar10');
    for (const base of [join(nested, 'cifar-10-batches-bin'), flat]) {
      for (let b = 0; b < 5; b++) {
        writeFileSync(join(base, `data_batch_${b + 1}.bin`), all.subarray(2 * b * recordBytes, 2 * (b + 1) * recordBytes));
      }
      writeFileSync(join(base, 'test_batch.bin'), craftRecords([[7]]));
    }
    for (const root of [nested, flat]) {
      const train = await readCifarSplit(root, 'cifar10', 'train');
      expect(train.count).toBe(10);
      expect([...train.labels]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expectPixels(train.images, 10, (i) => i);
      const test = await readCifarSplit(root, 'cifar10', 'test');
      expect([...test.labels]).toEqual([7]);
    }
  });

  it('names the paths it tried when a split is missing', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    const e = (await readCifarSplit(empty, 'cifar100', 'train').catch((x: unknown) => x)) as DatasetError;
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toContain(join(empty, 'cifar-100-binary', 'train.bin'));
    expect(e.message).toContain(join(empty, 'train.bin'));
  });
});
