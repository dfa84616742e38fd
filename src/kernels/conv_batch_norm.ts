/**
 * Convolution + batch normalization (+ residual) (+ ReLU) as one differentiable tfjs op: the
 * unit the ResNet layers of `src/models/layers.ts` are made of.
 *
 *     z = conv2d(x, filter)                                     (no bias, NHWC)
 *     training:  mean, variance = moments of z over batch, height and width (biased variance)
 *     inference: mean, variance = movingMean, movingVariance
 *     y = act(gamma (z - mean) / sqrt(variance + epsilon) + beta (+ residual))
 *
 * In training mode it also returns the moving averages as tfjs's BatchNormalization layer
 * updates them: `moving - (moving - batch) * (1 - momentum)`.
 *
 * On tfjs's `cpu` backend with the addon loaded, the op is one registered kernel
 * (`SupConConvBatchNorm`, visible to `tf.profile`) whose forward is one native call, and whose
 * registered gradient runs the batch-norm backward in one native pass (docs/kernels.md), then
 * only the convolution gradients tfjs asks for (no input gradient for a network's first layer).
 * On any other backend, or without the addon, the op composes tfjs's own conv2d, moments,
 * batchNorm, add and relu, so results (within float32 rounding) and models do not depend on
 * where they run.
 *
 * Synchronized batch norm (data-parallel training, docs/distributed.md): while
 * {@link setBatchNormSync} has set a communicator, training-mode calls take the moments of the
 * whole batch across processes, and the backward sums the per-channel gradient sums across them,
 * so every process computes exactly what one process would on the concatenated batch. The native
 * kernel reduces through the addon's MPI (no trip to JavaScript); the composed path through the
 * communicator's allreduce, as ops whose gradient is the same allreduce.
 */
import * as tf from '@tensorflow/tfjs';
import { callNative, loadNative, requireNative, type NativeConv2DGeometry } from '../native';
import { fail } from '../validate';
import { type CpuBackend, float32Values, type KernelArgs, onCpuBackend, sizeOf } from './cpu_backend';
import { convInfo, nativeGeometry } from './conv';
import { outputPool } from './output_pool';

/** Settings of {@link convBatchNorm}. */
export interface ConvBatchNormSettings {
  /** Convolution stride (both axes). */
  strides: number;
  /** tfjs padding mode of the convolution. */
  padding: 'same' | 'valid';
  /** Added to the variance before the square root. */
  epsilon: number;
  /** Moving-average momentum (training mode): moving' = moving - (moving - batch)(1 - momentum). */
  momentum: number;
  /** Apply ReLU after the normalization (and the residual). */
  relu: boolean;
  /** Batch statistics and moving-average updates (true) or the moving statistics (false). */
  training: boolean;
}

/** Output of {@link convBatchNorm}. */
export interface ConvBatchNormResult {
  /** [batch, outHeight, outWidth, channels]. */
  y: tf.Tensor4D;
  /** Updated moving mean and variance [channels]; training mode only. */
  movingMean?: tf.Tensor1D;
  movingVariance?: tf.Tensor1D;
}

/** The tensors of one call: x [B, H, W, Cin], filter [fH, fW, Cin, C], the rest [C]. */
export interface ConvBatchNormTensors {
  x: tf.Tensor4D;
  filter: tf.Tensor4D;
  gamma: tf.Tensor1D;
  beta: tf.Tensor1D;
  movingMean: tf.Tensor1D;
  movingVariance: tf.Tensor1D;
  /** Added before the activation, of the output's shape; null for none. */
  residual: tf.Tensor4D | null;
}

/** Name of the fused kernel in tfjs's kernel registry (cpu backend). */
export const CONV_BATCH_NORM_KERNEL = 'SupConConvBatchNorm';

/** What synchronized batch norm needs from a communicator (src/mpi.ts's Communicator has it). */
export interface BatchNormSync {
  /**
   * Replaces `values` with their elementwise sum over the processes, in place. Collective: every
   * process calls it the same number of times in the same order.
   */
  allreduceSum(values: Float64Array): unknown;
}

let batchNormSync: BatchNormSync | null = null;

/**
 * Synchronized batch norm for every training-mode {@link convBatchNorm} call (the ConvBatchNorm
 * layers) until turned off with null: the data-parallel driver sets it for a run's training
 * steps. The native kernel then reduces through the addon's MPI, which must be initialized
 * (src/mpi.ts initMpi); other communicators run the composed path.
 * @throws InvalidArgumentError when `sync` is neither null nor such an object.
 */
