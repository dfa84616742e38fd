/**
 * Benchmark of the native tfjs cpu kernels against tfjs's own JS kernels, on this machine:
 *  - per-layer forward / input-gradient / filter-gradient times of the convolutions of a CIFAR
 *    ResNet-18 (batch 64), through tfjs (`engine().runKernel`), with GFLOP/s and the share of
 *    the machine's GEMM speed measured in the same run; the input gradient's two algorithms
 *    (direct convolution vs GEMM + col2im) timed side by side on the stride-1 layers;
 *  - the narrow convolutions of ResNet-8 (batch 128, 1 to 64 channels, the 1-channel stem) by
 *    native algorithm: the implicit-im2col GEMM against the direct kernels (addon called directly);
 *  - full training steps (forward, backward, SGD update) of ResNet-8 (28x28x1, batch 128) and
 *    ResNet-18 (CIFAR stem, 32x32x3), images/s, native vs JS.
 * The JS kernels are slow: they are timed once, at a smaller batch, and scaled linearly to the
 * benchmark batch (convolution cost is linear in the batch); the table says so. Medians
 * everywhere else.
 *
 *   npx tsx bench/kernels.ts [--batch 64] [--reps 5] [--no-js] [--js-batch 1]
 *                            [--steps 5] [--js-step-batch 8] [--js-resnet18-batch 0] [--out FILE]
 */
import * as tf from '@tensorflow/tfjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { restoreKernels, useNativeKernels } from '../src/kernels';
import { requireNative } from '../src/native';
import { RESNET18_CIFAR, RESNET8, type ResNetSpec, buildResNet, syntheticBatch, trainStep } from './resnet';

/** Options of {@link runKernelBench}. */
export interface KernelBenchOptions {
  /** Batch of the per-layer convolution timings (default 64). */
  batch?: number;
  /** Native repetitions per measurement; the median is reported (default 5). */
  reps?: number;
  /** Time the JS kernels at all (default true). */
  js?: boolean;
  /** Batch at which the JS per-layer kernels run once, scaled to `batch` (default 1). */
  jsBatch?: number;
  /** Native training steps timed per model; the median is reported (default 5). */
  steps?: number;
  /** Batch of the JS ResNet-8 step, scaled to 128 (default 8; 128 measures it unscaled, ~7 min). */
  jsStepBatch?: number;
  /** Batch of a JS ResNet-18 step (0, the default, skips it: minutes even at batch 1). */
  jsResNet18Batch?: number;
  /** Progress lines go here (default: none). */
  log?: (line: string) => void;
}

/** One convolution layer of the table. Times in ms at `batch`; GFLOP/s = work / time. */
export interface ConvLayerRow {
  layer: string;
  batch: number;
  inHeight: number;
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  /** Forward work in GFLOP (2 multiply-adds per MAC); each gradient costs the same. */
  gflop: number;
  native: { forwardMs: number; inputGradMs: number; filterGradMs: number };
  nativeGflops: { forward: number; inputGrad: number; filterGrad: number };
  /** Slowest of the three as a fraction of the GEMM's GFLOP/s measured in the same run. */
  worstFractionOfGemm: number;
  /** Input gradient by algorithm (addon called directly), stride-1 layers only. */
  inputGradAlgorithms: { directMs: number; gemmCol2ImMs: number } | null;
  /** JS kernels, run once at `js.batch` and scaled by batch / js.batch; null when skipped. */
  js: { batch: number; forwardMs: number; inputGradMs: number; filterGradMs: number } | null;
  speedup: { forward: number; inputGrad: number; filterGrad: number } | null;
}

/** A training step (forward, backward, SGD update). */
export interface TrainingStepRow {
  model: string;
  batch: number;
  nativeMs: number;
  nativeImagesPerSec: number;
  /** JS step time at `batch`: measured (scaled from jsMeasuredBatch) or null with a note. */
  jsMs: number | null;
  jsMeasuredBatch: number | null;
  jsImagesPerSec: number | null;
  speedup: number | null;
  note: string;
}

