/**
 * Robustness of a trained run to common corruptions (Hendrycks & Dietterich, ICLR 2019; the
 * corruptions and their five severities are in `src/data/corruptions.ts`): the run's classifier
 * (its saved linear classifier, or the CE head) scores the test set corrupted by every kind at
 * every severity. The summary numbers follow the SupCon paper's robustness table: the mean
 * corruption accuracy (mean over kinds and severities, "mCA") and its ratio to the clean
 * accuracy ("relative" robustness; 1 means no loss at all).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as validate from '../validate';
import { corruptDataset, CORRUPTIONS, CORRUPTION_PARAMETERS, SEVERITIES, type CorruptionName } from '../data';
import { checkpointScorer, loadSplit, openCheckpoint, type OpenCheckpointOptions } from './evaluate';
import { firstRecords } from './features';
import { disposeRunModels, type EncoderBuilder } from './run_models';
import { RUN_FILES } from './run_state';

/** Options of {@link evaluateRobustness}. */
export interface RobustnessOptions extends OpenCheckpointOptions {
  /** Corruption kinds to apply (default: all of `CORRUPTIONS`). */
  corruptions?: CorruptionName[];
  /** Severities to apply, each 1-5 (default: all five). */
  severities?: number[];
  /** Seed of the random corruptions' noise (default 0). */
  seed?: number;
  /** Score only the first n test images (default: the run's test limit, else all). */
  limitTest?: number;
  /** Called after every (corruption, severity) with its accuracy. */
  onResult?: (corruption: CorruptionName, severity: number, accuracy: number) => void;
}

/** Accuracy under one corruption at each severity. */
export interface CorruptionRow {
  corruption: CorruptionName;
  /** The corruption's parameter at each evaluated severity (see `CORRUPTION_PARAMETERS`). */
  parameters: number[];
  /** Test accuracy at each evaluated severity, in the order of `severities`. */
  accuracies: number[];
  /** Mean of `accuracies`. */
  mean: number;
}

/** What {@link evaluateRobustness} measured; also the JSON it writes. */
export interface RobustnessReport {
  format: 'supcon-robustness';
  /** The run directory. */
  run: string;
  method: string;
  dataset: string;
  /** How the run is scored: a linear classifier on the frozen encoder, or the CE head. */
  evaluation: 'linear' | 'classifier';
  /** Pre-training epochs of the checkpoint. */
  epochs: number;
  testCount: number;
  seed: number;
  severities: number[];
  /** Accuracy on the uncorrupted test images. */
  cleanAccuracy: number;
  rows: CorruptionRow[];
  /** Mean accuracy over every corruption and severity ("mCA"). */
  meanCorruptionAccuracy: number;
  /** meanCorruptionAccuracy / cleanAccuracy. */
  relativeRobustness: number;
  /** Wall seconds the evaluation took. */
  seconds: number;
  time: string;
}

/**
 * Scores a run on its test set under common corruptions.
 *
 * ```ts
 * const report = await evaluateRobustness('runs/supcon');   // all 9 kinds x 5 severities
 * console.log(formatRobustnessTable(report));
 * ```
 * @throws CheckpointError when `dir` holds no usable run; InvalidArgumentError for bad options.
 */
