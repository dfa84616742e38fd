/**
 * Native MaxPool, MaxPoolGrad, AvgPool and AvgPoolGrad for tfjs's cpu backend (the max-pooled
 * stem of ImageNet-style ResNets). Geometry from tfjs's own `backend_util.computePool2DInfo`;
 * semantics match tfjs's JS kernels (first maximum wins ties, average over valid pixels, the
 * average gradient divided by the full window). Non-float32 data, 1x1 identity pools and
 * anything tfjs rejects run the original JS kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { callNative, type NativePool2DGeometry } from '../native';
import { type KernelArgs, type KernelFactory, type Rank4, float32Values, runOriginal, sameShape, sizeOf } from './cpu_backend';
import { outputPool } from './output_pool';


/** tfjs's pool info and the explicit native geometry, or null for the JS kernel. */
function poolGeometry(
  xShape: readonly number[],
  attrs: Record<string, unknown> | undefined,
  withRounding: boolean,
): { info: tf.backend_util.Conv2DInfo; geometry: NativePool2DGeometry } | null {
  if (xShape.length !== 4 || !attrs) return null;
  let info: tf.backend_util.Conv2DInfo;
  try {
    info = tf.backend_util.computePool2DInfo(
      xShape as Rank4,
      attrs.filterSize as number | [number, number],
      attrs.strides as number | [number, number],
      1,
      attrs.pad as 'same' | 'valid' | number,
      withRounding ? (attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined) : undefined,
    );
  } catch {
    return null;
  }
  const geometry: NativePool2DGeometry = {
    batch: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    channels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    filterHeight: info.effectiveFilterHeight,
    filterWidth: info.effectiveFilterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
  for (const [key, value] of Object.entries(geometry)) {
    const min = key === 'padTop' || key === 'padLeft' ? 0 : 1;
    if (!Number.isInteger(value) || value < min || value > 0x7fffffff) return null;
  }
  return { info, geometry };
}

function poolKernel(type: 0 | 1): KernelFactory {
  return (addon, original) => (args: KernelArgs) => {
    const { x } = args.inputs;
    const xValues = float32Values(args.backend, x);
    const plan = x && xValues ? poolGeometry(x.shape, args.attrs, true) : null;
    // A 1x1 pool that keeps the shape is tfjs's identity (same data, no copy).
    const identity = plan && plan.info.filterHeight === 1 && plan.info.filterWidth === 1 && sameShape(plan.info.inShape, plan.info.outShape);
    if (!plan || identity) return runOriginal(original, args);
    const y = outputPool.acquire(sizeOf(plan.info.outShape));
    callNative(() => addon.pool2d({ ...plan.geometry, type, x: xValues!, y }));
    return args.backend.makeTensorInfo(plan.info.outShape.slice(), 'float32', y);
  };
}

const maxPoolGradKernel: KernelFactory = (addon, original) => (args) => {
  const { dy, input } = args.inputs;
  const xValues = float32Values(args.backend, input);
  const dyValues = float32Values(args.backend, dy);
  const plan = input && xValues && dyValues ? poolGeometry(input.shape, args.attrs, true) : null;
  if (!plan || !sameShape(dy!.shape, plan.info.outShape)) return runOriginal(original, args);
  const dx = outputPool.acquire(sizeOf(input!.shape));
  callNative(() => addon.maxPool2dBackward({ ...plan.geometry, x: xValues!, dy: dyValues!, dx }));
  return args.backend.makeTensorInfo(input!.shape.slice(), 'float32', dx);
};

const avgPoolGradKernel: KernelFactory = (addon, original) => (args) => {
  const { dy, input } = args.inputs;
  const dyValues = float32Values(args.backend, dy);
  // tfjs's AvgPoolGrad ignores dimRoundingMode; so does this one.
  const plan = input && dyValues && input.dtype === 'float32' ? poolGeometry(input.shape, args.attrs, false) : null;
  if (!plan || !sameShape(dy!.shape, plan.info.outShape)) return runOriginal(original, args);
  const dx = outputPool.acquire(sizeOf(input!.shape));
  callNative(() => addon.avgPool2dBackward({ ...plan.geometry, dy: dyValues!, dx }));
  return args.backend.makeTensorInfo(input!.shape.slice(), 'float32', dx);
};

/** Factories of the pooling kernels, by tfjs kernel name. */
export const POOL_KERNELS: Record<string, KernelFactory> = {
  MaxPool: poolKernel(0),
  AvgPool: poolKernel(1),
  MaxPoolGrad: maxPoolGradKernel,
  AvgPoolGrad: avgPoolGradKernel,
};