export function setBatchNormSync(sync: BatchNormSync | null): void {
  if (sync !== null && (typeof sync !== 'object' || typeof (sync as BatchNormSync).allreduceSum !== 'function')) {
    fail('sync', 'an object with allreduceSum(values: Float64Array) (a Communicator), or null', sync);
  }
  batchNormSync = sync;
}

/** The communicator synchronized batch norm uses now, or null. */
export function batchNormSyncInUse(): BatchNormSync | null {
  return batchNormSync;
}

/**
 * Runs the fused unit. Shapes are the caller's responsibility (the layer checks them when it
 * is built); tfjs reports mismatches on the composed path.
 */
export function convBatchNorm(t: ConvBatchNormTensors, s: ConvBatchNormSettings): ConvBatchNormResult {
  const sync = s.training ? batchNormSync : null;
  if (!nativeUsable(t) || (sync !== null && !nativeMpiReady())) return convBatchNormComposed(t, s, sync);
  const inputs: tf.NamedTensorMap = {
    x: t.x,
    filter: t.filter,
    gamma: t.gamma,
    beta: t.beta,
    movingMean: t.movingMean,
    movingVariance: t.movingVariance,
    ...(t.residual ? { residual: t.residual } : {}),
  };
  const attrs: KernelAttrs = { ...s, keepForGradient: tf.engine().isTapeOn(), residual: t.residual !== null, syncBatchNorm: sync !== null };
  const out = tf.engine().runKernel<tf.Tensor[]>(CONV_BATCH_NORM_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap);
  return s.training
    ? { y: out[0] as tf.Tensor4D, movingMean: out[1] as tf.Tensor1D, movingVariance: out[2] as tf.Tensor1D }
    : { y: out[0] as tf.Tensor4D };
}

/**
 * The same unit composed of tfjs ops (any backend); the reference of the native path. With `sync`
 * (training mode) the moments are the whole distributed batch's (see {@link setBatchNormSync}).
 */
export function convBatchNormComposed(t: ConvBatchNormTensors, s: ConvBatchNormSettings, sync: BatchNormSync | null = null): ConvBatchNormResult {
  return tf.tidy(() => {
    const z = tf.conv2d(t.x, t.filter, s.strides, s.padding);
    let normalized: tf.Tensor4D;
    let moving: { movingMean: tf.Tensor1D; movingVariance: tf.Tensor1D } | null = null;
    if (s.training) {
      const { mean, variance } = sync ? syncedMoments(z, sync) : (tf.moments(z, [0, 1, 2]) as { mean: tf.Tensor1D; variance: tf.Tensor1D });
      normalized = tf.batchNorm(z, mean, variance, t.beta, t.gamma, s.epsilon);
      const decay = 1 - s.momentum;
      moving = {
        movingMean: tf.sub(t.movingMean, tf.mul(tf.sub(t.movingMean, mean), decay)),
        movingVariance: tf.sub(t.movingVariance, tf.mul(tf.sub(t.movingVariance, variance), decay)),
      };
    } else {
      normalized = tf.batchNorm(z, t.movingMean, t.movingVariance, t.beta, t.gamma, s.epsilon);
    }
    let y = t.residual ? tf.add(normalized, t.residual) : normalized;
    if (s.relu) y = tf.relu(y);
    return { y: y as tf.Tensor4D, ...(moving ?? {}) };
  });
}

/**
 * An op whose value is the elementwise sum of x over the processes and whose gradient is the
 * sum of dy over them: the derivative of the sum of every process's loss with respect to this
 * process's x (the driver averages the parameter gradients afterwards).
 */
function allreduceOp(sync: BatchNormSync): (x: tf.Tensor) => tf.Tensor {
  const reduce = (t: tf.Tensor) => {
    const values = Float64Array.from(t.dataSync());
    sync.allreduceSum(values);
    return tf.tensor(Float32Array.from(values), t.shape, 'float32');
  };
  return tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = inputs[0] as tf.Tensor;
    return { value: reduce(x), gradFunc: (dy: tf.Tensor) => reduce(dy) };
  }) as (x: tf.Tensor) => tf.Tensor;
}

/** Mean and biased variance of z over (batch, height, width) of the whole distributed batch (two passes). */
function syncedMoments(z: tf.Tensor4D, sync: BatchNormSync): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const count = new Float64Array([z.shape[0] * z.shape[1] * z.shape[2]]);
  sync.allreduceSum(count);
  const sum = allreduceOp(sync);
  const mean = tf.div(sum(tf.sum(z, [0, 1, 2])), count[0]) as tf.Tensor1D;
  const variance = tf.div(sum(tf.sum(tf.square(tf.sub(z, mean)), [0, 1, 2])), count[0]) as tf.Tensor1D;
  return { mean, variance };
}

