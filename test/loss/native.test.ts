// The fused native loss (typed-array API) against the float64 reference over a randomized
// sweep of every option, the PyTorch golden values, finite differences, threads, edge cases.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { supcon } from '../../src';
import type { SupConOptions } from '../../src';
import { requireNative } from '../../src/native';
import { gaussian, maxAbs, maxAbsDiff, reference64, testRng, unitRows, type Ref64Options } from '../helpers/reference64';

const defaults: Ref64Options = {
  temperature: 0.1,
  baseTemperature: 0.1,
  variant: 'out',
  contrastMode: 'all',
  normalize: false,
  reduction: 'mean',
};

interface Case {
  shape: number[];
  classes: number; // 0 = SimCLR (no labels)
  extra: number;
  options: Ref64Options;
  seed: number;
}

function buildProblem(c: Case) {
  const rng = testRng(c.seed);
  const rank3 = c.shape.length === 3;
  const batch = c.shape[0];
  const dim = c.shape[c.shape.length - 1];
  const rows = rank3 ? c.shape[0] * c.shape[1] : c.shape[0];
  const features = gaussian(rng, rows * dim, c.options.normalize ? 3 : 1);
  if (!c.options.normalize) unitRows(features, dim);
  const labels = c.classes ? Int32Array.from({ length: batch }, () => Math.floor(rng() * c.classes) * 3 - 5) : null;
  let contrast: { features: Float32Array; labels: Int32Array | null } | undefined;
  if (c.extra) {
    const cf = gaussian(rng, c.extra * dim, c.options.normalize ? 2 : 1);
    if (!c.options.normalize) unitRows(cf, dim);
    contrast = {
      features: cf,
      labels: labels ? Int32Array.from({ length: c.extra }, () => Math.floor(rng() * c.classes) * 3 - 5) : null,
    };
  }
  return { features, shape: c.shape, labels, contrast };
}

/** Loss rel. error <= 1e-5, gradient max error <= 1e-4 max|grad| (docs/loss.md). */
function expectAgreement(c: Case) {
  const p = buildProblem(c);
  const opts: SupConOptions = { ...c.options };
  const result = supcon.forwardBackward({ ...p, ...opts, contrast: p.contrast ?? undefined, device: 'cpu' });
  const ref = reference64(p, c.options);
  const what = JSON.stringify({ shape: c.shape, classes: c.classes, extra: c.extra, ...c.options });
  expect(result.validAnchors, what).toBe(ref.validAnchors);
  expect(Math.abs(result.loss - ref.loss), what).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.loss)));
  expect(maxAbsDiff(result.perAnchor, ref.perAnchor), what).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(ref.perAnchor)));
  // Floor for gradients that vanish exactly (rounding of cancelling terms of size |x|/tau_b).
  const floor = (1e-5 * Math.max(1, maxAbs(p.features))) / c.options.baseTemperature;
  expect(maxAbsDiff(result.grad!, ref.grad), what).toBeLessThanOrEqual(1e-4 * maxAbs(ref.grad) + floor);
}

function sweep(): Case[] {
  const rng = testRng(7);
  const shapes = [
    [2, 3],
    [5, 1],
    [9, 2, 64],
    [40, 4, 3],
    [130, 128],
    [64, 2, 257],
    [129, 2, 17],
    [256, 2, 128],
    [512, 64],
  ];
  const cases: Case[] = [];
  let i = 0;
  for (const shape of shapes) {
    for (const variant of ['out', 'in'] as const) {
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        const rank3 = shape.length === 3;
        const contrastMode = rank3 && i % 2 === 0 ? 'one' : 'all';
        const normalize = i % 3 === 0;
        // SimCLR (0 classes) needs views: rank-2 features get labels instead (docs/loss.md).
        const classes = rank3 || i % 4 !== 2 ? [2, 1000, 0, 5][i % 4] : 7;
        const extra = i % 5 === 1 ? 1 + Math.floor(rng() * 140) : 0;
        const temperature = [0.05, 0.1, 0.5, 1][i % 4];
        cases.push({
          shape,
          classes,
          extra,
          seed: 100 + i,
          options: { ...defaults, variant, reduction, contrastMode, normalize, temperature, baseTemperature: i % 2 ? 0.07 : temperature },
        });
        i++;
      }
    }
  }
  return cases;
}

