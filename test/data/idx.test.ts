import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { decodeIdx, encodeIdx, readIdxFile, readIdxImages, readIdxLabels, writeIdxFile } from '../../src/data/idx';
import { DatasetError } from '../../src/data/errors';
import { SupConError, InvalidArgumentError } from '../../src/errors';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'supcon-idx-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An IDX file written byte by byte, independent of encodeIdx. */
function handMadeIdx(typeCode: number, shape: number[], payload: number[]): Uint8Array {
  const header = [0, 0, typeCode, shape.length];
  for (const d of shape) header.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...header, ...payload]);
}

async function expectDatasetError(promise: Promise<unknown>, path: string, problem: RegExp): Promise<DatasetError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DatasetError);
  expect(error).toBeInstanceOf(SupConError);
  const e = error as DatasetError;
  expect(e.path).toBe(path);
  expect(e.message).toContain(path);
  expect(e.problem).toMatch(problem);
  expect(e.message).toMatch(/Fix: /);
  return e;
}

describe('IDX reader', () => {
  const images = Uint8Array.from({ length: 3 * 2 * 4 }, (_, i) => (i * 37 + 5) % 256);

  it('decodes a hand-made uint8 rank-3 file exactly, raw and gzipped', async () => {
    const bytes = handMadeIdx(0x08, [3, 2, 4], [...images]);
    const raw = join(dir, 'images-raw');
    const gz = join(dir, 'images.gz');
    writeFileSync(raw, bytes);
    writeFileSync(gz, gzipSync(bytes));
    for (const path of [raw, gz]) {
      const read = await readIdxImages(path);
      expect(read).toMatchObject({ count: 3, height: 2, width: 4 });
      expect([...read.pixels]).toEqual([...images]);
    }
  });

  it('detects gzip by magic bytes, not by name', async () => {
    const path = join(dir, 'gzipped-without-suffix');
    writeFileSync(path, gzipSync(handMadeIdx(0x08, [2], [7, 9])));
    expect([...(await readIdxLabels(path))]).toEqual([7, 9]);
  });

  it('decodes big-endian multi-byte types', () => {
    // int16 -2 = 0xfffe, int32 0x01020304, float32 1.5 = 0x3fc00000, float64 -2 = 0xc000000000000000
    expect([...decodeIdx(handMadeIdx(0x0b, [1], [0xff, 0xfe]), 'x').data]).toEqual([-2]);
    expect([...decodeIdx(handMadeIdx(0x0c, [1], [1, 2, 3, 4]), 'x').data]).toEqual([0x01020304]);
    expect([...decodeIdx(handMadeIdx(0x0d, [1], [0x3f, 0xc0, 0, 0]), 'x').data]).toEqual([1.5]);
    expect([...decodeIdx(handMadeIdx(0x0e, [1], [0xc0, 0, 0, 0, 0, 0, 0, 0]), 'x').data]).toEqual([-2]);
    expect([...decodeIdx(handMadeIdx(0x09, [2], [0xff, 0x80]), 'x').data]).toEqual([-1, -128]);
  });

  it('encodeIdx produces the hand-made bytes and round-trips every type through files', async () => {
    expect([...encodeIdx({ dataType: 'uint8', shape: [3, 2, 4], data: images })]).toEqual([
      ...handMadeIdx(0x08, [3, 2, 4], [...images]),
    ]);
    const cases = [
      { dataType: 'int16', shape: [2, 2], data: Int16Array.from([-300, 2, 32767, -32768]) },
      { dataType: 'int32', shape: [3], data: Int32Array.from([-1, 0x7fffffff, 12345678]) },
      { dataType: 'float32', shape: [2], data: Float32Array.from([0.1, -3e20]) },
      { dataType: 'float64', shape: [1, 1, 2], data: Float64Array.from([Math.PI, -0]) },
      { dataType: 'uint8', shape: [0, 28, 28], data: new Uint8Array(0) },
    ] as const;
    for (const [i, array] of cases.entries()) {
      for (const gzip of [false, true]) {
        const path = join(dir, `roundtrip-${i}-${gzip}`);
        await writeIdxFile(path, array, { gzip });
        const back = await readIdxFile(path);
        expect(back.dataType).toBe(array.dataType);
        expect(back.shape).toEqual(array.shape);
        expect(back.data).toEqual(array.data);
      }
    }
  });

  it('rejects a truncated file, naming it', async () => {
    const path = join(dir, 'truncated');
    writeFileSync(path, handMadeIdx(0x08, [3, 2, 4], [...images]).subarray(0, 30));
    const e = await expectDatasetError(readIdxFile(path), path, /^truncated/);
    expect(e.problem).toContain('[3, 2, 4]');
    expect(e.problem).toContain('needs 40 bytes, but the file has 30');
  });

  it('rejects a truncated header and a truncated gzip stream', async () => {
    const header = join(dir, 'short-header');
    writeFileSync(header, Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 3]));
    await expectDatasetError(readIdxFile(header), header, /^truncated: the header/);
    const gz = join(dir, 'truncated.gz');
    const full = gzipSync(handMadeIdx(0x08, [3, 2, 4], [...images]));
    writeFileSync(gz, full.subarray(0, full.length - 12));
    await expectDatasetError(readIdxFile(gz), gz, /gzip/);
  });

  it('rejects a wrong magic number, naming the file and the bytes found', async () => {
    const path = join(dir, 'not-idx.png');
    writeFileSync(path, Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]));
    const e = await expectDatasetError(readIdxFile(path), path, /wrong magic number/);
    expect(e.problem).toContain('0x89 0x50 0x4e 0x47');
    const badType = join(dir, 'bad-type');
    writeFileSync(badType, handMadeIdx(0x07, [1], [0]));
    await expectDatasetError(readIdxFile(badType), badType, /unknown IDX element type 0x07/);
  });

  it('rejects dims that disagree with the file length (trailing bytes)', async () => {
    const path = join(dir, 'wrong-dims');
    writeFileSync(path, handMadeIdx(0x08, [2, 2, 4], [...images])); // header says 16 values, file holds 24
    await expectDatasetError(readIdxFile(path), path, /^trailing bytes/);
  });

  it('rejects a file of the wrong kind for images or labels', async () => {
    const labels = join(dir, 'labels-as-images');
    writeFileSync(labels, handMadeIdx(0x08, [4], [1, 2, 3, 4]));
    await expectDatasetError(readIdxImages(labels), labels, /rank 3/);
    const floats = join(dir, 'float-labels');
    writeFileSync(floats, handMadeIdx(0x0d, [1], [0, 0, 0, 0]));
    await expectDatasetError(readIdxLabels(floats), floats, /uint8 labels/);
  });

  it('reports a missing file with the hint it was given', async () => {
    const path = join(dir, 'absent.gz');
    const e = await expectDatasetError(readIdxFile(path, 'Fix: apt-get install something'), path, /no such file/);
    expect(e.message).toContain('apt-get install something');
  });

  it('validates what it is asked to encode', () => {
    expect(() => encodeIdx({ dataType: 'uint8', shape: [2, 2], data: new Uint8Array(3) })).toThrow(InvalidArgumentError);
    expect(() => encodeIdx({ dataType: 'uint8', shape: [2], data: new Float32Array(2) })).toThrow(/Uint8Array/);
  });

  const debian = '/usr/share/datasets/fashion-mnist';
  const haveDebian = existsSync(join(debian, 'train-labels-idx1-ubyte.gz'));
  it.skipIf(!haveDebian)(
    `reads the real Fashion-MNIST files (needs ${debian}, skipped without it: apt-get install dataset-fashion-mnist)`,
    async () => {
      for (const [prefix, count] of [
        ['train', 60000],
        ['t10k', 10000],
      ] as const) {
        const img = await readIdxImages(join(debian, `${prefix}-images-idx3-ubyte.gz`));
        expect(img).toMatchObject({ count, height: 28, width: 28 });
        const labels = await readIdxLabels(join(debian, `${prefix}-labels-idx1-ubyte.gz`));
        expect(labels.length).toBe(count);
        const perClass = new Array(10).fill(0);
        for (const l of labels) {
          expect(l >= 0 && l <= 9).toBe(true);
          perClass[l]++;
        }
        expect(perClass).toEqual(new Array(10).fill(count / 10)); // Fashion-MNIST is exactly balanced
      }
    },
  );
});
