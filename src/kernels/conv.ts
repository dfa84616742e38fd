/**
 * Native Conv2D, FusedConv2D, Conv2DBackpropInput and Conv2DBackpropFilter for tfjs's cpu
 * backend. Shapes, paddings and the tfjs attribute conventions are resolved by tfjs's own
 * `backend_util.computeConv2DInfo`; the native call gets explicit integers. Anything the native
 * path does not cover (NCHW, non-float32 data, negative explicit pads, empty tensors, shape
 * mismatches that tfjs reports itself) runs the original JS kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { callNative, type NativeAddon, type NativeConv2DGeometry } from '../native';
import { type KernelArgs, type NativeKernelFunc, type Rank4, float32Values, isNhwc, runOriginal, sameShape, sizeOf } from './cpu_backend';
import { planEpilogue } from './epilogue';
import { outputPool } from './output_pool';

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/** tfjs's conv info for NHWC, or null when tfjs itself rejects the arguments. */
export function convInfo(
  inShape: readonly number[],
  filterShape: readonly number[],
  attrs: Record<string, unknown>,
  dilations: unknown,
): Conv2DInfo | null {
  if (inShape.length !== 4 || filterShape.length !== 4) return null;
  try {
    return tf.backend_util.computeConv2DInfo(
      inShape as Rank4,
      filterShape as Rank4,
      attrs.strides as number | [number, number],
      dilations as number | [number, number],
      attrs.pad as 'same' | 'valid' | number,
      attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
      false,
      'channelsLast',
    );
  } catch {
    return null;  // the JS kernel throws tfjs's own message
  }
}

/** Explicit integer geometry, or null when some size is outside what the native path takes. */
export function nativeGeometry(info: Conv2DInfo): NativeConv2DGeometry | null {
  const g: NativeConv2DGeometry = {
    batch: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    outChannels: info.outChannels,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
  for (const [key, value] of Object.entries(g)) {
    const min = key === 'padTop' || key === 'padLeft' ? 0 : 1;
    if (!Number.isInteger(value) || value < min || value > 0x7fffffff) return null;
  }
  if (sizeOf(info.inShape) > 0x7fffffff || sizeOf(info.outShape) > 0x7fffffff) return null;
  return g;
}

interface ForwardPlan {
  geometry: NativeConv2DGeometry;
  x: Float32Array;
  filter: Float32Array;
  outShape: number[];
}

function planForward(args: KernelArgs): ForwardPlan | null {
  const { x, filter } = args.inputs;
  const attrs = args.attrs ?? {};
  if (!x || !filter || !isNhwc(attrs.dataFormat)) return null;
  const xValues = float32Values(args.backend, x);
  const filterValues = float32Values(args.backend, filter);
  if (!xValues || !filterValues || x.shape[3] !== filter.shape[2]) return null;
  const info = convInfo(x.shape, filter.shape, attrs, attrs.dilations ?? 1);
  const geometry = info && nativeGeometry(info);
  if (!info || !geometry) return null;
  return { geometry, x: xValues, filter: filterValues, outShape: info.outShape.slice() };
}

/** Conv2D: y = conv2d(x, filter). */
export function conv2DKernel(addon: NativeAddon, original: tf.KernelConfig): NativeKernelFunc {
  return (args) => {
    const plan = planForward(args);
    if (!plan) return runOriginal(original, args);
    const y = outputPool.acquire(sizeOf(plan.outShape));
    callNative(() =>
      addon.conv2dForward({ ...plan.geometry, x: plan.x, filter: plan.filter, y, bias: null, activation: 0, leakyReluAlpha: 0 }),
    );
    return args.backend.makeTensorInfo(plan.outShape, 'float32', y);
  };
}

/** FusedConv2D: y = activation(conv2d(x, filter) + bias). */
export function fusedConv2DKernel(addon: NativeAddon, original: tf.KernelConfig): NativeKernelFunc {
  return (args) => {
    const plan = planForward(args);
    const attrs = args.attrs ?? {};
    const epilogue =
      plan &&
      planEpilogue(
        args.backend,
        args.inputs.bias,
        attrs.activation,
        args.inputs.preluActivationWeights,
        attrs.leakyreluAlpha,
        plan.geometry.outChannels,
        4,
      );
    if (!plan || !epilogue) return runOriginal(original, args);
    const y = outputPool.acquire(sizeOf(plan.outShape));
    callNative(() => addon.conv2dForward({ ...plan.geometry, ...epilogue.native, x: plan.x, filter: plan.filter, y }));
    const result = args.backend.makeTensorInfo(plan.outShape, 'float32', y);
    return epilogue.finish ? epilogue.finish(result, args.backend) : result;
  };
}

/** Conv2DBackpropInput: dx of conv2d (also the forward of conv2dTranspose). */
export function conv2DBackpropInputKernel(addon: NativeAddon, original: tf.KernelConfig): NativeKernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs;
    const attrs = args.attrs ?? {};
    const inputShape = attrs.inputShape as number[] | undefined;
    const dyValues = float32Values(args.backend, dy);
    const filterValues = float32Values(args.backend, filter);
    const info =
      dy && filter && dyValues && filterValues && Array.isArray(inputShape) && isNhwc(attrs.dataFormat)
        ? convInfo(inputShape, filter.shape, attrs, 1)
        : null;
    const geometry = info && nativeGeometry(info);
    if (
      !info ||
      !geometry ||
      !sameShape(dy!.shape, info.outShape) ||
      filter!.shape[2] !== inputShape![3] ||
      !inputShape!.every((d) => Number.isInteger(d))
    ) {
      return runOriginal(original, args);
    }
    const dx = outputPool.acquire(sizeOf(inputShape!));
    callNative(() => addon.conv2dBackpropInput({ ...geometry, dy: dyValues!, filter: filterValues!, dx, algorithm: 0 }));
    return args.backend.makeTensorInfo(inputShape!.slice(), 'float32', dx);
  };
}

/** Conv2DBackpropFilter: dfilter of conv2d. */
export function conv2DBackpropFilterKernel(addon: NativeAddon, original: tf.KernelConfig): NativeKernelFunc {
  return (args) => {
    const { x, dy } = args.inputs;
    const attrs = args.attrs ?? {};
    const filterShape = attrs.filterShape as number[] | undefined;
    const xValues = float32Values(args.backend, x);
    const dyValues = float32Values(args.backend, dy);
    const info =
      x && dy && xValues && dyValues && Array.isArray(filterShape) && isNhwc(attrs.dataFormat)
        ? convInfo(x.shape, filterShape, attrs, 1)
        : null;
    const geometry = info && nativeGeometry(info);
    if (!info || !geometry || !sameShape(dy!.shape, info.outShape) || filterShape![2] !== x!.shape[3]) {
      return runOriginal(original, args);
    }
    const dfilter = outputPool.acquire(sizeOf(filterShape!));
    callNative(() => addon.conv2dBackpropFilter({ ...geometry, x: xValues!, dy: dyValues!, dfilter }));
    return args.backend.makeTensorInfo(filterShape!.slice(), 'float32', dfilter);
  };
}
