/**
 * Runs a named sweep of training runs one after another (never in parallel: each run uses every
 * core) and writes their results to bench/results/sweep-<name>.json, printing a markdown table.
 * The sweeps are defined in bench/sweeps.ts.
 *
 *   npx tsx bench/sweep.ts <name> [--only id1,id2] [--rerun]
 *   npx tsx bench/sweep.ts --list
 *
 * Each run lives in runs/sweep/<name>/<id>/ (a normal run directory). A run that finished is not
 * run again (its result.json is read) unless --rerun is given; an interrupted one is resumed, so
 * a sweep killed halfway continues where it stopped. Timings are wall-clock seconds on the
 * machine the sweep ran on, together with its load average (other processes slow a run down).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { hasCheckpoint, resumeRun, trainRun, formatEpochRecord, type TrainConfig, type ResultRecord, type EpochRecord } from '../src';
import { SWEEPS, type SweepRun } from './sweeps';
import { machine, writeJson } from './util';

/** One row of a sweep's JSON. */
export interface SweepRow {
  id: string;
  /** The settings this run changes from the sweep's base. */
  changes: Partial<TrainConfig>;
  config: TrainConfig;
  testAccuracy: number;
  trainAccuracy: number;
  evaluation: string;
  epochs: number;
  /** Seconds in training steps (sum over epochs, from metrics.jsonl). */
  trainSeconds: number;
  /** Wall seconds of the whole run: data loading, training, kNN monitor, checkpoints, final evaluation. */
  wallSeconds: number | null;
  /** kNN monitor accuracy after every epoch (empty when the monitor was off). */
  knnByEpoch: number[];
  lossByEpoch: number[];
  /** 1-minute load average when the run started and ended (2 cores: above 2 means contention). */
  loadStart: number | null;
  loadEnd: number | null;
  /** True when the run was continued from a checkpoint (its wall time then misses the first part). */
  resumed: boolean;
  finishedAt: string;
  /** Why the run stopped before its result (e.g. a diverged loss); its accuracies are then 0. */
  failed?: string;
}

