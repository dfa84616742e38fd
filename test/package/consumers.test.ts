// The built package as users see it: CommonJS require, ES module import (one shared instance of
// the package and of tfjs), and the hand-off of the .d.ts types to a strict TypeScript consumer.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');
let project: string;

beforeAll(() => {
  execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'pipe' });
  // A consumer project whose node_modules holds the package and tfjs.
  project = mkdtempSync(join(tmpdir(), 'supcon-consumer-'));
  mkdirSync(join(project, 'node_modules', '@tensorflow'), { recursive: true });
  symlinkSync(root, join(project, 'node_modules', 'supcon-native'));
  for (const pkg of ['tfjs', 'tfjs-core', 'tfjs-layers', 'tfjs-converter', 'tfjs-data', 'tfjs-backend-cpu', 'tfjs-backend-webgl']) {
    symlinkSync(join(root, 'node_modules', '@tensorflow', pkg), join(project, 'node_modules', '@tensorflow', pkg));
  }
}, 180_000);

function runNode(file: string, source: string): string {
  writeFileSync(join(project, file), source);
  const r = spawnSync(process.execPath, [file], { cwd: project, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').pop()!;
}

const body = `
  await tf.setBackend('cpu');
  const x = tf.tensor2d([[1, 0], [0.8, 0.2], [0, 1], [0.1, 0.9]]);
  const loss = m.supConLoss(x, [0, 0, 1, 1], { normalize: true }).dataSync()[0];
  const ref = m.supConLossReference(x, [0, 0, 1, 1], { normalize: true }).dataSync()[0];
  console.log(JSON.stringify({ loss, ref, native: m.supcon.isAvailable(), error: typeof m.InvalidArgumentError }));
`;

describe('package consumers', () => {
  it('works from CommonJS', () => {
    const out = JSON.parse(
      runNode('cjs.cjs', `const tf = require('@tensorflow/tfjs'); const m = require('supcon-native'); (async () => { ${body} })();`),
    );
    expect(out.native).toBe(true);
    expect(out.loss).toBeCloseTo(out.ref, 5);
    expect(out.error).toBe('function');
  });

  it('works from an ES module with named imports', () => {
    const out = JSON.parse(
      runNode(
        'esm.mjs',
        `import * as tf from '@tensorflow/tfjs'; import * as m from 'supcon-native'; import { supConLoss } from 'supcon-native'; if (typeof supConLoss !== 'function') throw new Error('named import'); ${body}`,
      ),
    );
    expect(out.loss).toBeCloseTo(out.ref, 5);
  });

  it('type-checks a strict TypeScript consumer against the shipped .d.ts, and rejects misuse', () => {
    const good = `
      import * as tf from '@tensorflow/tfjs';
      import { supConLoss, supcon, type SupConOptions, type LossResult, InvalidArgumentError } from 'supcon-native';
      const opts: SupConOptions = { temperature: 0.07, variant: 'in', contrastMode: 'one', reduction: 'none' };
      const t: tf.Tensor = supConLoss(tf.ones([2, 2, 3]), [0, 1], opts);
      const r: LossResult = supcon.forwardBackward({ features: new Float32Array(6), shape: [2, 3] });
      const n: number = r.loss + r.validAnchors + t.size;
      const e: Error = new InvalidArgumentError('a', 'b', 'c');
      export { n, e };
    `;
    const bad = `
      import { supcon } from 'supcon-native';
      supcon.forwardBackward({ features: new Float32Array(6), shape: [2, 3], variant: 'sideways' });
    `;
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const check = (src: string) => {
      writeFileSync(join(project, 'consumer.ts'), src);
      return spawnSync(
        process.execPath,
        [tsc, '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--skipLibCheck', '--types', 'node', '--typeRoots', join(root, 'node_modules', '@types'), 'consumer.ts'],
        { cwd: project, encoding: 'utf8' },
      );
    };
    const ok = check(good);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    const ko = check(bad);
    expect(ko.status).not.toBe(0);
    expect(ko.stdout).toMatch(/sideways/);
  });
});
