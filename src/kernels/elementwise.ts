/**
 * Native memory-bound kernels of a training step on tfjs's cpu backend: broadcasting binary
 * ops, unary ops, Sum/Mean reductions, Tile and FusedBatchNorm. A profile of a ResNet step with
 * native convolutions shows these (batch-norm statistics and their gradients) dominating.
 * Non-float32 inputs, empty tensors and anything tfjs would reject run the original JS kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { callNative, type NativeBinaryArgs, type NativeUnaryArgs } from '../native';
import { type KernelFactory, float32Values, runOriginal, sizeOf } from './cpu_backend';
import { outputPool } from './output_pool';


function binaryKernel(op: NativeBinaryArgs['op']): KernelFactory {
  return (addon, original) => (args) => {
    const { a, b } = args.inputs;
    const aValues = float32Values(args.backend, a);
    const bValues = float32Values(args.backend, b);
    if (!a || !b || !aValues || !bValues) return runOriginal(original, args);
    let outShape: number[];
    try {
      outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    } catch {
      return runOriginal(original, args);  // tfjs's own message
    }
    const size = sizeOf(outShape);
    if (size === 0 || outShape.length > 8) return runOriginal(original, args);
    const out = outputPool.acquire(size);
    callNative(() => addon.binaryOp({ op, a: aValues, aShape: a.shape, b: bValues, bShape: b.shape, out }));
    return args.backend.makeTensorInfo(outShape, 'float32', out);
  };
}

function unaryKernel(op: NativeUnaryArgs['op']): KernelFactory {
  return (addon, original) => (args) => {
    const { x } = args.inputs;
    const xValues = float32Values(args.backend, x);
    if (!x || !xValues || xValues.length === 0) return runOriginal(original, args);
    const alpha = typeof args.attrs?.alpha === 'number' ? args.attrs.alpha : 0;
    const out = outputPool.acquire(xValues.length);
    callNative(() => addon.unaryOp({ op, x: xValues, alpha, out }));
    return args.backend.makeTensorInfo(x.shape.slice(), 'float32', out);
  };
}

/** Sum (mean = false) or Mean (mean = true) over attrs.axis, with keepDims. */
function reduceKernel(mean: boolean): KernelFactory {
  return (addon, original) => (args) => {
    const { x } = args.inputs;
    const xValues = float32Values(args.backend, x);
    if (!x || !xValues || xValues.length === 0 || x.shape.length > 8) return runOriginal(original, args);
    let axes: number[];
    try {
      axes = tf.util.parseAxisParam(args.attrs?.axis as number | number[], x.shape);
    } catch {
      return runOriginal(original, args);
    }
    // A repeated axis has no meaning of its own; tfjs's kernel gives it one (tf.sum(x, [1, 1])
    // reduces everything). Leave such lists to it, so results never depend on the native kernels.
    if (new Set(axes).size !== axes.length) return runOriginal(original, args);
    const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
    const reduceSize = sizeOf(reduceShape);
    const out = outputPool.acquire(sizeOf(outShape));
    callNative(() => addon.reduceSum({ x: xValues, shape: x.shape, axes, scale: mean ? 1 / reduceSize : 1, out }));
    const shape = args.attrs?.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    return args.backend.makeTensorInfo(shape, 'float32', out);
  };
}

const tileKernel: KernelFactory = (addon, original) => (args) => {
  const { x } = args.inputs;
  const reps = args.attrs?.reps as number[] | undefined;
  const xValues = float32Values(args.backend, x);
  if (!x || !xValues || !Array.isArray(reps) || reps.length !== x.shape.length || x.shape.length > 8) {
    return runOriginal(original, args);
  }
  if (!reps.every((r) => Number.isInteger(r) && r >= 0)) return runOriginal(original, args);
  const outShape = x.shape.map((d, i) => d * reps[i]);
  const size = sizeOf(outShape);
  if (size === 0 || size > 0x7fffffff) return runOriginal(original, args);
  const out = outputPool.acquire(size);
  callNative(() => addon.tile({ x: xValues, shape: x.shape, reps, out }));
  return args.backend.makeTensorInfo(outShape, 'float32', out);
};

const batchNormKernel: KernelFactory = (addon, original) => (args) => {
  const { x, mean, variance, offset, scale } = args.inputs;
  const xValues = float32Values(args.backend, x);
  const meanValues = float32Values(args.backend, mean);
  const varianceValues = float32Values(args.backend, variance);
  const offsetValues = offset ? float32Values(args.backend, offset) : null;
  const scaleValues = scale ? float32Values(args.backend, scale) : null;
  const ranksAgree =
    !!mean &&
    !!variance &&
    mean.shape.length === variance.shape.length &&
    (!offset || offset.shape.length === mean.shape.length) &&
    (!scale || scale.shape.length === mean.shape.length);
  if (
    !x ||
    !xValues ||
    !meanValues ||
    !varianceValues ||
    !ranksAgree ||
    (offset && !offsetValues) ||
    (scale && !scaleValues) ||
    xValues.length === 0 ||
    meanValues.length === 0 ||
    varianceValues.length === 0 ||
    offsetValues?.length === 0 ||
    scaleValues?.length === 0
  ) {
    return runOriginal(original, args);
  }
  const eps = args.attrs?.varianceEpsilon;
  const y = outputPool.acquire(xValues.length);
  callNative(() =>
    addon.batchNorm({
      x: xValues,
      mean: meanValues,
      variance: varianceValues,
      offset: offsetValues,
      scale: scaleValues,
      epsilon: typeof eps === 'number' ? eps : 0.001,
      y,
    }),
  );
  return args.backend.makeTensorInfo(x.shape.slice(), 'float32', y);
};

/** Factories of the elementwise kernels, by tfjs kernel name. */
export const ELEMENTWISE_KERNELS: Record<string, KernelFactory> = {
  Add: binaryKernel(0),
  Sub: binaryKernel(1),
  Multiply: binaryKernel(2),
  RealDiv: binaryKernel(3),
  SquaredDifference: binaryKernel(4),
  Maximum: binaryKernel(5),
  Minimum: binaryKernel(6),
  Relu: unaryKernel(0),
  Relu6: unaryKernel(1),
  Step: unaryKernel(2),
  Square: unaryKernel(3),
  Neg: unaryKernel(4),
  Abs: unaryKernel(5),
  Sqrt: unaryKernel(6),
  Rsqrt: unaryKernel(7),
  Sum: reduceKernel(false),
  Mean: reduceKernel(true),
  Tile: tileKernel,
  FusedBatchNorm: batchNormKernel,
};