/** Whether the addon's MPI is initialized, so the native kernel can reduce through it. */
function nativeMpiReady(): boolean {
  const addon = loadNative();
  if (!addon || typeof addon.mpiInfo !== 'function') return false;
  const info = addon.mpiInfo();
  return info.compiled && info.initialized && !info.finalized;
}

/** The kernel's attributes: the settings plus whether a gradient will be taken. */
interface KernelAttrs extends ConvBatchNormSettings {
  keepForGradient: boolean;
  /** Whether the kernel has the `residual` input. */
  residual: boolean;
  /** Synchronized batch norm through the addon's MPI (training mode). */
  syncBatchNorm: boolean;
}

/** Whether the native kernel can run these tensors (else the composed path runs). */
function nativeUsable(t: ConvBatchNormTensors): boolean {
  if (!onCpuBackend()) return false;
  const addon = loadNative();
  if (!addon || typeof addon.convBatchNormForward !== 'function') return false;
  const all = [t.x, t.filter, t.gamma, t.beta, t.movingMean, t.movingVariance, ...(t.residual ? [t.residual] : [])];
  if (!all.every((v) => v.dtype === 'float32')) return false;
  const channels = t.filter.shape[3];
  return (
    t.x.rank === 4 &&
    t.filter.rank === 4 &&
    t.filter.shape[0] === t.filter.shape[1] &&
    t.x.shape[3] === t.filter.shape[2] &&
    [t.gamma, t.beta, t.movingMean, t.movingVariance].every((v) => v.rank === 1 && v.shape[0] === channels)
  );
}

interface NativePlan {
  geometry: NativeConv2DGeometry;
  outShape: [number, number, number, number];
}

/** The native geometry of x and filter under the settings (tfjs's own 'same'/'valid' rules). */
function planGeometry(x: tf.TensorInfo, filter: tf.TensorInfo, s: ConvBatchNormSettings): NativePlan {
  const info = convInfo(x.shape, filter.shape, { strides: s.strides, pad: s.padding }, 1);
  const geometry = info && nativeGeometry(info);
  if (!info || !geometry) {
    throw new Error(`${CONV_BATCH_NORM_KERNEL}: unsupported shapes x [${x.shape.join(', ')}], filter [${filter.shape.join(', ')}]`);
  }
  return { geometry, outShape: info.outShape as NativePlan['outShape'] };
}

/** The zero-copy float32 storage of a kernel input (the op only sends float32 cpu tensors). */
function valuesOf(backend: CpuBackend, info: tf.TensorInfo | null | undefined, name: string): Float32Array {
  const values = float32Values(backend, info);
  if (!values) throw new Error(`${CONV_BATCH_NORM_KERNEL}: '${name}' is not float32 data on the cpu backend`);
  return values;
}

/** What the forward keeps for the gradient, keyed by the data of its output y. */
interface SavedForward {
  plan: NativePlan;
  z: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
  /** Values per channel the statistics were taken over (the whole batch's under sync). */
  count: number;
}
const savedForward = new WeakMap<tf.DataId, SavedForward>();

function forwardKernel(args: KernelArgs): tf.TensorInfo[] {
  const addon = requireNative();
  const { backend, inputs } = args;
  const attrs = args.attrs as unknown as KernelAttrs;
  const plan = planGeometry(inputs.x!, inputs.filter!, attrs);
  const size = sizeOf(plan.outShape);
  const channels = plan.geometry.outChannels;
  const y = outputPool.acquire(size);
  const z = attrs.keepForGradient ? outputPool.acquire(size) : null;
  const mean = new Float32Array(channels);
  const variance = new Float32Array(channels);
  const newMovingMean = attrs.training ? new Float32Array(channels) : null;
  const newMovingVariance = attrs.training ? new Float32Array(channels) : null;
  const count = new Float64Array(1);
  callNative(() =>
    addon.convBatchNormForward({
      ...plan.geometry,
      x: valuesOf(backend, inputs.x, 'x'),
      filter: valuesOf(backend, inputs.filter, 'filter'),
      gamma: valuesOf(backend, inputs.gamma, 'gamma'),
      beta: valuesOf(backend, inputs.beta, 'beta'),
      movingMean: valuesOf(backend, inputs.movingMean, 'movingMean'),
      movingVariance: valuesOf(backend, inputs.movingVariance, 'movingVariance'),
      residual: inputs.residual ? valuesOf(backend, inputs.residual, 'residual') : null,
      relu: attrs.relu,
      training: attrs.training,
      epsilon: attrs.epsilon,
      momentum: attrs.momentum,
      y,
      z,
      mean,
      variance,
      newMovingMean,
      newMovingVariance,
      count,
      syncBatchNorm: attrs.syncBatchNorm && attrs.training,
    }),
  );
  const out = [backend.makeTensorInfo(plan.outShape, 'float32', y)];
  if (z) savedForward.set(out[0].dataId, { plan, z, mean, variance, count: count[0] });
  if (newMovingMean && newMovingVariance) {
    out.push(backend.makeTensorInfo([channels], 'float32', newMovingMean), backend.makeTensorInfo([channels], 'float32', newMovingVariance));
  }
  return out;
}

