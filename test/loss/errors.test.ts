// Bad input: every case is a typed error naming the argument, never a crash. The last block
// calls the addon directly with garbage to check the native safety net.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, supcon, supConLoss, supConLossFn, supConLossReference } from '../../src';
import { callNative, requireNative } from '../../src/native';
import { CONTRAST_MODES, LOSS_DEVICES, LOSS_PRECISIONS, REDUCTIONS, SUPCON_VARIANTS } from '../../src/loss/options';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const features = new Float32Array(8 * 4).map((_, i) => Math.sin(i));
const base = { features, shape: [4, 2, 4], labels: Int32Array.from([0, 1, 0, 1]) };

function expectArgError(fn: () => unknown, argument: string, pattern?: RegExp) {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected an error for ${argument}`).toBeInstanceOf(InvalidArgumentError);
  const err = caught as InvalidArgumentError;
  expect(err.argument).toBe(argument);
  expect(err.code).toBe('ERR_SUPCON_INVALID_ARGUMENT');
  expect(err.message).toMatch(/^Expected .+ for .+ but received .+/);
  if (pattern) expect(err.message).toMatch(pattern);
}

describe('typed-array API input validation', () => {
  const call = (patch: Record<string, unknown>) => () => supcon.forwardBackward({ ...base, ...patch } as never);

  it('rejects wrong rank, shape/length mismatch, zero dimensions and too few rows', () => {
    expectArgError(call({ shape: [32] }), 'shape', /rank 2 or 3.*rank 1 \(shape \[32\]\)/);
    expectArgError(call({ shape: [4, 2, 2, 2] }), 'shape');
    expectArgError(call({ shape: [4, 2, 5] }), 'features', /length 40.*length 32/);
    expectArgError(call({ shape: [8, 0] }), 'shape');
    expectArgError(call({ features: new Float32Array(3), shape: [1, 3], labels: null }), 'features', /at least 2 rows/);
    expectArgError(call({ features: Array.from(features) }), 'features', /Float32Array.*array of length 32/);
  });

  it('rejects bad labels', () => {
    expectArgError(call({ labels: Int32Array.from([0, 1, 0]) }), 'labels', /length 4.*length 3/);
    expectArgError(call({ labels: Float32Array.from([0, 1, 0, 1]) }), 'labels', /Int32Array/);
  });

  it('rejects NaN/Inf in features and in the contrast set', () => {
    const bad = features.slice();
    bad[5] = NaN;
    expectArgError(call({ features: bad }), 'features', /NaN at index 5/);
    bad[5] = Infinity;
    expectArgError(call({ features: bad }), 'features', /Infinity at index 5/);
    const c = new Float32Array(8);
    c[7] = -Infinity;
    expectArgError(call({ contrast: { features: c, labels: Int32Array.from([1, 2]) } }), 'contrast.features', /index 7/);
  });

  it('rejects bad temperatures and unknown options or values', () => {
    expectArgError(call({ temperature: 0 }), 'input.temperature', /> 0/);
    expectArgError(call({ temperature: -1 }), 'input.temperature');
    expectArgError(call({ temperature: NaN }), 'input.temperature', /NaN/);
    expectArgError(call({ temperature: '0.1' }), 'input.temperature');
    expectArgError(call({ baseTemperature: 0 }), 'input.baseTemperature');
    expectArgError(call({ temprature: 0.1 }), 'input', /unknown option 'temprature'/);
    expectArgError(call({ variant: 'both' }), 'input.variant', /'out', 'in'/);
    expectArgError(call({ reduction: 'avg' }), 'input.reduction');
    expectArgError(call({ contrastMode: 'two' }), 'input.contrastMode');
    expectArgError(call({ device: 'tpu' }), 'input.device');
    expectArgError(call({ normalize: 1 }), 'input.normalize');
  });

  it("rejects contrastMode 'one' with rank-2 features", () => {
    expectArgError(call({ shape: [8, 4], labels: null, contrastMode: 'one' }), 'options.contrastMode', /'one' with shape \[8, 4\]/);
  });

  it('rejects bad contrast sets', () => {
    expectArgError(call({ contrast: { features: new Float32Array(6), labels: Int32Array.from([1]) } }), 'contrast.features', /multiple of the feature dimension 4/);
    expectArgError(call({ contrast: { features: new Float32Array(8) } }), 'contrast.labels', /labels were given/);
    expectArgError(call({ labels: null, contrast: { features: new Float32Array(8), labels: Int32Array.from([1, 2]) } }), 'contrast.labels');
    expectArgError(call({ contrast: { features: new Float32Array(8), labels: Int32Array.from([1, 2]), extra: 1 } }), 'contrast');
  });

  it('rejects shared and detached buffers', () => {
    const shared = new Float32Array(new SharedArrayBuffer(32 * 4));
    expectArgError(call({ features: shared }), 'features', /SharedArrayBuffer/);
    const detached = new Float32Array(32);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expectArgError(call({ features: detached }), 'features');
  });

  it('rejects sizes past int32 before touching memory', () => {
    expectArgError(call({ shape: [65536, 2, 32768] }), 'features', /at most 2147483647 elements/);
  });

  it('rejects bad thread counts', () => {
    expect(() => supcon.setNumThreads(0)).toThrow(InvalidArgumentError);
    expect(() => supcon.setNumThreads(1.5)).toThrow(/integer in \[1, 256\] for threads/);
  });

  it('reports a missing CUDA device as a native error, not a crash', () => {
    if (supcon.info().cuda.devices.length > 0) return;
    let caught: { code?: string; message: string } | undefined;
    try {
      supcon.forwardBackward({ ...base, device: 'cuda' });
    } catch (e) {
      caught = e as { code?: string; message: string };
    }
    expect(caught?.code).toBe('ERR_SUPCON_UNAVAILABLE');
    expect(caught?.message).toMatch(/CUDA/);
  });
});

describe('tfjs op input validation', () => {
  it('rejects non-tensors, wrong rank and dtype, and bad labels', () => {
    const x = tf.ones([4, 3]);
    for (const fn of [supConLoss, supConLossReference]) {
      expectArgError(() => fn(new Float32Array(12) as never, null), 'features', /tf.Tensor/);
      expectArgError(() => fn(tf.ones([12]), null), 'features', /rank 1/);
      expectArgError(() => fn(tf.ones([4, 3], 'int32'), null), 'features', /float32/);
      expectArgError(() => fn(x, tf.tensor1d([0, 1, 2])), 'labels', /4 labels/);
      expectArgError(() => fn(x, tf.tensor1d([0, 1.5, 2, 3])), 'labels', /int32 values.*1.5 at index 1/);
      expectArgError(() => fn(x, [0, 1, 0, 1], { contrastMode: 'one' }), 'options.contrastMode');
      expectArgError(() => fn(x, [0, 1, 0, 1], { contrast: { features: tf.ones([2, 5]), labels: [1, 2] } }), 'options.contrast.features', /\[M, 3\]/);
      expectArgError(() => fn(x, null, { temperature: 0 }), 'options.temperature');
    }
    expectArgError(() => supConLossFn({ reduction: 'none' }), 'options.reduction');
    x.dispose();
  });

  it('names the shape it received for a contrast set of the wrong width (issue 9, item 9)', () => {
    const x = tf.ones([4, 3]);
    for (const fn of [supConLoss, supConLossReference]) {
      expectArgError(
        () => fn(x, [0, 1, 0, 1], { contrast: { features: tf.ones([3, 9]), labels: [1, 2, 3] } }),
        'options.contrast.features',
        /^Expected a float32 tensor of shape \[M, 3\] for options.contrast.features but received shape \[3, 9\]$/,
      );
    }
    x.dispose();
  });

  it('refuses SimCLR on rank-2 features, which could never have a positive (issue 9, item 8)', () => {
    const x = tf.ones([4, 3]);
    const q = tf.ones([5, 3]);
    for (const fn of [supConLoss, supConLossReference]) {
      expectArgError(() => fn(x, null), 'labels', /views/);
      expectArgError(() => fn(x, null, { contrast: { features: q } }), 'labels', /views/);
    }
    expectArgError(() => supcon.forwardBackward({ features: new Float32Array(12), shape: [4, 3] }), 'labels', /views/);
    tf.dispose([x, q]);
  });

  it('refuses float32 label tensors beyond 2^24, where float32 merges ids (issue 9, item 4)', () => {
    const x = tf.ones([2, 2, 3]);
    expectArgError(() => supConLoss(x, tf.tensor1d([2 ** 24 + 2, 3])), 'labels', /2\^24/);
    expect(supConLoss(x, tf.tensor1d([2 ** 24 + 2, 3], 'int32')).dataSync()[0]).toBeGreaterThan(0);
    x.dispose();
  });

  it('rejects NaN in a features tensor', () => {
    const x = tf.tensor2d([[1, 0], [NaN, 1], [0, 1]]);
    expectArgError(() => supConLoss(x, [0, 0, 1]), 'features', /NaN at index 2/);
    x.dispose();
  });
});

describe('one contract across the N-API boundary', () => {
  it('names every option value as the core does (options cross by name)', () => {
    const names = requireNative().lossOptionNames();
    expect(names.variant).toEqual([...SUPCON_VARIANTS]);
    expect(names.contrastMode).toEqual([...CONTRAST_MODES]);
    expect(names.reduction).toEqual([...REDUCTIONS]);
    expect([...names.device].sort()).toEqual([...LOSS_DEVICES].sort());
    expect(names.precision).toEqual([...LOSS_PRECISIONS]);
  });

  it("turns the core's own argument errors into the same InvalidArgumentError", () => {
    // Called directly (past the TypeScript checks), the core's safety net answers in the
    // package's form, and callNative rebuilds the typed error from its parts.
    const addon = requireNative();
    const args = {
      features, batch: 4, views: 2, dim: 4, labels: null, contrastFeatures: null, contrastLabels: null, contrastRows: 0,
      temperature: 1e-40, baseTemperature: 0.1, variant: 'out', contrastMode: 'all', normalize: false, reduction: 'mean',
      device: 'cpu', precision: 'fp32', wantGrad: true,
    } as const;
    expectArgError(() => callNative(() => addon.lossForwardBackward(args as never)), 'temperature', /float32/);
    const nan = features.slice();
    nan[3] = NaN;
    expectArgError(() => callNative(() => addon.lossForwardBackward({ ...args, temperature: 0.1, features: nan } as never)), 'features', /NaN at index 3/);
    expectArgError(
      () => callNative(() => addon.lossForwardBackward({ ...args, temperature: 0.1, labels: null, views: 1, batch: 8 } as never)),
      'labels',
      /views/,
    );
    // What the binding itself reads (types, names, lengths) answers in the same form.
    expectArgError(() => callNative(() => addon.lossForwardBackward({ ...args, variant: 1 } as never)), 'variant', /one of 'out', 'in'.*a number/);
    expectArgError(() => callNative(() => addon.lossForwardBackward({ ...args, batch: 100 } as never)), 'features', /length 800.*length 32/);
  });
});

describe('the addon itself never crashes on garbage', () => {
  it('throws TypeErrors/RangeErrors for malformed direct calls', () => {
    const addon = requireNative();
    const good = {
      features, batch: 4, views: 2, dim: 4, labels: null, contrastFeatures: null, contrastLabels: null, contrastRows: 0,
      temperature: 0.1, baseTemperature: 0.1, variant: 'out', contrastMode: 'all', normalize: false, reduction: 'mean',
      device: 'cpu', precision: 'fp32', wantGrad: true,
    };
    const bad: Array<Record<string, unknown>> = [
      { batch: 100 }, // longer than the array
      { features: new Float64Array(32) },
      { features: 'x' },
      { labels: new Int32Array(1) },
      { dim: -1 },
      { dim: 1.5 },
      { temperature: 'a' },
      { reduction: 7 },
      { reduction: 'avg' },
      { variant: 1 },
      { contrastRows: 5, contrastFeatures: new Float32Array(3) },
      { batch: 2 ** 40 },
      { temperature: -1 },
    ];
    for (const patch of bad) {
      expect(() => addon.lossForwardBackward({ ...good, ...patch } as never), JSON.stringify(Object.keys(patch))).toThrow();
    }
    expect(() => (addon.lossForwardBackward as (...a: unknown[]) => unknown)()).toThrow(TypeError);
    expect(() => addon.lossBackward(good as never, new Float32Array(3), new Float32Array(1))).toThrow();
    expect(addon.lossForwardBackward(good as never).loss).toBeGreaterThan(0); // still alive and right
  });
});
