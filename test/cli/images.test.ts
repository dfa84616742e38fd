/**
 * One's own images through the CLI, end to end on a generated folder (several formats, a corrupt
 * file, a non-image file): train one epoch, evaluate, embed (.npy and .json), neighbours (table
 * and JSON), export and reload the export with plain tfjs, read the TensorBoard events back; and
 * the usage errors of the new flags and commands.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/data/images';
import { readEventFile } from '../../src/train/tensorboard';
import { errorLines, supcon } from '../helpers/cli';
import { makeImageFolder } from '../helpers/image_folder';
import { runWithPlainTfjs } from '../helpers/plain_tfjs';

let root: string;
let data: string;
let images: { train: string[]; test: string[]; corrupt?: string };
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'supcon-cli-images-'));
  data = join(root, 'photos');
  images = await makeImageFolder(data, { classes: ['apple', 'banana', 'cherry'], train: 6, test: 2, extras: true });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const TRAIN = ['--dataset', 'image-folder', '--image-size', '16', '--model', 'resnet8', '--width', '0.125', '--batch-size', '8', '--knn-bank', '17', '--knn-queries', '6', '--linear-epochs', '3', '--projection-dim', '16'];

describe('an image folder from train to export', () => {
  const run = () => join(root, 'run');

  beforeAll(async () => {
    const trained = await supcon(['train', ...TRAIN, '--data-dir', data, '--epochs', '1', '--out', run(), '--no-plots']);
    expect(trained.code, trained.stderr).toBe(0);
    // The corrupt file: one warning naming it and a summary, nothing else on stderr.
    expect(errorLines(trained.stderr)).toEqual([
      expect.stringMatching(new RegExp(`^warning: skipped unreadable image ${images.corrupt!}: `)),
      expect.stringMatching(/^warning: skipped 1 unreadable image\(s\) of 25 in /),
    ]);
    expect(trained.stdout).toContain(`decoding 25 images of ${data}\n`);
    expect(trained.stdout).toMatch(/decoded 25 images in [\d.]+ s \(\d+ images\/s\)/);
    expect(trained.stdout).toContain('on image-folder (18 train / 6 test)');
    expect(trained.stdout).toContain(`tensorboard: tensorboard --logdir ${join(run(), 'tensorboard')}`);
  }, 300_000);

  it('trained and evaluated on the folder, with TensorBoard events matching metrics.jsonl', async () => {
    const result = JSON.parse(await readFile(join(run(), 'result.json'), 'utf8'));
    expect(result).toMatchObject({ testCount: 6, config: { dataset: 'image-folder', dataDir: data, imageSize: 16, channels: 3 } });
    const dataset = JSON.parse(await readFile(join(run(), 'dataset.json'), 'utf8'));
    expect(dataset).toMatchObject({ name: 'image-folder', height: 16, width: 16, channels: 3, classNames: ['apple', 'banana', 'cherry'] });

    const evaluated = await supcon(['eval', '--checkpoint', run(), '--json']);
    expect(evaluated.code).toBe(0);
    expect(JSON.parse(evaluated.stdout)).toMatchObject({ testAccuracy: result.testAccuracy, classifier: 'saved-linear', testCount: 6 });

    const board = join(run(), 'tensorboard');
    const eventFile = readdirSync(board).find((f) => f.startsWith('events.out.tfevents.'))!;
    const events = await readEventFile(join(board, eventFile));
    const metrics = (await readFile(join(run(), 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(events[0].fileVersion).toBe('brain.Event:2');
    expect(events[1].scalars!['train/loss']).toBeCloseTo(metrics[0].loss, 5);
    expect(events[1].scalars!['monitor/knn_accuracy']).toBeCloseTo(metrics[0].knnAccuracy, 6);
    expect(events[2].scalars!['eval/linear_test_accuracy']).toBeCloseTo(result.testAccuracy, 6);
    const meta = (await readFile(join(board, 'metadata.tsv'), 'utf8')).trim().split('\n');
    expect(meta[0]).toBe('class\tpath');
    expect(meta).toHaveLength(7);
    expect(meta[1]).toMatch(/^apple\t.*\/test\/apple\//);
  });

  it('embeds the images (.npy and .json), and finds neighbours (table and JSON)', async () => {
    const index = join(root, 'index.npy');
    const embedded = await supcon(['embed', '--checkpoint', run(), '--images', join(data, 'train'), '--out', index, '--no-map']);
    expect(embedded.code, embedded.stderr).toBe(0);
    expect(embedded.stdout).toContain(`embedded 18 images of ${join(data, 'train')} into 8 dimensions (encoder): ${index}, ${join(root, 'index.meta.json')}`);
    expect(errorLines(embedded.stderr)).toEqual([expect.stringContaining(images.corrupt!), expect.stringMatching(/skipped 1 unreadable/)]);

    const query = images.train[7]; // banana_1
    const table = await supcon(['neighbors', '--checkpoint', run(), '--index', index, '--query', query, '-k', '3']);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toBe(`query: ${query}`);
    expect(lines[1]).toMatch(/^ +rank +similarity +class +path$/);
    expect(lines).toHaveLength(5);
    expect(lines[2]).toMatch(new RegExp(`^ +1 +1\\.0000 +banana +${query}$`));

    const json = await supcon(['neighbors', '--checkpoint', run(), '--index', index, '--query', join(data, 'test'), '-k', '4', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const results = JSON.parse(json.stdout);
    expect(results).toHaveLength(6);
    for (const r of results) {
      expect(r.neighbors).toHaveLength(4);
      const sims = r.neighbors.map((n: { similarity: number }) => n.similarity);
      expect([...sims].sort((a, b) => b - a)).toEqual(sims);
      for (const n of r.neighbors) expect(n.path.startsWith(join(data, 'train'))).toBe(true);
    }

    const projected = join(root, 'projection.json');
    const p = await supcon(['embed', '--checkpoint', run(), '--images', join(data, 'test'), '--out', projected, '--projection', '--no-map']);
    expect(p.code, p.stderr).toBe(0);
    const pj = JSON.parse(await readFile(projected, 'utf8'));
    expect(pj).toMatchObject({ kind: 'projection', count: 6, dim: 16, split: null, classNames: ['apple', 'banana', 'cherry'] });
    expect(Math.hypot(...pj.vectors[0])).toBeCloseTo(1, 5);
  });

  it('exports a model that plain tfjs loads and that gives the embed command\'s vectors', async () => {
    const out = join(root, 'exported');
    const exported = await supcon(['export', '--checkpoint', run(), '--out', out, '--projection', '--classifier']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toContain('(embedding [8], projection [16], logits [3])');
    expect(exported.stdout).toMatch(/outputs match the checkpoint's models within/);
    for (const f of ['model.json', 'weights.bin', 'metadata.json']) expect(existsSync(join(out, f)), f).toBe(true);

    const image = images.test[5];
    const one = join(root, 'one.json');
    expect((await supcon(['embed', '--checkpoint', run(), '--images', image, '--out', one, '--no-map'])).code).toBe(0);
    const expected = JSON.parse(await readFile(one, 'utf8')).vectors[0] as number[];
    const plain = runWithPlainTfjs(out, await decodeImage(image, { imageSize: 16, channels: 3 }));
    expect(plain.supconLoadable).toBe(false);
    expect(plain.embedding).toHaveLength(8);
    plain.embedding.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 4));
    expect(plain.logits).toHaveLength(3);
  });
});

describe.concurrent('usage errors of the image commands: one line, exit code 2', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['image-folder without --data-dir', ['train', '--dataset', 'image-folder'], /^supcon train: Expected the image folder \(--data-dir\) for dataset 'image-folder' for config\.dataDir but received none$/],
    ['--image-size with another dataset', ['train', '--image-size', '64'], /^supcon train: Expected no value \(only dataset 'image-folder' has imageSize\) for config\.imageSize/],
    ['bad --channels', ['train', '--channels', '2'], /^supcon train: Expected one of '1', '3' for --channels but received '2'/],
    ['bad --val-split', ['train', '--val-split', '1.5'], /^supcon train: Expected finite number > 0 and < 1 for --val-split/],
    ['a folder that is not an ImageFolder', ['train', '--dataset', 'image-folder', '--data-dir', '/nonexistent/photos'], /^supcon train: Cannot read dataset file \/nonexistent\/photos: no such folder\. Fix: arrange the images/],
    ['--split with --images', ['embed', '--checkpoint', 'runs/x', '--out', 'e.json', '--images', 'x', '--split', 'train'], /^supcon embed: Expected nothing with --images .* for --split but received train$/],
    ['neighbors without --index', ['neighbors', '--checkpoint', 'runs/x', '--query', 'q.png'], /^supcon neighbors: required option '--index <file>' not specified$/],
    ['neighbors with a bad -k', ['neighbors', '--checkpoint', 'r', '--index', 'i.npy', '--query', 'q', '-k', '0'], /^supcon neighbors: Expected integer >= 1 for -k but received 0/],
    ['export of a missing run', ['export', '--checkpoint', '/nonexistent/run', '--out', 'x'], /^supcon export: Cannot use checkpoint file \/nonexistent\/run: no such directory$/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const { code, stdout, stderr } = await supcon(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const lines = errorLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });
});
