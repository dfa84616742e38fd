import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corruptDataset, type ImageDataset } from '../../src/data';
import { InvalidArgumentError } from '../../src/errors';
import { checkpointScorer, evaluateCheckpoint, openCheckpoint } from '../../src/train/evaluate';
import { disposeRunModels } from '../../src/train/run_models';
import { evaluateRobustness, formatRobustnessTable, writeRobustnessReport, type RobustnessReport } from '../../src/train/robustness';
import { trainRun } from '../../src/train/trainer';
import { smallSplits, tinyConfig, tinyEncoder } from './helpers';

let root: string;
let data: { train: ImageDataset; test: ImageDataset };
let supconDir: string;
let ceDir: string;
const common = { buildEncoder: tinyEncoder, fastKernels: false } as const;

beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'supcon-robust-'));
  // The runs read the test split from the embedded dataset (limitTest 48), as robustness evaluation does.
  data = await smallSplits(48, 48);
  const base = tinyConfig({ epochs: 1, batchSize: 16, knnBank: 0, linearEpochs: 3, limitTest: 48 });
  supconDir = (await trainRun(base, { ...common, outDir: join(root, 'supcon'), datasets: data })).outDir;
  ceDir = (await trainRun({ ...base, method: 'ce' }, { ...common, outDir: join(root, 'ce'), datasets: data })).outDir;
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('evaluateRobustness', () => {
  let report: RobustnessReport;
  beforeAll(async () => {
    report = await evaluateRobustness(supconDir, { ...common, corruptions: ['contrast', 'gaussian-noise'], severities: [1, 5] });
  });

  it('scores the clean test set like eval, and every corruption at every severity', async () => {
    const clean = await evaluateCheckpoint(supconDir, common);
    expect(report).toMatchObject({ format: 'supcon-robustness', method: 'supcon', evaluation: 'linear', testCount: 48, seed: 0, severities: [1, 5] });
    expect(report.cleanAccuracy).toBe(clean.testAccuracy);
    expect(report.rows.map((r) => r.corruption)).toEqual(['contrast', 'gaussian-noise']);
    expect(report.rows[0].parameters).toEqual([0.75, 0.15]);
    // Each cell is the run's classifier on the corrupted copy of the test set.
    const opened = await openCheckpoint(supconDir, common);
    const scorer = await checkpointScorer(opened);
    const test = { ...data.test };
    expect(report.rows[1].accuracies[1]).toBe(scorer.accuracy(corruptDataset(test, 'gaussian-noise', 5, 0)));
    expect(report.rows[0].accuracies[0]).toBe(scorer.accuracy(corruptDataset(test, 'contrast', 1, 0)));
    scorer.dispose();
    disposeRunModels(opened.models);
  });

  it('summarizes: row means, the mean corruption accuracy and its ratio to clean', () => {
    for (const row of report.rows) expect(row.mean).toBeCloseTo((row.accuracies[0] + row.accuracies[1]) / 2, 12);
    const all = report.rows.flatMap((r) => r.accuracies);
    expect(report.meanCorruptionAccuracy).toBeCloseTo(all.reduce((s, v) => s + v, 0) / all.length, 12);
    expect(report.relativeRobustness).toBeCloseTo(report.meanCorruptionAccuracy / report.cleanAccuracy, 12);
    const table = formatRobustnessTable(report);
    expect(table).toContain('| corruption | severity 1 | severity 5 | mean |');
    expect(table).toContain(`| contrast | ${(100 * report.rows[0].accuracies[0]).toFixed(2)}% |`);
    expect(table).toContain(`ratio ${report.relativeRobustness.toFixed(3)}`);
  });

  it('is reproducible under its seed and writes JSON', async () => {
    const again = await evaluateRobustness(supconDir, { ...common, corruptions: ['contrast', 'gaussian-noise'], severities: [1, 5] });
    expect(again.rows).toEqual(report.rows);
    const file = await writeRobustnessReport(report);
    expect(file).toBe(join(supconDir, 'robustness.json'));
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(report);
  });

  it('scores a cross-entropy run with its classifier head', async () => {
    const ce = await evaluateRobustness(ceDir, { ...common, corruptions: ['jpeg'], severities: [3] });
    expect(ce).toMatchObject({ method: 'ce', evaluation: 'classifier' });
    expect(ce.cleanAccuracy).toBe((await evaluateCheckpoint(ceDir, common)).testAccuracy);
  });

  it('names bad options', async () => {
    await expect(evaluateRobustness(supconDir, { ...common, severities: [0] })).rejects.toThrow(/for options\.severities\[0\]/);
    await expect(evaluateRobustness(supconDir, { ...common, corruptions: ['fog' as never] })).rejects.toThrow(/for options\.corruptions\[0\]/);
    await expect(evaluateRobustness(supconDir, { ...common, severities: [] })).rejects.toThrow(InvalidArgumentError);
  });
});