/**
 * dz arrays of earlier gradient calls. tfjs evaluates every requested input gradient of one node
 * before it calls the next node's gradient function, so when a gradient function starts, the
 * arrays of the nodes before it are no longer needed and go back to the output pool.
 */
let pendingGradients: Float32Array[] = [];

function gradient(dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], rawAttrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const attrs = rawAttrs as unknown as KernelAttrs;
  const addon = requireNative();
  const backend = tf.backend() as unknown as CpuBackend;
  const [x, filter, gamma, y] = saved;
  const dyY = Array.isArray(dy) ? dy[0] : dy;
  const fwd = savedForward.get(y.dataId);
  if (!fwd) throw new Error(`${CONV_BATCH_NORM_KERNEL}: the forward pass was run without keeping its gradient state`);
  for (const array of pendingGradients) outputPool.release(array);
  pendingGradients = [];
  const { plan } = fwd;
  const channels = plan.geometry.outChannels;
  // With a ReLU the shortcut's gradient is dy masked by it; without, dy itself.
  const maskedResidual = attrs.residual && attrs.relu;
  let bn: { dz: Float32Array; dgamma: Float32Array; dbeta: Float32Array; dresidual: Float32Array | null } | null = null;
  // The batch-norm part, once, on the first gradient tfjs asks for.
  const batchNormPart = () => {
    if (bn) return bn;
    const dz = outputPool.acquire(sizeOf(plan.outShape));
    const result = {
      dz,
      dgamma: new Float32Array(channels),
      dbeta: new Float32Array(channels),
      dresidual: maskedResidual ? outputPool.acquire(sizeOf(plan.outShape)) : null,
    };
    callNative(() =>
      addon.convBatchNormBackward({
        ...plan.geometry,
        x: null,
        filter: null,
        gamma: valuesOf(backend, gamma, 'gamma'),
        z: fwd.z,
        y: attrs.relu ? valuesOf(backend, y, 'y') : null,
        mean: fwd.mean,
        variance: fwd.variance,
        dy: valuesOf(backend, dyY, 'dy'),
        relu: attrs.relu,
        training: attrs.training,
        epsilon: attrs.epsilon,
        dx: null,
        dfilter: null,
        dgamma: result.dgamma,
        dbeta: result.dbeta,
        dresidual: result.dresidual,
        dz,
        count: fwd.count,
        syncBatchNorm: attrs.syncBatchNorm && attrs.training,
      }),
    );
    outputPool.release(fwd.z);
    savedForward.delete(y.dataId);
    pendingGradients.push(dz);
    return (bn = result);
  };
  const zeros = () => tf.zeros([channels]);
  return {
    x: () => {
      const dx = outputPool.acquire(sizeOf(x.shape));
      const { dz } = batchNormPart();
      callNative(() => addon.conv2dBackpropInput({ ...plan.geometry, dy: dz, filter: valuesOf(backend, filter, 'filter'), dx, algorithm: 0 }));
      return tf.tensor(dx, x.shape);
    },
    filter: () => {
      const dfilter = new Float32Array(sizeOf(filter.shape));
      const { dz } = batchNormPart();
      callNative(() => addon.conv2dBackpropFilter({ ...plan.geometry, x: valuesOf(backend, x, 'x'), dy: dz, dfilter }));
      return tf.tensor(dfilter, filter.shape);
    },
    gamma: () => tf.tensor1d(batchNormPart().dgamma),
    beta: () => tf.tensor1d(batchNormPart().dbeta),
    movingMean: zeros,
    movingVariance: zeros,
    residual: () => {
      const { dresidual } = batchNormPart();
      return dresidual ? tf.tensor(dresidual, plan.outShape) : tf.clone(dyY);
    },
  };
}

tf.registerKernel({ kernelName: CONV_BATCH_NORM_KERNEL, backendName: 'cpu', kernelFunc: forwardKernel as unknown as tf.KernelFunc });
tf.registerGradient({
  kernelName: CONV_BATCH_NORM_KERNEL,
  inputsToSave: ['x', 'filter', 'gamma'],
  outputsToSave: [true],
  gradFunc: gradient as unknown as tf.GradConfig['gradFunc'],
});
