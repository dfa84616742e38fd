/**
 * Native Conv2D / FusedConv2D / Conv2DBackpropInput / Conv2DBackpropFilter against tfjs's own
 * JS kernels on a randomized sweep: batch 1..3, channels off the SIMD width, filters 1x1..7x7,
 * strides 1..3, dilations, paddings 'same' / 'valid' / a number / explicit, dimRoundingMode.
 * Tolerance: |native - js| <= 1e-4 (1 + max|js|) (float32 sums of at most ~500 terms).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreKernels, useNativeKernels } from '../../src/kernels';
import { expectClose, jsAndNative, nativeAvailable, pick, rng, uniform } from './helpers';

const TOL = 1e-4;

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

interface Case {
  batch: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  fh: number;
  fw: number;
  stride: [number, number];
  dilation: [number, number];
  pad: Pad;
  rounding?: 'floor' | 'round' | 'ceil';
}

function randomCase(r: () => number): Case {
  const fh = pick(r, [1, 2, 3, 3, 5, 7]);
  const fw = pick(r, [1, 3, 3, 4, 5]);
  const strided = r() < 0.5;
  // tfjs needs stride 1 or dilation 1; dilated gradients are not supported by tfjs itself.
  const stride: [number, number] = strided ? [pick(r, [1, 2, 3]), pick(r, [1, 2, 3])] : [1, 1];
  const dilation: [number, number] = strided ? [1, 1] : [pick(r, [1, 1, 2]), pick(r, [1, 2])];
  const padKind = pick(r, ['same', 'valid', 'number', 'explicit'] as const);
  const pad: Pad =
    padKind === 'number'
      ? pick(r, [0, 1, 2])
      : padKind === 'explicit'
        ? [[0, 0], [pick(r, [0, 1, 2]), pick(r, [0, 1, 3])], [pick(r, [0, 2]), pick(r, [0, 1])], [0, 0]]
        : padKind;
  const c: Case = {
    batch: pick(r, [1, 1, 2, 3]),
    h: 3 + Math.floor(r() * 9),
    w: 3 + Math.floor(r() * 9),
    cin: pick(r, [1, 3, 5, 16, 17]),
    cout: pick(r, [1, 4, 7, 16, 19]),
    fh,
    fw,
    stride,
    dilation,
    pad,
  };
  if (typeof pad === 'number' || Array.isArray(pad)) c.rounding = pick(r, [undefined, 'floor', 'ceil', 'round'] as const);
  if (typeof pad === 'number' && c.rounding === undefined) c.rounding = 'floor';
  return c;
}

function describeCase(c: Case): string {
  return JSON.stringify(c);
}

/** Output size along one axis, or <= 0 when tfjs would produce an empty tensor. */
function validOutput(c: Case): boolean {
  const info = tf.backend_util.computeConv2DInfo(
    [c.batch, c.h, c.w, c.cin],
    [c.fh, c.fw, c.cin, c.cout],
    c.stride,
    c.dilation,
    c.pad as 'same',
    c.rounding,
  );
  return info.outHeight > 0 && info.outWidth > 0;
}

