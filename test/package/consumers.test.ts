// The built package as users see it: CommonJS require, ES module import (one shared instance of
// the package and of tfjs), and the hand-off of the .d.ts types to a strict TypeScript consumer.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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

// Installing the packed package the way a user without a compiler does: `npm pack` (which puts the
// prebuilt binary in prebuilds/), then `npm install --ignore-scripts` of the tarball into an empty
// project, so no install script runs and nothing is compiled. The addon must come from
// prebuilds/, report the native CPU path, and run the loss and a ResNet training step natively.
// (In this file, after the tests above: npm pack rebuilds dist/, which they read.)
let work: string;
let packProject: string;
let packed: { filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> };

const SCRIPT = `
const tf = require('@tensorflow/tfjs');
const m = require('supcon-native');
(async () => {
  await tf.setBackend('cpu');
  const info = m.supcon.info();
  const kernels = m.useNativeKernels();
  // The loss on the native path against the pure-tfjs reference.
  const x = tf.randomNormal([8, 2, 16], 0, 1, 'float32', 1);
  const labels = [0, 0, 1, 1, 2, 2, 3, 3];
  const loss = m.supConLoss(x, labels, { normalize: true }).dataSync()[0];
  const reference = m.supConLossReference(x, labels, { normalize: true }).dataSync()[0];
  // One SupCon training step of a ResNet-8 on the native kernels, then the same batch again.
  const { model } = m.createSupConModel({ encoder: { arch: 'resnet8', widthMultiplier: 0.25, inputShape: [16, 16, 3], seed: 1 }, head: { outputDim: 16, seed: 2 } });
  const images = tf.randomUniform([16, 16, 16, 3], 0, 1, 'float32', 3);
  const y = tf.tensor1d([0, 0, 1, 1, 2, 2, 3, 3], 'int32');
  const variables = model.trainableWeights.map((w) => w.read());
  const optimizer = new m.SgdMomentum({ learningRate: 0.05, momentum: 0.9 });
  const lossOf = () => {
    const z = model.apply(images, { training: true });
    return m.supConLoss(tf.transpose(tf.reshape(z, [2, 8, 16]), [1, 0, 2]), y, { temperature: 0.1 });
  };
  const steps = [];
  for (let i = 0; i < 3; i++) {
    const { value, grads } = tf.variableGrads(lossOf, variables);
    optimizer.applyGradients(grads);
    steps.push(value.dataSync()[0]);
  }
  console.log(JSON.stringify({
    simd: info.cpu.simd, cudaCompiled: info.cuda.compiled, native: m.supcon.isAvailable(), addon: m.nativeAddonPath(),
    status: m.nativeKernelStatus(), kernels, loss, reference, steps,
  }));
})();
`;

describe('npm pack + npm install --ignore-scripts into an empty project', () => {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'supcon-pack-'));
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    packed = JSON.parse(out.slice(out.lastIndexOf('\n[\n') + 1))[0]; // after the lifecycle scripts' output
    packProject = join(work, 'consumer');
    mkdirSync(packProject, { recursive: true });
    writeFileSync(join(packProject, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    execFileSync(
      'npm',
      ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel', 'error', join(work, packed.filename), '@tensorflow/tfjs@^4.22.0'],
      { cwd: packProject, stdio: 'pipe' },
    );
  }, 900_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('packs the prebuilt binary and no build output or sources', () => {
    const files = packed.files.map((f) => f.path);
    expect(files).toContain(`prebuilds/${process.platform}-${process.arch}/supcon-native.napi.glibc.node`);
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.mjs');
    expect(files.some((f) => f.startsWith('build/') || f.startsWith('build-') || f.startsWith('src/') || f.startsWith('test/'))).toBe(false);
    console.log(`supcon-native tarball: ${(packed.size / 1024 ** 2).toFixed(2)} MiB packed, ${(packed.unpackedSize / 1024 ** 2).toFixed(2)} MiB unpacked, ${files.length} files`);
  });

  it('loads the prebuilt addon (nothing was compiled) and trains natively', () => {
    const installed = join(packProject, 'node_modules', 'supcon-native');
    expect(existsSync(join(installed, 'build'))).toBe(false);
    writeFileSync(join(packProject, 'check.cjs'), SCRIPT);
    const r = spawnSync(process.execPath, ['check.cjs'], { cwd: packProject, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.addon).toBe(join(installed, 'prebuilds', `${process.platform}-${process.arch}`, 'supcon-native.napi.glibc.node'));
    expect(['avx512', 'avx2', 'generic']).toContain(out.simd);
    expect(out.cudaCompiled).toBe(false);
    expect(out.native).toBe(true);
    expect(out.status).toMatchObject({ available: true, reason: '' });
    expect(out.kernels).toEqual(expect.arrayContaining(['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', 'FusedBatchNorm']));
    expect(out.loss).toBeCloseTo(out.reference, 4);
    expect(out.steps.every(Number.isFinite)).toBe(true);
    expect(out.steps[2]).toBeLessThan(out.steps[0]);
  });

  it('has an install script that, when approved, takes the prebuilt binary instead of compiling', () => {
    const installed = join(packProject, 'node_modules', 'supcon-native');
    const r = spawnSync(process.execPath, [join(installed, 'scripts', 'build-native.mjs')], { cwd: installed, encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`using the prebuilt binary ${join(installed, 'prebuilds', `${process.platform}-${process.arch}`, 'supcon-native.napi.glibc.node')}`);
    expect(existsSync(join(installed, 'build'))).toBe(false);
  });
});