/** A narrow layer's native algorithms side by side (ms, median). */
export interface NarrowLayerRow {
  layer: string;
  batch: number;
  gflop: number;
  forward: { gemmMs: number; directMs: number };
  filterGrad: { gemmMs: number; directMs: number };
  /** The flipped direct convolution exists for stride 1 only. */
  inputGrad: { directMs: number | null; gemmCol2ImMs: number };
}

export interface KernelBenchResult {
  machine: { cpu: string; cores: number; simd: string; threads: number; node: string; tfjs: string };
  narrow: NarrowLayerRow[];
  /** Native GEMM (BatchMatMul, addon called directly) in this run: the reference speed. */
  gemm: Array<{ size: number; ms: number; gflops: number }>;
  gemmGflops: number;
  layers: ConvLayerRow[];
  steps: TrainingStepRow[];
  date: string;
}

/** The distinct convolutions of ResNet-8 on 28x28x1 (stages of 16, 32, 64 channels). */
const RESNET8_LAYERS: Array<{ layer: string; h: number; cin: number; cout: number; k: number; s: number }> = [
  { layer: 'stem 3x3 1->16 @28', h: 28, cin: 1, cout: 16, k: 3, s: 1 },
  { layer: 'stage1 3x3 16 @28', h: 28, cin: 16, cout: 16, k: 3, s: 1 },
  { layer: 'stage2 3x3 16->32 s2', h: 28, cin: 16, cout: 32, k: 3, s: 2 },
  { layer: 'stage2 3x3 32 @14', h: 14, cin: 32, cout: 32, k: 3, s: 1 },
  { layer: 'stage2 1x1 16->32 s2', h: 28, cin: 16, cout: 32, k: 1, s: 2 },
  { layer: 'stage3 3x3 32->64 s2', h: 14, cin: 32, cout: 64, k: 3, s: 2 },
  { layer: 'stage3 3x3 64 @7', h: 7, cin: 64, cout: 64, k: 3, s: 1 },
  { layer: 'stage3 1x1 32->64 s2', h: 14, cin: 32, cout: 64, k: 1, s: 2 },
];

