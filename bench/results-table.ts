/**
 * Collects the result.json of every runs/exp-NAME folder (written by bench/experiments.sh) into the README's results
 * table, printed as markdown and saved to bench/results/experiments.json.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJson } from './util';

interface RunResult {
  method: string;
  evaluation: string;
  testAccuracy: number;
  testCount: number;
  epochs: number;
  config: { dataset: string; arch: string; batchSize: number; lr: number; temperature: number };
}

const runsDir = join(__dirname, '..', 'runs');
const rows = readdirSync(runsDir)
  .filter((d) => d.startsWith('exp-') && existsSync(join(runsDir, d, 'result.json')))
  .map((d) => {
    const r = JSON.parse(readFileSync(join(runsDir, d, 'result.json'), 'utf8')) as RunResult;
    const metrics = readFileSync(join(runsDir, d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const seconds = metrics.filter((m) => m.type === 'epoch').reduce((s, m) => s + (m.seconds ?? 0), 0);
    return { run: d, ...r, trainSeconds: seconds };
  })
  .sort((a, b) => a.config.dataset.localeCompare(b.config.dataset) || a.method.localeCompare(b.method));

console.log('| dataset | method | evaluation | epochs | test images | test accuracy | training time |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.config.dataset} | ${r.method} | ${r.evaluation === 'linear' ? 'linear on frozen encoder' : 'its own classifier'} | ${r.epochs} | ${r.testCount} | ${(100 * r.testAccuracy).toFixed(2)}% | ${(r.trainSeconds / 60).toFixed(1)} min |`,
  );
}
writeJson(join(__dirname, 'results', 'experiments.json'), rows);
