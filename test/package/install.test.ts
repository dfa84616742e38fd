// Installing the packed package the way a user without a compiler does: `npm pack` (which puts the
// prebuilt binary in prebuilds/), then `npm install --ignore-scripts` of the tarball into an empty
// project, so no install script runs and nothing is compiled. The addon must come from
// prebuilds/, report the native CPU path, and run the loss and a ResNet training step natively.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');
let work: string;
let project: string;
let packed: { filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> };

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'supcon-pack-'));
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  packed = JSON.parse(out.slice(out.lastIndexOf('\n[\n') + 1))[0]; // after the lifecycle scripts' output
  project = join(work, 'consumer');
  execFileSync('mkdir', ['-p', project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  execFileSync(
    'npm',
    ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel', 'error', join(work, packed.filename), '@tensorflow/tfjs@^4.22.0'],
    { cwd: project, stdio: 'pipe' },
  );
}, 900_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

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
  it('packs the prebuilt binary and no build output or sources', () => {
    const files = packed.files.map((f) => f.path);
    expect(files).toContain(`prebuilds/${process.platform}-${process.arch}/supcon-native.napi.glibc.node`);
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.mjs');
    expect(files.some((f) => f.startsWith('build/') || f.startsWith('build-') || f.startsWith('src/') || f.startsWith('test/'))).toBe(false);
    console.log(`supcon-native tarball: ${(packed.size / 1024 ** 2).toFixed(2)} MiB packed, ${(packed.unpackedSize / 1024 ** 2).toFixed(2)} MiB unpacked, ${files.length} files`);
  });

  it('loads the prebuilt addon (nothing was compiled) and trains natively', () => {
    const installed = join(project, 'node_modules', 'supcon-native');
    expect(existsSync(join(installed, 'build'))).toBe(false);
    writeFileSync(join(project, 'check.cjs'), SCRIPT);
    const r = spawnSync(process.execPath, ['check.cjs'], { cwd: project, encoding: 'utf8', timeout: 300_000 });
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
    const installed = join(project, 'node_modules', 'supcon-native');
    const r = spawnSync(process.execPath, [join(installed, 'scripts', 'build-native.mjs')], { cwd: installed, encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`using the prebuilt binary ${join(installed, 'prebuilds', `${process.platform}-${process.arch}`, 'supcon-native.napi.glibc.node')}`);
    expect(existsSync(join(installed, 'build'))).toBe(false);
  });
});
