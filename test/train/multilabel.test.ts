// Multi-label training data (src/data/label_sets.ts): label sets through the library API
// (withLabelSets) and through an image folder's labels CSV (`labelsCsv`, `--labels-csv`), which
// the trainer hands to the loss as its positives.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatherLabelSets, parseLabelsCsv, subsetDataset, withLabelSets, type ImageDataset } from '../../src/data';
import { InvalidArgumentError } from '../../src/errors';
import { resolveTrainConfig } from '../../src/train/config';
import { loadConfigSplit } from '../../src/train/run_dataset';
import { readTrainingState } from '../../src/train/run_state';
import { trainRun } from '../../src/train/trainer';
import { makeImageFolder } from '../helpers/image_folder';
import { smallSplits, tinyConfig, tinyEncoder } from './helpers';

let root: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'supcon-multilabel-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const common = { buildEncoder: tinyEncoder, fastKernels: false, tensorboard: false } as const;

describe('label sets of a dataset', () => {
  it('are multi-hot rows over the sorted label names, kept by subsets and gathered per batch', async () => {
    const { train } = await smallSplits(4, 1);
    const d = withLabelSets(train, [['b', 'a'], [], ['c'], ['a']]);
    expect(d.labelSets!.names).toEqual(['a', 'b', 'c']);
    expect(Array.from(d.labelSets!.sets)).toEqual([1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
    const sub = subsetDataset(d, [3, 0]);
    expect(Array.from(sub.labelSets!.sets)).toEqual([1, 0, 0, 1, 1, 0]);
    expect(gatherLabelSets(d.labelSets!, [2])).toEqual({ sets: Uint8Array.of(0, 0, 1), numLabels: 3 });
    expect(() => withLabelSets(train, [['a']])).toThrow(InvalidArgumentError);
  });

  it('parse from a labels CSV: comments, blank lines, spaces and empty sets; malformed and repeated lines are refused', () => {
    const csv = '# path,labels\n\ntrain/a/x.png, pet ; cat \ntrain/a/y.png,\n';
    const m = parseLabelsCsv(csv, '/data', 'labels.csv');
    expect(m.get('/data/train/a/x.png')).toEqual(['pet', 'cat']);
    expect(m.get('/data/train/a/y.png')).toEqual([]);
    expect(() => parseLabelsCsv('no comma here\n', '/data', 'labels.csv')).toThrow(/labels\.csv:1/);
    expect(() => parseLabelsCsv('a.png,x\na.png,y\n', '/data', 'labels.csv')).toThrow(/labels\.csv:2.*second line/);
  });
});

describe('training on multi-label data', () => {
  it('through the library API: the loss sees the label sets (a run differs from the class-id run)', async () => {
    const datasets = await smallSplits(32, 16);
    // Sets that cut across the classes: label 'even'/'odd' of the class plus the class itself.
    const lists = Array.from(datasets.train.labels, (c) => [`class${c}`, c % 2 === 0 ? 'even' : 'odd']);
    const multi = { train: withLabelSets(datasets.train, lists), test: datasets.test };
    const config = tinyConfig({ epochs: 1, batchSize: 16, knnBank: 0, linearEpochs: 1 });
    const a = await trainRun(config, { ...common, outDir: join(root, 'ids'), datasets });
    const b = await trainRun(config, { ...common, outDir: join(root, 'sets'), datasets: multi });
    expect(b.status).toBe('complete');
    expect(Number.isFinite(b.metrics[0].loss)).toBe(true);
    expect(b.metrics[0].loss).not.toBe(a.metrics[0].loss);
    // One-hot sets of the classes are the class ids: the same run.
    const oneHot = { train: withLabelSets(datasets.train, Array.from(datasets.train.labels, (c) => [`class${c}`])), test: datasets.test };
    const c = await trainRun(config, { ...common, outDir: join(root, 'onehot'), datasets: oneHot });
    expect(Math.abs(c.metrics[0].loss - a.metrics[0].loss)).toBeLessThan(1e-5 * Math.abs(a.metrics[0].loss));
    // With a memory queue: the queue keeps the rows' label sets, saved in the checkpoint.
    const queued = await trainRun({ ...config, queueSize: 24 }, { ...common, outDir: join(root, 'queue'), datasets: multi });
    expect(queued.status).toBe('complete');
    expect(queued.metrics[0].loss).not.toBe(b.metrics[0].loss);
    expect((await readTrainingState(queued.outDir)).queue).toEqual({ size: 24, dim: 16, labeled: true, numLabels: 12, rows: 24 });
  });

  it('through an image folder and its labels CSV (config.labelsCsv, the --labels-csv path)', async () => {
    const dir = join(root, 'photos');
    const written = await makeImageFolder(dir, { classes: ['cat', 'dog'], train: 4, test: 2 });
    const csv = join(root, 'labels.csv');
    const line = (p: string, i: number) => `${relative(dir, p)},${p.includes('cat') ? 'cat' : 'dog'};${i % 2 ? 'indoor' : 'outdoor'}`;
    await writeFile(csv, written.train.map(line).join('\n') + '\n');
    const config = resolveTrainConfig(tinyConfig({ dataset: 'image-folder', dataDir: dir, imageSize: 16, labelsCsv: csv, epochs: 1, batchSize: 4, knnBank: 0, linearEpochs: 1 }));
    const train = (await loadConfigSplit(config, 'train')) as ImageDataset;
    expect(train.labelSets!.names).toEqual(['cat', 'dog', 'indoor', 'outdoor']);
    expect(train.labelSets!.sets.length).toBe(train.count * 4);
    const run = await trainRun(config, { ...common, outDir: join(root, 'folder') });
    expect(run.status).toBe('complete');
    // An image without a line is refused, naming the file.
    await writeFile(csv, written.train.slice(1).map(line).join('\n'));
    await expect(loadConfigSplit(config, 'train')).rejects.toThrow(/labels\.csv.*none for 1 of them/);
    // Only image folders have a labels CSV.
    expect(() => resolveTrainConfig({ labelsCsv: csv })).toThrow(/config\.labelsCsv/);
  });
});