describe('supcon.forwardBackward (native) vs float64 reference', () => {
  afterAll(() => supcon.setNumThreads(2));

  const cases = sweep();
  it(`agrees on a sweep of ${cases.length} option combinations`, () => {
    for (const c of cases) expectAgreement(c);
  });

  it('covers SimCLR, L_in, mode one, normalize, extra contrast and all reductions in the sweep', () => {
    expect(cases.some((c) => c.classes === 0 && c.extra > 0)).toBe(true);
    expect(cases.some((c) => c.options.contrastMode === 'one' && c.options.variant === 'in')).toBe(true);
    expect(cases.some((c) => c.options.normalize && c.extra > 0)).toBe(true);
    expect(new Set(cases.map((c) => c.options.reduction)).size).toBe(3);
  });

  it('agrees with 1 and 4 threads, bit for bit', () => {
    const c: Case = { shape: [300, 2, 64], classes: 10, extra: 0, seed: 5, options: { ...defaults, normalize: true } };
    const p = buildProblem(c);
    supcon.setNumThreads(1);
    const one = supcon.forwardBackward({ ...p, contrast: undefined, normalize: true });
    supcon.setNumThreads(4);
    const four = supcon.forwardBackward({ ...p, contrast: undefined, normalize: true });
    expect(four.loss).toBe(one.loss);
    expect(Buffer.from(four.grad!.buffer).equals(Buffer.from(one.grad!.buffer))).toBe(true);
    expectAgreement(c);
    expectAgreement({ ...c, extra: 77, options: { ...c.options, variant: 'in' } });
  });

  it('scales the per-anchor upstream gradient for reduction none', () => {
    // The tfjs op passes dy for 'none'; check the native backward against the reference with
    // non-uniform upstream weights through the low-level calls.
    const c: Case = { shape: [20, 3, 16], classes: 4, extra: 0, seed: 9, options: { ...defaults, reduction: 'none', variant: 'in' } };
    const p = buildProblem(c);
    const addon = requireNative();
    const args = {
      features: p.features, batch: 20, views: 3, dim: 16, labels: p.labels, contrastFeatures: null, contrastLabels: null,
      contrastRows: 0, temperature: 0.1, baseTemperature: 0.1, variant: 'in' as const, contrastMode: 'all' as const,
      normalize: false, reduction: 'none' as const, device: 'cpu' as const, precision: 'fp32' as const, wantGrad: false,
    };
    const fwd = addon.lossForward(args);
    const rng = testRng(3);
    const up = Float32Array.from({ length: 60 }, () => rng() * 3 - 1);
    const grad = addon.lossBackward(args, fwd.stats, up);
    const ref = reference64(p, c.options, up);
    expect(maxAbsDiff(grad, ref.grad)).toBeLessThanOrEqual(1e-4 * maxAbs(ref.grad));
  });
});

describe('float64 reference itself', () => {
  it('has the gradient of its loss (central finite differences), including the G^T term', () => {
    for (const variant of ['out', 'in'] as const) {
      for (const contrastMode of ['all', 'one'] as const) {
        const c: Case = { shape: [5, 2, 4], classes: 3, extra: 3, seed: 21, options: { ...defaults, variant, contrastMode, normalize: true, temperature: 0.3, baseTemperature: 0.5 } };
        const p = buildProblem(c);
        const x = Float64Array.from(p.features);
        const ref = reference64({ ...p, features: x }, c.options);
        const h = 1e-6;
        let worst = 0;
        for (let i = 0; i < x.length; i++) {
          const orig = x[i];
          x[i] = orig + h;
          const up = reference64({ ...p, features: x }, c.options).loss;
          x[i] = orig - h;
          const down = reference64({ ...p, features: x }, c.options).loss;
          x[i] = orig;
          worst = Math.max(worst, Math.abs((up - down) / (2 * h) - ref.grad[i]));
        }
        expect(worst).toBeLessThan(1e-6 * Math.max(1, maxAbs(ref.grad)));
      }
    }
  });
});

describe('PyTorch golden values (HobbitLong/SupContrast SupConLoss)', () => {
  const golden = JSON.parse(readFileSync(join(__dirname, '../fixtures/supcon-pytorch-reference.json'), 'utf8')) as {
    cases: Array<{
      shape: number[];
      features: number[];
      labels: number[] | null;
      temperature: number;
      baseTemperature: number;
      contrastMode: 'all' | 'one';
      loss: number;
      grad: number[];
    }>;
  };
  it.each(golden.cases.map((c, i) => [i, c] as const))('case %i matches loss and gradient', (_i, c) => {
    const r = supcon.forwardBackward({
      features: Float32Array.from(c.features),
      shape: c.shape,
      labels: c.labels ? Int32Array.from(c.labels) : null,
      temperature: c.temperature,
      baseTemperature: c.baseTemperature,
      contrastMode: c.contrastMode,
    });
    // PyTorch averages over all anchors (a positive-less anchor counts 0): rescale ours.
    const anchors = r.perAnchor.length;
    const factor = r.validAnchors / anchors;
    expect(Math.abs(r.loss * factor - c.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(c.loss)));
    const scaled = Array.from(r.grad!, (g) => g * factor);
    expect(maxAbsDiff(scaled, c.grad)).toBeLessThanOrEqual(1e-4 * maxAbs(c.grad));
  });
});