function readRow(dir: string, run: SweepRun, extra: Partial<SweepRow>): SweepRow {
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as ResultRecord & { config: TrainConfig };
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  const byEpoch = new Map<number, EpochRecord>();
  for (const line of lines) {
    const r = JSON.parse(line) as EpochRecord | ResultRecord;
    if (r.type === 'epoch') byEpoch.set(r.epoch, r);
  }
  const epochs = [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
  return {
    id: run.id,
    changes: run.config,
    config: result.config,
    testAccuracy: result.testAccuracy,
    trainAccuracy: result.trainAccuracy,
    evaluation: result.evaluation,
    epochs: result.epochs,
    trainSeconds: epochs.reduce((s, e) => s + e.seconds, 0),
    wallSeconds: null,
    knnByEpoch: epochs.filter((e) => e.knnAccuracy !== undefined).map((e) => e.knnAccuracy as number),
    lossByEpoch: epochs.map((e) => e.loss),
    loadStart: null,
    loadEnd: null,
    resumed: false,
    finishedAt: result.time,
    ...extra,
  };
}

/** min / median / max of the test accuracy of the rows of each value of `key` (e.g. per method). */
export function spreadTable(rows: SweepRow[], key: keyof TrainConfig): { table: string; groups: Array<Record<string, unknown>> } {
  const groups = new Map<string, number[]>();
  for (const r of rows) {
    const g = String(r.config[key]);
    groups.set(g, [...(groups.get(g) ?? []), r.testAccuracy]);
  }
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const out: Array<Record<string, unknown>> = [];
  const lines = [`| ${key} | runs | min | median | max | max - min | failed runs |`, '|---|---|---|---|---|---|---|'];
  const failed = new Map<string, number>();
  for (const r of rows) if (r.failed !== undefined) failed.set(String(r.config[key]), (failed.get(String(r.config[key])) ?? 0) + 1);
  for (const [g, values] of groups) {
    const sorted = [...values].sort((a, b) => a - b);
    const m = sorted.length;
    const median = m % 2 ? sorted[(m - 1) / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
    out.push({ [key]: g, runs: m, min: sorted[0], median, max: sorted[m - 1], failed: failed.get(g) ?? 0 });
    lines.push(
      `| ${g} | ${m} | ${pct(sorted[0])} | ${pct(median)} | ${pct(sorted[m - 1])} | ${(100 * (sorted[m - 1] - sorted[0])).toFixed(2)} points | ${failed.get(g) ?? 0} |`,
    );
  }
  return { table: lines.join('\n'), groups: out };
}

function table(rows: SweepRow[]): string {
  const lines = ['| id | test accuracy | train accuracy | epochs | train s | wall s | load |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const load = r.loadStart === null ? '-' : `${r.loadStart.toFixed(1)}-${(r.loadEnd ?? 0).toFixed(1)}`;
    lines.push(
      `| ${r.id} | ${(100 * r.testAccuracy).toFixed(2)}% | ${(100 * r.trainAccuracy).toFixed(2)}% | ${r.epochs} | ` +
        `${r.trainSeconds.toFixed(0)} | ${r.wallSeconds === null ? '-' : r.wallSeconds.toFixed(0)} | ${load} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--list') || args.length === 0) {
    for (const [name, s] of Object.entries(SWEEPS)) console.log(`${name}: ${s.description} (${s.runs.length} runs)`);
    return;
  }
  const name = args[0];
  const sweep = SWEEPS[name];
  if (!sweep) throw new Error(`unknown sweep '${name}'; one of ${Object.keys(SWEEPS).join(', ')}`);
  const onlyArg = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  const only = onlyArg === undefined ? undefined : new Set(onlyArg.split(','));
  const rerun = args.includes('--rerun');
  await tf.setBackend('cpu');
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;

  const outPath = join('bench', 'results', `sweep-${name}.json`);
  const previous: SweepRow[] = existsSync(outPath) ? (JSON.parse(readFileSync(outPath, 'utf8')) as { rows: SweepRow[] }).rows : [];
  const rows = new Map(previous.map((r) => [r.id, r]));
  const done = () => sweep.runs.map((r) => rows.get(r.id)).filter((r): r is SweepRow => r !== undefined);
  const save = () =>
    writeJson(outPath, {
      sweep: name,
      description: sweep.description,
      command: `npx tsx bench/sweep.ts ${name}`,
      base: sweep.base,
      machine: machine(),
      ...(sweep.spreadBy ? { spread: spreadTable(done(), sweep.spreadBy).groups } : {}),
      rows: done(),
    });

  for (const run of sweep.runs) {
    if (only && !only.has(run.id)) continue;
    const dir = join('runs', 'sweep', name, run.id);
    if (rerun) rmSync(dir, { recursive: true, force: true });
    if (existsSync(join(dir, 'result.json'))) {
      if (!rows.has(run.id)) rows.set(run.id, readRow(dir, run, {}));
      console.log(`${run.id}: done before (${(100 * rows.get(run.id)!.testAccuracy).toFixed(2)}%)`);
      continue;
    }
    const resumed = hasCheckpoint(dir);
    console.log(`\n== ${name}/${run.id}${resumed ? ' (resuming)' : ''}: ${JSON.stringify(run.config)}`);
    const loadStart = loadavg()[0];
    const started = performance.now();
    const callbacks = {
      onEpochEnd: (r: EpochRecord) => console.log('  ' + formatEpochRecord(r)),
    };
    let result;
    try {
      result = resumed
        ? await resumeRun({ outDir: dir, callbacks })
        : await trainRun({ ...sweep.base, ...run.config }, { outDir: dir, callbacks });
    } catch (e) {
      // A run that fails (a diverged loss, typically) is a result of the sweep: it counts with
      // accuracy 0 in the spread, and the message is kept.
      const message = (e as Error).message;
      console.log(`  -> failed: ${message}`);
      const config = { ...sweep.base, ...run.config } as TrainConfig;
      rows.set(run.id, {
        id: run.id, changes: run.config, config, testAccuracy: 0, trainAccuracy: 0, evaluation: 'failed', epochs: 0,
        trainSeconds: 0, wallSeconds: (performance.now() - started) / 1000, knnByEpoch: [], lossByEpoch: [],
        loadStart, loadEnd: loadavg()[0], resumed, finishedAt: new Date().toISOString(), failed: message,
      });
      save();
      continue;
    }
    const wallSeconds = (performance.now() - started) / 1000;
    if (result.status !== 'complete') throw new Error(`${run.id} did not complete`);
    const row = readRow(dir, run, { wallSeconds, loadStart, loadEnd: loadavg()[0], resumed });
    rows.set(run.id, row);
    console.log(`  -> test accuracy ${(100 * row.testAccuracy).toFixed(2)}%, ${wallSeconds.toFixed(0)} s wall`);
    save();
  }
  save();
  console.log(`\n${sweep.description}\n`);
  console.log(table(done()));
  if (sweep.spreadBy) console.log('\n' + spreadTable(done(), sweep.spreadBy).table);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
