/**
 * useNativeKernels / restoreKernels: what they replace and report, idempotence, restoring the
 * original KernelConfig objects, option validation, and the addon's own argument checks.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors';
import { NATIVE_KERNEL_NAMES, nativeKernelStatus, restoreKernels, useNativeKernels } from '../../src/kernels';
import { requireNative } from '../../src/native';
import { nativeAvailable } from './helpers';

describe.skipIf(!nativeAvailable)('kernel registration', () => {
  const originals = new Map<string, tf.KernelConfig>();
  beforeAll(async () => {
    await tf.setBackend('cpu');
    restoreKernels();
    for (const name of NATIVE_KERNEL_NAMES) originals.set(name, tf.getKernel(name, 'cpu')!);
  });
  afterAll(() => {
    restoreKernels();
  });

  it('replaces the listed kernels, idempotently, and restores the original configs', () => {
    const replaced = useNativeKernels();
    expect(replaced.sort()).toEqual([...NATIVE_KERNEL_NAMES].sort());
    expect(replaced).toEqual(expect.arrayContaining(['Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'BatchMatMul', '_FusedMatMul']));
    const conv = tf.getKernel('Conv2D', 'cpu')!;
    expect(conv.kernelFunc).not.toBe(originals.get('Conv2D')!.kernelFunc);
    expect(useNativeKernels().sort()).toEqual(replaced.sort());
    expect(tf.getKernel('Conv2D', 'cpu')!.kernelFunc).toBe(conv.kernelFunc);  // not wrapped twice
    expect(nativeKernelStatus()).toEqual({ available: true, active: expect.arrayContaining(replaced), reason: '' });

    expect(restoreKernels().sort()).toEqual(replaced.sort());
    for (const [name, config] of originals) expect(tf.getKernel(name, 'cpu')).toBe(config);
    expect(restoreKernels()).toEqual([]);
    expect(nativeKernelStatus().active).toEqual([]);
  });

  it('replaces a chosen subset', () => {
    expect(useNativeKernels({ kernels: ['Conv2D', 'Sum'] }).sort()).toEqual(['Conv2D', 'Sum']);
    expect(tf.getKernel('BatchMatMul', 'cpu')).toBe(originals.get('BatchMatMul'));
    restoreKernels();
  });

  it('validates its options', () => {
    expect(() => useNativeKernels({ kernels: ['Conv3D'] })).toThrow(InvalidArgumentError);
    expect(() => useNativeKernels({ kernels: ['Conv3D'] })).toThrow(/options\.kernels\[0\]/);
    expect(() => useNativeKernels({ kernels: 'Conv2D' as unknown as string[] })).toThrow(/options\.kernels/);
    expect(() => useNativeKernels({ recycle: true } as never)).toThrow(/unknown option 'recycle'/);
    expect(() => useNativeKernels({ recycleOutputs: 1 as unknown as boolean })).toThrow(/options\.recycleOutputs/);
    expect(nativeKernelStatus().active).toEqual([]);
  });

  it('the addon rejects malformed arguments with coded errors instead of crashing', () => {
    const addon = requireNative();
    const geometry = {
      batch: 1, inHeight: 4, inWidth: 4, inChannels: 2, outHeight: 4, outWidth: 4, outChannels: 3,
      filterHeight: 3, filterWidth: 3, strideHeight: 1, strideWidth: 1, dilationHeight: 1, dilationWidth: 1, padTop: 1, padLeft: 1,
    };
    const good = { ...geometry, x: new Float32Array(32), filter: new Float32Array(54), y: new Float32Array(48), bias: null, activation: 0 as const, leakyReluAlpha: 0 };
    expect(() => addon.conv2dForward(good)).not.toThrow();
    const code = (f: () => void) => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return 'no error';
    };
    expect(code(() => addon.conv2dForward({ ...good, x: new Float32Array(31) }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, y: new Float32Array(4) }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, batch: 0 }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, padTop: -1 }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, inChannels: 1 << 20, outChannels: 1 << 20 }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, x: new Float64Array(32) as unknown as Float32Array }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, bias: new Float32Array(2) }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dBackpropInput({ ...geometry, dy: new Float32Array(48), filter: new Float32Array(54), dx: new Float32Array(32), algorithm: 1 }))).toBe('no error');
    // The direct input gradient takes strided narrow layers, but not dilated ones.
    expect(code(() => addon.conv2dBackpropInput({ ...geometry, strideHeight: 2, outHeight: 2, dy: new Float32Array(24), filter: new Float32Array(54), dx: new Float32Array(32), algorithm: 1 }))).toBe('no error');
    expect(code(() => addon.conv2dBackpropInput({ ...geometry, strideHeight: 2, outHeight: 2, dilationHeight: 2, dy: new Float32Array(24), filter: new Float32Array(54), dx: new Float32Array(32), algorithm: 1 }))).toBe(
      'ERR_SUPCON_INVALID_ARGUMENT',
    );
    expect(code(() => addon.conv2dForward({ ...good, dilationWidth: 2, algorithm: 2 }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.conv2dForward({ ...good, algorithm: 3 as 2 }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.binaryOp({ op: 0, a: new Float32Array(6), aShape: [2, 3], b: new Float32Array(4), bShape: [4], out: new Float32Array(6) }))).toBe(
      'ERR_SUPCON_INVALID_ARGUMENT',
    );
    expect(code(() => addon.binaryOp({ op: 9 as 0, a: new Float32Array(1), aShape: [1], b: new Float32Array(1), bShape: [1], out: new Float32Array(1) }))).toBe(
      'ERR_SUPCON_INVALID_ARGUMENT',
    );
    expect(code(() => addon.reduceSum({ x: new Float32Array(6), shape: [2, 3], axes: [2], scale: 1, out: new Float32Array(2) }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.tile({ x: new Float32Array(2), shape: [2], reps: [1 << 30], out: new Float32Array(2) }))).toBe('ERR_SUPCON_INVALID_ARGUMENT');
    expect(code(() => addon.batchMatMul({ a: new Float32Array(8), b: new Float32Array(12), c: new Float32Array(12), batchA: 2, batchB: 3, m: 2, n: 2, k: 2, transposeA: false, transposeB: false, bias: null, activation: 0, leakyReluAlpha: 0 }))).toBe(
      'ERR_SUPCON_INVALID_ARGUMENT',
    );
    expect(code(() => (addon.conv2dForward as unknown as () => void)())).toBe('ERR_SUPCON_INVALID_ARGUMENT');
  });
});