export async function evaluateRobustness(dir: string, options: RobustnessOptions = {}): Promise<RobustnessReport> {
  const o = validate.options('options', options, [
    'dataDir',
    'buildEncoder',
    'fastKernels',
    'corruptions',
    'severities',
    'seed',
    'limitTest',
    'onResult',
  ]);
  const corruptions = o.corruptions === undefined ? [...CORRUPTIONS] : checkList('options.corruptions', o.corruptions, (v, i) => validate.oneOf(`options.corruptions[${i}]`, v, CORRUPTIONS));
  const severities = o.severities === undefined ? [...SEVERITIES] : checkList('options.severities', o.severities, (v, i) => validate.integer(`options.severities[${i}]`, v, 1, 5));
  const seed = o.seed === undefined ? 0 : validate.integer('options.seed', o.seed, 0, 2 ** 32 - 1);
  const limitTest = o.limitTest === undefined ? undefined : validate.integer('options.limitTest', o.limitTest, 1);
  const onResult = o.onResult as RobustnessOptions['onResult'];
  if (onResult !== undefined && typeof onResult !== 'function') validate.fail('options.onResult', 'a function', onResult);
  const started = performance.now();
  const opened = await openCheckpoint(dir, {
    ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }),
    ...(o.buildEncoder === undefined ? {} : { buildEncoder: o.buildEncoder as EncoderBuilder }),
    ...(o.fastKernels === undefined ? {} : { fastKernels: o.fastKernels as boolean }),
  });
  try {
    const { config, state } = opened;
    const scorer = await checkpointScorer(opened);
    try {
      const test = firstRecords(await loadSplit(config, 'test'), limitTest ?? config.limitTest);
      const cleanAccuracy = scorer.accuracy(test);
      const rows: CorruptionRow[] = corruptions.map((corruption) => {
        const accuracies = severities.map((severity) => {
          const accuracy = scorer.accuracy(corruptDataset(test, corruption, severity, seed));
          onResult?.(corruption, severity, accuracy);
          return accuracy;
        });
        return {
          corruption,
          parameters: severities.map((s) => CORRUPTION_PARAMETERS[corruption][s - 1]),
          accuracies,
          mean: mean(accuracies),
        };
      });
      const meanCorruptionAccuracy = mean(rows.flatMap((r) => r.accuracies));
      return {
        format: 'supcon-robustness',
        run: dir,
        method: config.method,
        dataset: config.dataset,
        evaluation: scorer.evaluation,
        epochs: state.epoch,
        testCount: test.count,
        seed,
        severities,
        cleanAccuracy,
        rows,
        meanCorruptionAccuracy,
        relativeRobustness: cleanAccuracy > 0 ? meanCorruptionAccuracy / cleanAccuracy : 0,
        seconds: (performance.now() - started) / 1000,
        time: new Date().toISOString(),
      };
    } finally {
      scorer.dispose();
    }
  } finally {
    disposeRunModels(opened.models);
  }
}

function checkList<T>(argument: string, value: unknown, check: (v: unknown, i: number) => T): T[] {
  if (!Array.isArray(value) || value.length === 0) validate.fail(argument, 'a non-empty array', value);
  return (value as unknown[]).map(check);
}

const mean = (values: number[]): number => values.reduce((s, v) => s + v, 0) / values.length;
const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;

/** The report as a markdown table: one row per corruption (accuracy per severity, mean), then the summary. */
export function formatRobustnessTable(report: RobustnessReport): string {
  const head = `| corruption | ${report.severities.map((s) => `severity ${s}`).join(' | ')} | mean |`;
  const rule = `|---|${report.severities.map(() => '---|').join('')}---|`;
  const rows = report.rows.map((r) => `| ${r.corruption} | ${r.accuracies.map(pct).join(' | ')} | ${pct(r.mean)} |`);
  return [
    `${report.method} on ${report.dataset} (${report.testCount} test images, ${report.evaluation === 'linear' ? 'linear classifier' : 'classifier head'}, seed ${report.seed})`,
    '',
    head,
    rule,
    ...rows,
    '',
    `clean accuracy ${pct(report.cleanAccuracy)}, mean corruption accuracy ${pct(report.meanCorruptionAccuracy)}, ` +
      `ratio ${report.relativeRobustness.toFixed(3)}`,
  ].join('\n');
}

/** Writes the report as JSON (default: `<run>/robustness.json`); returns the path. */
export async function writeRobustnessReport(report: RobustnessReport, file = join(report.run, RUN_FILES.robustness)): Promise<string> {
  validate.string('file', file);
  await writeFile(file, JSON.stringify(report, null, 2) + '\n');
  return file;
}