describe.skipIf(!nativeAvailable)('native conv kernels vs tfjs JS kernels', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    useNativeKernels();
  });
  afterAll(() => {
    restoreKernels();
  });

  it('Conv2D forward: randomized sweep', () => {
    const r = rng(11);
    let checked = 0;
    for (let t = 0; t < 60; ++t) {
      const c = randomCase(r);
      if (!validOutput(c)) continue;
      const { js, native } = jsAndNative(() =>
        tf.conv2d(
          uniform([c.batch, c.h, c.w, c.cin], t) as tf.Tensor4D,
          uniform([c.fh, c.fw, c.cin, c.cout], t + 1000) as tf.Tensor4D,
          c.stride,
          c.pad,
          'NHWC',
          c.dilation,
          c.rounding,
        ),
      );
      expectClose(native[0], js[0], TOL, `conv2d ${describeCase(c)}`);
      ++checked;
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('Conv2DBackpropInput and Conv2DBackpropFilter through tf.grads: randomized sweep', () => {
    const r = rng(23);
    let checked = 0;
    for (let t = 0; t < 40; ++t) {
      const c = { ...randomCase(r), dilation: [1, 1] as [number, number] };
      if (!validOutput(c)) continue;
      const { js, native } = jsAndNative(() => {
        const x = uniform([c.batch, c.h, c.w, c.cin], t) as tf.Tensor4D;
        const w = uniform([c.fh, c.fw, c.cin, c.cout], t + 1000) as tf.Tensor4D;
        const f = (a: tf.Tensor, b: tf.Tensor) => {
          const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad, 'NHWC', 1, c.rounding);
          return tf.sum(tf.mul(y, uniform(y.shape, t + 2000)));  // a random upstream gradient
        };
        return tf.grads(f)([x, w]);
      });
      expectClose(native[0], js[0], TOL, `dx ${describeCase(c)}`);
      expectClose(native[1], js[1], TOL, `dw ${describeCase(c)}`);
      ++checked;
    }
    expect(checked).toBeGreaterThan(25);
  });

  it('ResNet-shaped layers, batch 1 and 4, same padding with strides 1 and 2', () => {
    for (const [h, cin, cout, k, s, n] of [
      [12, 16, 16, 3, 1, 4],
      [12, 16, 32, 3, 2, 1],
      [11, 16, 32, 1, 2, 4],
      [7, 33, 20, 3, 1, 1],
    ]) {
      const { js, native } = jsAndNative(() => {
        const x = uniform([n, h, h, cin], h) as tf.Tensor4D;
        const w = uniform([k, k, cin, cout], h + 1) as tf.Tensor4D;
        const y = tf.conv2d(x, w, s, 'same');
        const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, s, 'same'))),
        )([x, w]);
        return [y, dx, dw];
      });
      ['y', 'dx', 'dw'].forEach((name, i) => expectClose(native[i], js[i], TOL, `${name} h=${h} ${cin}->${cout} k=${k} s=${s} n=${n}`));
    }
  });

  it('FusedConv2D: bias shapes and every activation, including the tfjs-composed ones', () => {
    const x = uniform([2, 6, 5, 3], 1) as tf.Tensor4D;
    const w = uniform([3, 3, 3, 6], 2) as tf.Tensor4D;
    const biases: Array<[string, () => tf.Tensor | undefined]> = [
      ['none', () => undefined],
      ['[C]', () => uniform([6], 3)],
      ['[1]', () => uniform([1], 4)],
      ['[1,1,C]', () => uniform([1, 1, 6], 5)],
      ['[H,W,C] (broadcast by Add)', () => uniform([6, 5, 6], 6)],
    ];
    const activations = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid', 'prelu'] as const;
    for (const [biasName, bias] of biases) {
      for (const activation of activations) {
        const { js, native } = jsAndNative(() =>
          tf.fused.conv2d({
            x: tf.mul(x, 4) as tf.Tensor4D,  // pre-activations beyond 6 reach relu6's clamp
            filter: w,
            strides: 1,
            pad: 'same',
            bias: bias(),
            activation,
            preluActivationWeights: activation === 'prelu' ? uniform([6], 7) : undefined,
            leakyreluAlpha: 0.3,
          }),
        );
        expectClose(native[0], js[0], TOL, `fused conv bias ${biasName} ${activation}`);
      }
    }
  });

  it('explicit kernel calls: asymmetric explicit pads and conv2dTranspose', () => {
    const { js, native } = jsAndNative(() => {
      const x = uniform([2, 9, 8, 5], 3) as tf.Tensor4D;
      const w = uniform([3, 2, 5, 4], 4) as tf.Tensor4D;
      const pad: Pad = [[0, 0], [2, 0], [0, 1], [0, 0]];
      const y = tf.conv2d(x, w, [2, 1], pad);
      const dy = uniform(y.shape, 5) as tf.Tensor4D;
      const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, {
        inputShape: x.shape, strides: [2, 1], pad, dataFormat: 'NHWC',
      }) as tf.Tensor;
      const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        filterShape: w.shape, strides: [2, 1], pad, dataFormat: 'NHWC',
      }) as tf.Tensor;
      const t = tf.conv2dTranspose(uniform([1, 4, 4, 4], 6) as tf.Tensor4D, w, [1, 8, 7, 5], 2, 'same');
      return [y, dx, dw, t];
    });
    ['y', 'dx', 'dw', 'conv2dTranspose'].forEach((n, i) => expectClose(native[i], js[i], TOL, n));
  });

  it('falls back to the JS kernel for NCHW, int32 data and empty outputs, with the same results', () => {
    const { js, native } = jsAndNative(() => {
      const x = uniform([1, 3, 6, 6], 1) as tf.Tensor4D;
      const w = uniform([3, 3, 3, 2], 2) as tf.Tensor4D;
      const nchw = tf.engine().runKernel('Conv2D', { x, filter: w }, {
        strides: 1, pad: 'same', dataFormat: 'NCHW', dilations: 1,
      }) as tf.Tensor;
      const xi = tf.cast(tf.mul(uniform([1, 5, 5, 2], 3), 5), 'int32');
      const wi = tf.cast(tf.mul(uniform([2, 2, 2, 3], 4), 5), 'int32');
      const ints = tf.engine().runKernel('Conv2D', { x: xi, filter: wi }, {
        strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1,
      }) as tf.Tensor;
      const empty = tf.conv2d(tf.zeros([0, 4, 4, 2]) as tf.Tensor4D, uniform([3, 3, 2, 2], 5) as tf.Tensor4D, 1, 'same');
      return [nchw, tf.cast(ints, 'float32'), empty];
    });
    expect(native[2].length).toBe(0);
    ['nchw', 'int32'].forEach((n, i) => expectClose(native[i], js[i], 1e-6, n));
  });

  it('bad shapes reach tfjs validation or a clear error, never a crash', () => {
    const x = tf.zeros([1, 5, 5, 3]) as tf.Tensor4D;
    expect(() => tf.conv2d(x, tf.zeros([3, 3, 4, 2]) as tf.Tensor4D, 1, 'same')).toThrow(/depth of input/);
    // Mismatched inputs sent straight to the kernel: tfjs's own message from the JS fallback.
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: tf.zeros([1, 2, 2, 2]) }, {
        filterShape: [3, 3, 3, 2], strides: 1, pad: 'same', dataFormat: 'NHWC',
      }),
    ).toThrow();
    tf.dispose(x);
  });
});
