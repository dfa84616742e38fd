/**
 * Native BatchMatMul and _FusedMatMul for tfjs's cpu backend. Leading (batch) dimensions are
 * flattened as tfjs does; the native path takes equal batch sizes or a batch of 1 on either
 * side, other broadcasts and non-float32 data run the original JS kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { callNative, type NativeAddon } from '../native';
import { type KernelArgs, type NativeKernelFunc, float32Values, runOriginal, sizeOf } from './cpu_backend';
import { planEpilogue } from './epilogue';
import { outputPool } from './output_pool';

interface MatMulPlan {
  a: Float32Array;
  b: Float32Array;
  batchA: number;
  batchB: number;
  m: number;
  n: number;
  k: number;
  transposeA: boolean;
  transposeB: boolean;
  outShape: number[];
}

function planMatMul(args: KernelArgs): MatMulPlan | null {
  const { a, b } = args.inputs;
  const attrs = args.attrs ?? {};
  if (!a || !b || a.shape.length < 2 || b.shape.length < 2) return null;
  const aValues = float32Values(args.backend, a);
  const bValues = float32Values(args.backend, b);
  if (!aValues || !bValues) return null;
  const transposeA = attrs.transposeA === true;
  const transposeB = attrs.transposeB === true;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kB) return null;  // the JS kernel throws tfjs's message
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = sizeOf(outerA);
  const batchB = sizeOf(outerB);
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null;
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return null;
  }
  const outShape = [...outer, m, n];
  if (sizeOf(outShape) !== Math.max(batchA, batchB) * m * n || sizeOf(outShape) === 0) return null;
  return { a: aValues, b: bValues, batchA, batchB, m, n, k, transposeA, transposeB, outShape };
}

/** BatchMatMul: c = op(a) op(b) over leading batch dimensions. */
export function batchMatMulKernel(addon: NativeAddon, original: tf.KernelConfig): NativeKernelFunc {
  return (args) => {
    const plan = planMatMul(args);
    if (!plan) return runOriginal(original, args);
    const { outShape, ...shape } = plan;
    const c = outputPool.acquire(sizeOf(outShape));
    callNative(() => addon.batchMatMul({ ...shape, c, bias: null, activation: 0, leakyReluAlpha: 0 }));
    return args.backend.makeTensorInfo(outShape, 'float32', c);
  };
}

/** _FusedMatMul: c = activation(op(a) op(b) + bias). */
export function fusedMatMulKernel(addon: NativeAddon, original: tf.KernelConfig): NativeKernelFunc {
  return (args) => {
    const plan = planMatMul(args);
    const attrs = args.attrs ?? {};
    const epilogue =
      plan &&
      planEpilogue(
        args.backend,
        args.inputs.bias,
        attrs.activation,
        args.inputs.preluActivationWeights,
        attrs.leakyreluAlpha,
        plan.n,
        plan.outShape.length,
      );
    if (!plan || !epilogue) return runOriginal(original, args);
    const { outShape, ...shape } = plan;
    const c = outputPool.acquire(sizeOf(outShape));
    callNative(() => addon.batchMatMul({ ...shape, ...epilogue.native, c }));
    const result = args.backend.makeTensorInfo(outShape, 'float32', c);
    return epilogue.finish ? epilogue.finish(result, args.backend) : result;
  };
}
