// Using a trained encoder through the library API: embedding image files (the same vectors as the
// run's own split), .npy files that numpy and npyjs read, exact cosine neighbours, and an export
// that plain tfjs loads (in another process, without this package) with the same outputs.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import npyjs from 'npyjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embedImages, exportCheckpoint, findNeighbors, readEmbedding } from '../../src/apps';
import { decodeImage } from '../../src/data/images';
import { InvalidArgumentError } from '../../src/errors';
import { createLinearClassifier } from '../../src/models';
import { loadWeightsInto } from '../../src/train/checkpoint';
import { CheckpointError } from '../../src/train/errors';
import { embedCheckpoint, openCheckpoint, writeEmbedding, type Embedding } from '../../src/train/evaluate';
import { decodeNpy, encodeNpy } from '../../src/train/npy';
import { disposeRunModels } from '../../src/train/run_models';
import { trainRun } from '../../src/train/trainer';
import { makeImageFolder } from '../helpers/image_folder';
import { runWithPlainTfjs } from '../helpers/plain_tfjs';

let root: string;
let data: string;
let run: string;
let testImages: { train: string[]; test: string[] };
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = mkdtempSync(join(tmpdir(), 'supcon-apps-'));
  data = join(root, 'data');
  testImages = await makeImageFolder(data, { classes: ['circle', 'square', 'star'], train: 6, test: 2 });
  run = join(root, 'run');
  await trainRun(
    { dataset: 'image-folder', dataDir: data, imageSize: 16, arch: 'resnet8', width: 0.125, epochs: 1, batchSize: 9, warmupEpochs: 0, projectionDim: 16, knnBank: 0, linearEpochs: 3 },
    { outDir: run, tensorboard: false },
  );
}, 300_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('embedImages', () => {
  let images: Embedding;
  beforeAll(async () => {
    images = await embedImages(run, join(data, 'test'));
  });

  it('gives the vectors the run computes for the same images of its test split', async () => {
    const split = await embedCheckpoint(run, { split: 'test', map: false });
    expect(images.count).toBe(6);
    expect(images.dim).toBe(8); // ResNet-8 at width 1/8
    expect(images.classNames).toEqual(['circle', 'square', 'star']);
    for (let i = 0; i < split.count; i++) {
      const j = images.paths!.indexOf(split.paths![i]);
      expect(j).toBeGreaterThanOrEqual(0);
      expect(images.labels[j]).toBe(split.labels[i]);
      expect(maxDiff(images.vectors.subarray(j * 8, (j + 1) * 8), split.vectors.subarray(i * 8, (i + 1) * 8))).toBeLessThan(1e-5);
    }
    expect(images.checkpoint).toMatchObject({ dir: run, step: 2 });
  });

  it('gives unit-norm projections with kind "projection"', async () => {
    const p = await embedImages(run, testImages.test[0], { kind: 'projection' });
    expect(p.count).toBe(1);
    expect(p.dim).toBe(16);
    expect(Math.hypot(...p.vectors)).toBeCloseTo(1, 5);
    expect(p.labels[0]).toBe(-1); // a single file has no class folder
  });

  it('writes .npy that numpy and npyjs read, with the rest in .meta.json', async () => {
    const file = join(root, 'index.npy');
    const written = await writeEmbedding(images, file);
    expect(written).toEqual([file, join(root, 'index.meta.json')]);
    const bytes = readFileSync(file);
    const parsed = await new npyjs().load(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    expect(parsed.shape).toEqual([6, 8]);
    expect(parsed.dtype).toBe('f4');
    expect(parsed.data).toBeInstanceOf(Float32Array);
    expect(maxDiff(parsed.data as Float32Array, images.vectors)).toBe(0);
    const numpy = spawnSync('python3', ['-c', `import numpy as n, json; a = n.load(${JSON.stringify(file)}); print(json.dumps({"shape": list(a.shape), "dtype": str(a.dtype), "sum": float(a.astype("float64").sum())}))`], { encoding: 'utf8' });
    if (numpy.status === 0) {
      const r = JSON.parse(numpy.stdout);
      expect(r.shape).toEqual([6, 8]);
      expect(r.dtype).toBe('float32');
      expect(r.sum).toBeCloseTo(images.vectors.reduce((a, b) => a + b, 0), 3);
    } else {
      expect(numpy.stderr + (numpy.error?.message ?? '')).toMatch(/No module named 'numpy'|ENOENT/); // only a missing numpy may skip this check
    }
    const meta = JSON.parse(readFileSync(join(root, 'index.meta.json'), 'utf8'));
    expect(meta).toMatchObject({ format: 'supcon-embedding', kind: 'encoder', count: 6, dim: 8, vectorsFile: 'index.npy' });
    expect(meta.vectors).toBeUndefined();
    const back = await readEmbedding(file);
    expect(back.vectors).toEqual(images.vectors);
    expect(back.paths).toEqual(images.paths);
  });

  it('npy encoding round-trips, and bad .npy bytes are a typed error', () => {
    const values = Float32Array.from([1.5, -2, 3e-8, 4, 5, 6]);
    const bytes = encodeNpy(values, [2, 3]);
    expect(bytes.length % 64).toBe((6 * 4) % 64); // the header pads the data to a 64-byte boundary
    expect(decodeNpy(bytes)).toEqual({ data: values, shape: [2, 3] });
    expect(() => decodeNpy(Buffer.from('not numpy at all'), 'x.npy')).toThrow(InvalidArgumentError);
    expect(() => encodeNpy(values, [4, 2])).toThrow(/shape/);
  });
});

describe('findNeighbors', () => {
  let indexFile: string;
  let index: Embedding;
  beforeAll(async () => {
    index = await embedImages(run, join(data, 'train'));
    indexFile = join(root, 'train-index.json');
    await writeEmbedding(index, indexFile);
  });

  it('ranks the index by exact cosine similarity; an indexed image finds itself first', async () => {
    const query = testImages.train[4];
    const [result] = await findNeighbors(run, indexFile, query, { k: 5 });
    expect(result.query).toBe(query);
    expect(result.neighbors).toHaveLength(5);
    expect(result.neighbors[0]).toMatchObject({ rank: 1, path: query, className: 'circle' });
    expect(result.neighbors[0].similarity).toBeCloseTo(1, 5);
    // Brute force in float64 over the whole index.
    const q = index.vectors.subarray(index.paths!.indexOf(query) * 8, index.paths!.indexOf(query) * 8 + 8);
    const cos = Array.from({ length: index.count }, (_, i) => {
      const v = index.vectors.subarray(i * 8, i * 8 + 8);
      let dot = 0;
      let nq = 0;
      let nv = 0;
      for (let d = 0; d < 8; d++) {
        dot += q[d] * v[d];
        nq += q[d] * q[d];
        nv += v[d] * v[d];
      }
      return dot / Math.sqrt(nq * nv);
    });
    const expected = cos.map((c, i) => [c, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
    result.neighbors.forEach((n, r) => {
      expect(n.similarity).toBeCloseTo(expected[r][0], 5);
      expect(n.path).toBe(index.paths![n.index]);
    });
    const all = await findNeighbors(run, indexFile, join(data, 'test'), { k: 100 });
    expect(all).toHaveLength(6);
    expect(all[0].neighbors).toHaveLength(18); // k is clamped to the index
  });

  it('says when the index came from another state of the checkpoint, and rejects other dimensions', async () => {
    const meta = JSON.parse(readFileSync(indexFile, 'utf8'));
    const stale = join(root, 'stale.json');
    writeFileSync(stale, JSON.stringify({ ...meta, checkpoint: { ...meta.checkpoint, step: 999 } }));
    const warnings: string[] = [];
    await findNeighbors(run, stale, testImages.test[0], { k: 1, onDataWarning: (m) => warnings.push(m) });
    expect(warnings.join('\n')).toMatch(/at step 999, the queries with .* at step 2: re-embed the index/);
    const narrow = join(root, 'narrow.json');
    writeFileSync(narrow, JSON.stringify({ ...meta, dim: 2, vectors: meta.vectors.map((r: number[]) => r.slice(0, 2)) }));
    const e = (await findNeighbors(run, narrow, testImages.test[0]).catch((x: unknown) => x)) as InvalidArgumentError;
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.argument).toBe('indexFile');
    await expect(readEmbedding(join(root, 'missing.npy'))).rejects.toThrow(CheckpointError);
    writeFileSync(join(root, 'broken.json'), JSON.stringify({ ...meta, labels: [1] }));
    await expect(readEmbedding(join(root, 'broken.json'))).rejects.toThrow(/'labels' must hold 18 entries/);
  });
});

describe('exportCheckpoint', () => {
  it('writes a model that plain tfjs loads in another process and that gives the same outputs', async () => {
    const out = join(root, 'export');
    const result = await exportCheckpoint(run, out, { projection: true, classifier: true });
    expect(result.maxDifference).toBeLessThan(1e-4);
    expect(result.metadata).toMatchObject({
      input: { shape: [null, 16, 16, 3], channels: 3 },
      classNames: ['circle', 'square', 'star'],
      outputs: [{ name: 'embedding', index: 0, shape: [null, 8] }, { name: 'projection', index: 1, shape: [null, 16] }, { name: 'logits', index: 2, shape: [null, 3] }],
      run: { arch: 'resnet8', method: 'supcon', step: 2 },
    });
    const image = testImages.test[3];
    const pixels = await decodeImage(image, { imageSize: 16, channels: 3 });
    const plain = runWithPlainTfjs(out, pixels);
    expect(plain.supconLoadable).toBe(false);
    expect(plain.classes).not.toContain('L2Normalize');

    const encoder = await embedImages(run, image);
    const projection = await embedImages(run, image, { kind: 'projection' });
    expect(maxDiff(plain.embedding, encoder.vectors)).toBeLessThan(1e-4);
    expect(maxDiff(plain.projection, projection.vectors)).toBeLessThan(1e-4);
    // Logits: the run's saved linear classifier on the encoder features.
    const opened = await openCheckpoint(run);
    const classifier = createLinearClassifier({ inputDim: 8, numClasses: 3 });
    await loadWeightsInto(classifier, join(run, 'linear'));
    const logits = tf.tidy(() => (classifier.predict(tf.tensor2d(encoder.vectors, [1, 8])) as tf.Tensor).dataSync());
    expect(maxDiff(plain.logits, logits)).toBeLessThan(1e-4);
    classifier.dispose();
    disposeRunModels(opened.models);
  });

  it('leaks no tensors', async () => {
    const index = join(root, 'leak-index.json');
    await writeEmbedding(await embedImages(run, join(data, 'test')), index);
    const counts = [tf.memory().numTensors];
    await embedImages(run, join(data, 'test'), { kind: 'projection' });
    counts.push(tf.memory().numTensors);
    await findNeighbors(run, index, testImages.train[0], { k: 3 });
    counts.push(tf.memory().numTensors);
    await exportCheckpoint(run, join(root, 'export-again'), { projection: true, classifier: true });
    counts.push(tf.memory().numTensors);
    expect(counts).toEqual([counts[0], counts[0], counts[0], counts[0]]);
  });

  it('refuses what the run does not have', async () => {
    const copy = join(root, 'no-linear');
    cpSync(run, copy, { recursive: true });
    rmSync(join(copy, 'linear'), { recursive: true });
    await expect(exportCheckpoint(copy, join(root, 'x'), { classifier: true })).rejects.toThrow(/no linear classifier yet/);
    await expect(exportCheckpoint(join(root, 'nope'), join(root, 'x'))).rejects.toThrow(CheckpointError);
    await expect(exportCheckpoint(run, join(root, 'x'), { head: true } as never)).rejects.toThrow(/unknown option 'head'/);
  });
});