/** The distinct convolutions of a CIFAR ResNet-18 (3x3 'same' convs, 1x1 stride-2 shortcuts). */
const RESNET18_LAYERS: Array<{ layer: string; h: number; cin: number; cout: number; k: number; s: number }> = [
  { layer: 'stem 3x3 3->64 @32', h: 32, cin: 3, cout: 64, k: 3, s: 1 },
  { layer: 'layer1 3x3 64 @32', h: 32, cin: 64, cout: 64, k: 3, s: 1 },
  { layer: 'layer2 3x3 64->128 s2', h: 32, cin: 64, cout: 128, k: 3, s: 2 },
  { layer: 'layer2 3x3 128 @16', h: 16, cin: 128, cout: 128, k: 3, s: 1 },
  { layer: 'layer2 1x1 64->128 s2', h: 32, cin: 64, cout: 128, k: 1, s: 2 },
  { layer: 'layer3 3x3 128->256 s2', h: 16, cin: 128, cout: 256, k: 3, s: 2 },
  { layer: 'layer3 3x3 256 @8', h: 8, cin: 256, cout: 256, k: 3, s: 1 },
  { layer: 'layer3 1x1 128->256 s2', h: 16, cin: 128, cout: 256, k: 1, s: 2 },
  { layer: 'layer4 3x3 256->512 s2', h: 8, cin: 256, cout: 512, k: 3, s: 2 },
  { layer: 'layer4 3x3 512 @4', h: 4, cin: 512, cout: 512, k: 3, s: 1 },
  { layer: 'layer4 1x1 256->512 s2', h: 8, cin: 256, cout: 512, k: 1, s: 2 },
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function timeOnce(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/** Median time of `reps` runs after one warm-up run. */
function timeMedian(reps: number, fn: () => void): number {
  fn();
  return median(Array.from({ length: reps }, () => timeOnce(fn)));
}

function measureGemm(reps: number): KernelBenchResult['gemm'] {
  const addon = requireNative();
  return [1024, 2048].map((n) => {
    const a = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const c = new Float32Array(n * n);
    const args = { a, b: a, c, batchA: 1, batchB: 1, m: n, n, k: n, transposeA: false, transposeB: false, bias: null, activation: 0 as const, leakyReluAlpha: 0 };
    const ms = timeMedian(reps, () => addon.batchMatMul(args));
    return { size: n, ms, gflops: (2 * n ** 3) / ms / 1e6 };
  });
}

const convAttrs = (s: number) => ({ strides: s, pad: 'same', dataFormat: 'NHWC', dilations: 1 });

/** Runs the three conv kernels through tfjs's engine and returns their times (ms). */
function timeConvKernels(
  batch: number,
  l: (typeof RESNET18_LAYERS)[number],
  time: (fn: () => void) => number,
): { forwardMs: number; inputGradMs: number; filterGradMs: number } {
  return tf.tidy(() => {
    const x = tf.randomUniform([batch, l.h, l.h, l.cin], -1, 1, 'float32', 1);
    const w = tf.randomUniform([l.k, l.k, l.cin, l.cout], -1, 1, 'float32', 2);
    const o = Math.ceil(l.h / l.s);
    const dy = tf.randomUniform([batch, o, o, l.cout], -1, 1, 'float32', 3);
    const run = (name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => () =>
      (tf.engine().runKernel(name, inputs, attrs) as tf.Tensor).dispose();
    return {
      forwardMs: time(run('Conv2D', { x, filter: w }, convAttrs(l.s))),
      inputGradMs: time(run('Conv2DBackpropInput', { dy, filter: w }, { ...convAttrs(l.s), inputShape: x.shape })),
      filterGradMs: time(run('Conv2DBackpropFilter', { x, dy }, { ...convAttrs(l.s), filterShape: w.shape })),
    };
  });
}

/** The input gradient of a stride-1 layer by each native algorithm (addon called directly). */
function timeInputGradAlgorithms(batch: number, l: (typeof RESNET18_LAYERS)[number], reps: number) {
  const addon = requireNative();
  const pad = (l.k - 1) >> 1;
  const geometry = {
    batch, inHeight: l.h, inWidth: l.h, inChannels: l.cin, outHeight: l.h, outWidth: l.h, outChannels: l.cout,
    filterHeight: l.k, filterWidth: l.k, strideHeight: 1, strideWidth: 1, dilationHeight: 1, dilationWidth: 1, padTop: pad, padLeft: pad,
  };
  const dy = new Float32Array(batch * l.h * l.h * l.cout).fill(0.5);
  const filter = new Float32Array(l.k * l.k * l.cin * l.cout).fill(0.25);
  const dx = new Float32Array(batch * l.h * l.h * l.cin);
  const run = (algorithm: 1 | 2) => timeMedian(reps, () => addon.conv2dBackpropInput({ ...geometry, dy, filter, dx, algorithm }));
  return { directMs: run(1), gemmCol2ImMs: run(2) };
}

/** Each native algorithm of a narrow layer ('same' padding as tfjs puts it), addon called directly. */
function timeNarrowLayer(batch: number, l: (typeof RESNET8_LAYERS)[number], reps: number): NarrowLayerRow {
  const addon = requireNative();
  const o = Math.ceil(l.h / l.s);
  const padTotal = Math.max((o - 1) * l.s + l.k - l.h, 0);
  const geometry = {
    batch, inHeight: l.h, inWidth: l.h, inChannels: l.cin, outHeight: o, outWidth: o, outChannels: l.cout,
    filterHeight: l.k, filterWidth: l.k, strideHeight: l.s, strideWidth: l.s, dilationHeight: 1, dilationWidth: 1,
    padTop: padTotal >> 1, padLeft: padTotal >> 1,
  };
  const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => (((i + seed) * 7919) % 1000) / 1000 - 0.5);
  const x = fill(batch * l.h * l.h * l.cin, 1);
  const filter = fill(l.k * l.k * l.cin * l.cout, 2);
  const dy = fill(batch * o * o * l.cout, 3);
  const y = new Float32Array(dy.length);
  const dx = new Float32Array(x.length);
  const dfilter = new Float32Array(filter.length);
  const forward = (algorithm: 1 | 2) =>
    timeMedian(reps, () => addon.conv2dForward({ ...geometry, x, filter, y, bias: null, activation: 0, leakyReluAlpha: 0, algorithm }));
  const filterGrad = (algorithm: 1 | 2) => timeMedian(reps, () => addon.conv2dBackpropFilter({ ...geometry, x, dy, dfilter, algorithm }));
  const inputGrad = (algorithm: 1 | 2) => timeMedian(reps, () => addon.conv2dBackpropInput({ ...geometry, dy, filter, dx, algorithm }));
  return {
    layer: l.layer,
    batch,
    gflop: (2 * batch * o * o * l.k * l.k * l.cin * l.cout) / 1e9,
    forward: { gemmMs: forward(1), directMs: forward(2) },
    filterGrad: { gemmMs: filterGrad(1), directMs: filterGrad(2) },
    inputGrad: { directMs: l.s === 1 ? inputGrad(1) : null, gemmCol2ImMs: inputGrad(2) },
  };
}

/** Median time of native training steps, and one JS step at `jsBatch` (scaled) when asked. */
function timeTrainingStep(
  name: string,
  spec: ResNetSpec,
  batch: number,
  steps: number,
  jsBatch: number,
  log: (line: string) => void,
): TrainingStepRow {
  const model = buildResNet(spec);
  const optimizer = tf.train.sgd(0.01);
  const run = (n: number) => {
    const { images, oneHot } = syntheticBatch(spec, n);
    const ms = () => timeOnce(() => trainStep(model, optimizer, images, oneHot));
    return { ms, dispose: () => tf.dispose([images, oneHot]) };
  };
  useNativeKernels();
  const native = run(batch);
  native.ms();  // warm-up: packing buffers, recycled outputs
  const nativeMs = median(Array.from({ length: steps }, native.ms));
  native.dispose();
  log(`  ${name} batch ${batch}: native ${nativeMs.toFixed(0)} ms/step`);
  let jsMs: number | null = null;
  let note = '';
  if (jsBatch > 0) {
    restoreKernels();
    const js = run(jsBatch);
    const measured = js.ms();
    js.dispose();
    jsMs = (measured * batch) / jsBatch;
    note = jsBatch === batch ? 'JS measured once' : `JS measured once at batch ${jsBatch}, scaled x${batch / jsBatch}`;
    log(`  ${name}: JS ${measured.toFixed(0)} ms at batch ${jsBatch}`);
    useNativeKernels();
  }
  model.dispose();
  optimizer.dispose();
  return {
    model: name,
    batch,
    nativeMs,
    nativeImagesPerSec: (batch * 1000) / nativeMs,
    jsMs,
    jsMeasuredBatch: jsBatch > 0 ? jsBatch : null,
    jsImagesPerSec: jsMs === null ? null : (batch * 1000) / jsMs,
    speedup: jsMs === null ? null : jsMs / nativeMs,
    note,
  };
}

/** Runs the benchmark and returns its rows (see the file comment). */
export async function runKernelBench(options: KernelBenchOptions = {}): Promise<KernelBenchResult> {
  const batch = options.batch ?? 64;
  const reps = options.reps ?? 5;
  const withJs = options.js ?? true;
  const jsBatch = options.jsBatch ?? 1;
  const steps = options.steps ?? 5;
  const log = options.log ?? (() => {});
  await tf.setBackend('cpu');
  const addon = requireNative();
  const info = addon.info();

  useNativeKernels();
  const gemm = measureGemm(reps);
  const gemmGflops = Math.max(...gemm.map((g) => g.gflops));
  log(`GEMM: ${gemm.map((g) => `${g.size}^3 ${g.gflops.toFixed(1)} GFLOP/s`).join(', ')}`);

  const layers: ConvLayerRow[] = [];
  for (const l of RESNET18_LAYERS) {
    const o = Math.ceil(l.h / l.s);
    const gflop = (2 * batch * o * o * l.k * l.k * l.cin * l.cout) / 1e9;
    useNativeKernels();
    const native = timeConvKernels(batch, l, (fn) => timeMedian(reps, fn));
    const nativeGflops = {
      forward: gflop / (native.forwardMs / 1e3),
      inputGrad: gflop / (native.inputGradMs / 1e3),
      filterGrad: gflop / (native.filterGradMs / 1e3),
    };
    const algorithms = l.s === 1 ? timeInputGradAlgorithms(batch, l, reps) : null;
    let js: ConvLayerRow['js'] = null;
    if (withJs) {
      restoreKernels();
      const t = timeConvKernels(jsBatch, l, timeOnce);
      const scale = batch / jsBatch;
      js = { batch: jsBatch, forwardMs: t.forwardMs * scale, inputGradMs: t.inputGradMs * scale, filterGradMs: t.filterGradMs * scale };
      useNativeKernels();
    }
    const row: ConvLayerRow = {
      layer: l.layer,
      batch,
      inHeight: l.h,
      inChannels: l.cin,
      outChannels: l.cout,
      kernel: l.k,
      stride: l.s,
      gflop,
      native,
      nativeGflops,
      worstFractionOfGemm: Math.min(nativeGflops.forward, nativeGflops.inputGrad, nativeGflops.filterGrad) / gemmGflops,
      inputGradAlgorithms: algorithms,
      js,
      speedup: js && {
        forward: js.forwardMs / native.forwardMs,
        inputGrad: js.inputGradMs / native.inputGradMs,
        filterGrad: js.filterGradMs / native.filterGradMs,
      },
    };
    layers.push(row);
    log(`  ${l.layer}: native ${native.forwardMs.toFixed(1)} / ${native.inputGradMs.toFixed(1)} / ${native.filterGradMs.toFixed(1)} ms`);
  }

  const narrow = RESNET8_LAYERS.map((l) => timeNarrowLayer(128, l, reps));
  for (const n of narrow) {
    log(`  ${n.layer}: forward gemm ${n.forward.gemmMs.toFixed(2)} / direct ${n.forward.directMs.toFixed(2)} ms`);
  }

  const stepRows = [
    timeTrainingStep('ResNet-8 (28x28x1)', RESNET8, 128, steps, withJs ? (options.jsStepBatch ?? 8) : 0, log),
    timeTrainingStep('ResNet-18 (CIFAR, 32x32x3)', RESNET18_CIFAR, 64, Math.max(1, Math.min(steps, 3)), withJs ? (options.jsResNet18Batch ?? 0) : 0, log),
  ];
  const r18 = stepRows[1];
  if (r18.jsMs === null && withJs && layers.every((l) => l.js)) {
    // Lower bound of the JS step: the JS kernel times of its 20 convolutions alone.
    const count: Record<string, number> = { 'layer1 3x3 64 @32': 4, 'layer2 3x3 128 @16': 3, 'layer3 3x3 256 @8': 3, 'layer4 3x3 512 @4': 3 };
    const convMs = layers.reduce((sum, l) => sum + (count[l.layer] ?? 1) * (l.js!.forwardMs + l.js!.inputGradMs + l.js!.filterGradMs), 0);
    r18.note = `JS step not run; its convolutions alone take ${(convMs / 1e3).toFixed(0)} s at batch 64 (sum of the JS layer times above)`;
  }
  restoreKernels();
  return {
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      simd: info.cpu.simd,
      threads: info.cpu.threads,
      node: process.version,
      tfjs: tf.version.tfjs,
    },
    gemm,
    gemmGflops,
    narrow,
    layers,
    steps: stepRows,
    date: new Date().toISOString(),
  };
}

/** The result as a plain-text table. */
export function formatKernelBench(r: KernelBenchResult): string {
  const lines: string[] = [];
  const f = (v: number, d = 1) => v.toFixed(d);
  lines.push(`Machine: ${r.machine.cpu}, ${r.machine.cores} cores, SIMD ${r.machine.simd}, ${r.machine.threads} threads; Node ${r.machine.node}, tfjs ${r.machine.tfjs}`);
  lines.push(`GEMM reference (native BatchMatMul, same run): ${r.gemm.map((g) => `${g.size}^3 ${f(g.gflops)} GFLOP/s`).join(', ')}`);
  const b = r.layers[0]?.batch;
  const jsb = r.layers[0]?.js?.batch;
  lines.push('');
  lines.push(`Convolutions of a CIFAR ResNet-18, batch ${b}, NHWC, 'same' padding. Native: median ms (GFLOP/s).`);
  if (jsb) lines.push(`JS: tfjs's own cpu kernel, run ONCE at batch ${jsb} and scaled x${b / jsb} to batch ${b}.`);
  const head = ['layer', 'GFLOP', 'forward', 'input grad', 'filter grad', 'worst/GEMM', 'dx direct | col2im', 'JS fwd / dx / dw (s, scaled)', 'speedup fwd / dx / dw'];
  const rows = r.layers.map((l) => [
    l.layer,
    f(l.gflop, 2),
    `${f(l.native.forwardMs)} (${f(l.nativeGflops.forward, 0)})`,
    `${f(l.native.inputGradMs)} (${f(l.nativeGflops.inputGrad, 0)})`,
    `${f(l.native.filterGradMs)} (${f(l.nativeGflops.filterGrad, 0)})`,
    `${f(100 * l.worstFractionOfGemm, 0)}%`,
    l.inputGradAlgorithms ? `${f(l.inputGradAlgorithms.directMs)} | ${f(l.inputGradAlgorithms.gemmCol2ImMs)}` : '-',
    l.js ? `${f(l.js.forwardMs / 1e3)} / ${f(l.js.inputGradMs / 1e3)} / ${f(l.js.filterGradMs / 1e3)}` : 'skipped',
    l.speedup ? `${f(l.speedup.forward, 0)}x / ${f(l.speedup.inputGrad, 0)}x / ${f(l.speedup.filterGrad, 0)}x` : '-',
  ]);
  lines.push(...table(head, rows));
  lines.push('');
  lines.push(`Narrow convolutions of ResNet-8 (28x28x1), batch ${r.narrow[0]?.batch}, by native algorithm: median ms (GFLOP/s).`);
  const gf = (gflop: number, ms: number) => `${f(ms, 2)} (${f(gflop / (ms / 1e3), 0)})`;
  lines.push(
    ...table(
      ['layer', 'GFLOP', 'fwd GEMM', 'fwd direct', 'dW GEMM', 'dW direct', 'dx flipped direct', 'dx GEMM+col2im'],
      r.narrow.map((n) => [
        n.layer,
        f(n.gflop, 3),
        gf(n.gflop, n.forward.gemmMs),
        gf(n.gflop, n.forward.directMs),
        gf(n.gflop, n.filterGrad.gemmMs),
        gf(n.gflop, n.filterGrad.directMs),
        n.inputGrad.directMs === null ? '-' : gf(n.gflop, n.inputGrad.directMs),
        gf(n.gflop, n.inputGrad.gemmCol2ImMs),
      ]),
    ),
  );
  lines.push('');
  lines.push('Training step (forward, backward, SGD update), synthetic data. Native: median of the timed steps.');
  const stepHead = ['model', 'batch', 'native ms', 'native img/s', 'JS ms', 'JS img/s', 'speedup', 'note'];
  const stepRows = r.steps.map((s) => [
    s.model,
    String(s.batch),
    f(s.nativeMs, 0),
    f(s.nativeImagesPerSec, 0),
    s.jsMs === null ? '-' : f(s.jsMs, 0),
    s.jsImagesPerSec === null ? '-' : f(s.jsImagesPerSec, 2),
    s.speedup === null ? '-' : `${f(s.speedup, 0)}x`,
    s.note,
  ]);
  lines.push(...table(stepHead, stepRows));
  return lines.join('\n');
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string): number | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : undefined;
  };
  const outIndex = argv.indexOf('--out');
  const out = outIndex >= 0 ? argv[outIndex + 1] : join(__dirname, 'results', 'kernels.json');
  const result = await runKernelBench({
    batch: value('batch'),
    reps: value('reps'),
    js: !argv.includes('--no-js'),
    jsBatch: value('js-batch'),
    steps: value('steps'),
    jsStepBatch: value('js-step-batch'),
    jsResNet18Batch: value('js-resnet18-batch'),
    log: (line) => console.error(line),
  });
  console.log(formatKernelBench(result));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