describe('edge cases', () => {
  it('excludes and counts anchors without positives', () => {
    const rng = testRng(1);
    const features = unitRows(gaussian(rng, 6 * 8), 8);
    const labels = Int32Array.from([0, 0, 1, 2, 2, 3]);
    const r = supcon.forwardBackward({ features, shape: [6, 8], labels });
    expect(r.validAnchors).toBe(4);
    expect(r.perAnchor[2]).toBe(0);
    expect(r.perAnchor[5]).toBe(0);
    const ref = reference64({ features, shape: [6, 8], labels }, defaults);
    expect(r.loss).toBeCloseTo(ref.loss, 5);
  });

  it('handles one class, N = 2, duplicate rows, extreme temperatures and huge norms', () => {
    expectAgreement({ shape: [6, 2, 16], classes: 1, extra: 0, seed: 2, options: defaults });
    expectAgreement({ shape: [2, 4], classes: 1, extra: 0, seed: 3, options: defaults });
    const rng = testRng(4);
    const dup = unitRows(gaussian(rng, 8 * 16), 16);
    dup.copyWithin(16, 0, 16);
    const ref = reference64({ features: dup, shape: [8, 16], labels: [0, 1, 0, 1, 2, 2, 0, 1] }, defaults);
    const r = supcon.forwardBackward({ features: dup, shape: [8, 16], labels: Int32Array.from([0, 1, 0, 1, 2, 2, 0, 1]) });
    expect(Math.abs(r.loss - ref.loss)).toBeLessThan(1e-5 * ref.loss);
    expectAgreement({ shape: [20, 2, 16], classes: 3, extra: 0, seed: 5, options: { ...defaults, temperature: 100, baseTemperature: 100 } });
    const cold = supcon.forwardBackward({ features: unitRows(gaussian(rng, 40 * 16), 16), shape: [20, 2, 16], temperature: 0.01 });
    expect(Number.isFinite(cold.loss)).toBe(true);
    expect(cold.grad!.every(Number.isFinite)).toBe(true);
    const big = gaussian(rng, 30 * 8, 300); // unnormalized, |s| ~ 1e6
    const hot = supcon.forwardBackward({ features: big, shape: [15, 2, 8], labels: Int32Array.from({ length: 15 }, (_, i) => i % 4) });
    expect(Number.isFinite(hot.loss)).toBe(true);
    expect(hot.grad!.every(Number.isFinite)).toBe(true);
  });

  it('returns the same from the async call, which copies its inputs', async () => {
    const rng = testRng(8);
    const features = unitRows(gaussian(rng, 64 * 32), 32);
    const labels = Int32Array.from({ length: 32 }, (_, i) => i % 5);
    const sync = supcon.forwardBackward({ features, shape: [32, 2, 32], labels });
    const pending = supcon.forwardBackwardAsync({ features, shape: [32, 2, 32], labels });
    features.fill(0); // must not affect the running call
    const async = await pending;
    expect(async.loss).toBe(sync.loss);
    expect(maxAbsDiff(async.grad!, sync.grad!)).toBe(0);
  });

  it('does not leak native memory over repeated calls', () => {
    const addon = requireNative();
    const rng = testRng(9);
    const features = unitRows(gaussian(rng, 200 * 64), 64);
    // Warm up: the GEMM keeps grow-only per-thread packing buffers (bounded by the tile size).
    supcon.forwardBackward({ features, shape: [100, 2, 64], normalize: true });
    supcon.forwardBackward({ features, shape: [100, 2, 64], contrast: { features: features.subarray(0, 640) } });
    const before = addon.memoryStats().currentBytes;
    for (let i = 0; i < 50; i++) {
      supcon.forwardBackward({ features, shape: [100, 2, 64], normalize: true, variant: i % 2 ? 'in' : 'out' });
      supcon.forwardBackward({ features, shape: [100, 2, 64], contrast: { features: features.subarray(0, 640) } });
    }
    expect(addon.memoryStats().currentBytes).toBe(before);
  });

  it('reports the workspace of its own call: every buffer, whatever runs beside it', async () => {
    const rng = testRng(10);
    const small = { features: unitRows(gaussian(rng, 512 * 128), 128), shape: [256, 2, 128], labels: Int32Array.from({ length: 256 }, (_, i) => i % 7) };
    const alone = supcon.forwardBackward(small).workspaceBytes;
    // At least the operands laid out for the tile kernel (one copy of the features), never N x N.
    expect(alone).toBeGreaterThanOrEqual(512 * 128 * 4);
    expect(alone).toBeLessThan(4 * 512 * 512);
    const big = { features: unitRows(gaussian(rng, 4096 * 128), 128), shape: [2048, 2, 128] };
    const running = supcon.forwardBackwardAsync(big); // allocates megabytes on the libuv pool meanwhile
    const beside: number[] = [];
    for (let i = 0; i < 5; i++) beside.push(supcon.forwardBackward(small).workspaceBytes);
    const bigResult = await running;
    expect(beside).toEqual([alone, alone, alone, alone, alone]);
    expect(bigResult.workspaceBytes).toBeGreaterThanOrEqual(4096 * 128 * 4);
  });

  it('reports build and machine information', () => {
    const info = supcon.info();
    expect(info.available).toBe(true);
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.cpu.threads).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'generic']).toContain(info.cpu.simd);
    expect(typeof info.cuda.compiled).toBe('boolean');
    if (info.cuda.devices.length === 0) expect(info.cuda.reason).toMatch(/\w+/);
  });
});
