/**
 * Collects the runs of bench/experiments.sh (runs/exp-*: result.json, metrics.jsonl, wall.json,
 * robustness.json) and the raw-pixel baselines (bench/results/baselines-<dataset>.json) into the
 * README's results tables, printed as markdown and saved to bench/results/experiments.json.
 *
 *   npx tsx bench/results-table.ts
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResultRecord, TrainConfig } from '../src';
import { writeJson } from './util';

interface Row {
  run: string;
  dataset: string;
  what: string;
  evaluation: string;
  epochs: number;
  testCount: number;
  testAccuracy: number;
  /** Seconds in training steps (sum over epochs). */
  trainSeconds: number | null;
  /** Wall seconds of the whole command (training, kNN monitor, checkpoints, evaluation), when recorded. */
  wallSeconds: number | null;
  robustness?: { cleanAccuracy: number; meanCorruptionAccuracy: number; relativeRobustness: number };
  config?: TrainConfig;
}

const root = join(__dirname, '..');
const runsDir = join(root, 'runs');
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const minutes = (s: number | null) => (s === null ? '-' : s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`);

function describe(c: TrainConfig): string {
  const method = { supcon: 'SupCon', simclr: 'SimCLR', ce: 'cross-entropy' }[c.method];
  const variant = c.method === 'supcon' ? ` L_${c.lossVariant ?? 'out'}` : '';
  const views = c.method === 'ce' ? '' : `, ${c.views ?? 2} view${(c.views ?? 2) > 1 ? 's' : ''}`;
  const augment = typeof c.augment === 'string' ? c.augment : c.augment === undefined ? 'paper' : 'custom';
  return `${method}${variant}${views}, ${augment} augmentation, lr ${c.lr}`;
}

function trainingRows(): Row[] {
  if (!existsSync(runsDir)) return [];
  return readdirSync(runsDir)
    .filter((d) => d.startsWith('exp-') && existsSync(join(runsDir, d, 'result.json')))
    .map((d) => {
      const dir = join(runsDir, d);
      const r = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as ResultRecord & { config: TrainConfig };
      const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const trainSeconds = metrics.filter((m) => m.type === 'epoch').reduce((s: number, m: { seconds: number }) => s + m.seconds, 0);
      const wall = existsSync(join(dir, 'wall.json')) ? (JSON.parse(readFileSync(join(dir, 'wall.json'), 'utf8')) as { seconds: number }).seconds : null;
      const rob = existsSync(join(dir, 'robustness.json')) ? JSON.parse(readFileSync(join(dir, 'robustness.json'), 'utf8')) : undefined;
      return {
        run: d,
        dataset: r.config.dataset,
        what: describe(r.config),
        evaluation: r.evaluation === 'linear' ? 'linear on frozen encoder' : 'its own classifier',
        epochs: r.epochs,
        testCount: r.testCount,
        testAccuracy: r.testAccuracy,
        trainSeconds,
        wallSeconds: wall,
        ...(rob ? { robustness: { cleanAccuracy: rob.cleanAccuracy, meanCorruptionAccuracy: rob.meanCorruptionAccuracy, relativeRobustness: rob.relativeRobustness } } : {}),
        config: r.config,
      };
    });
}

function baselineRows(): Row[] {
  const dir = join(root, 'bench', 'results');
  return readdirSync(dir)
    .filter((f) => /^baselines-.*\.json$/.test(f))
    .flatMap((f) => {
      const b = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        dataset: string;
        testCount: number;
        rows: Array<{ baseline: string; testAccuracy: number; trainSeconds: number; settings: { epochs: number } }>;
      };
      return b.rows.map((r) => ({
        run: f,
        dataset: b.dataset,
        what: r.baseline,
        evaluation: 'its own classifier',
        epochs: r.settings.epochs,
        testCount: b.testCount,
        testAccuracy: r.testAccuracy,
        trainSeconds: r.trainSeconds,
        wallSeconds: null,
      }));
    });
}

const rows = [...trainingRows(), ...baselineRows()].sort((a, b) => a.dataset.localeCompare(b.dataset) || b.testAccuracy - a.testAccuracy);
for (const dataset of [...new Set(rows.map((r) => r.dataset))]) {
  console.log(`\n${dataset}\n`);
  console.log('| what | evaluation | epochs | test accuracy | training time | whole command |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows.filter((x) => x.dataset === dataset)) {
    console.log(`| ${r.what} | ${r.evaluation} | ${r.epochs} | ${pct(r.testAccuracy)} (${r.testCount.toLocaleString('en-US')}) | ${minutes(r.trainSeconds)} | ${minutes(r.wallSeconds)} |`);
  }
}
const robust = rows.filter((r) => r.robustness);
if (robust.length) {
  console.log('\n| run | clean accuracy | mean corruption accuracy | ratio |');
  console.log('|---|---|---|---|');
  for (const r of robust) {
    const b = r.robustness!;
    console.log(`| ${r.what} (${r.dataset}, ${r.epochs} epochs) | ${pct(b.cleanAccuracy)} | ${pct(b.meanCorruptionAccuracy)} | ${b.relativeRobustness.toFixed(3)} |`);
  }
}
writeJson(join(root, 'bench', 'results', 'experiments.json'), rows);
