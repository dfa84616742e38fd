/**
 * The bias + activation stage of tfjs's fused kernels (FusedConv2D, _FusedMatMul). Per-channel
 * bias with relu/relu6/leakyrelu/elu/sigmoid runs inside the native call; anything else (prelu,
 * a bias that broadcasts over more than the channel axis) runs after it through the cpu
 * backend's own Add and activation kernels, exactly as tfjs's JS fused kernels do.
 */
import * as tf from '@tensorflow/tfjs';
import type { NativeEpilogueArgs } from '../native';
import { type CpuBackend, float32Values, runCpuKernel, sizeOf } from './cpu_backend';

const NATIVE_ACTIVATIONS: Record<string, NativeEpilogueArgs['activation']> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  leakyrelu: 3,
  elu: 4,
  sigmoid: 5,
};

const ACTIVATION_KERNELS: Record<string, string> = {
  relu: 'Relu',
  relu6: 'Relu6',
  leakyrelu: 'LeakyRelu',
  elu: 'Elu',
  sigmoid: 'Sigmoid',
  prelu: 'Prelu',
};

/** How a fused kernel's output stage is split between the native call and tfjs kernels. */
export interface EpiloguePlan {
  native: NativeEpilogueArgs;
  /** Applied to the native result afterwards (disposing it), or null when nothing is left. */
  finish: ((result: tf.TensorInfo, backend: CpuBackend) => tf.TensorInfo) | null;
}

/** Whether `bias` is one value per output channel (shape [.., 1, C]) or a single value. */
function perChannelBias(bias: tf.TensorInfo, channels: number, outRank: number): boolean {
  if (bias.shape.length > outRank) return false;
  if (sizeOf(bias.shape) === 1) return true;
  const last = bias.shape[bias.shape.length - 1];
  return last === channels && sizeOf(bias.shape) === channels;
}

/**
 * Plans the output stage; null when the activation is unknown (the caller falls back to the JS
 * kernel, which reports it).
 */
export function planEpilogue(
  backend: CpuBackend,
  bias: tf.TensorInfo | null | undefined,
  activation: unknown,
  preluWeights: tf.TensorInfo | null | undefined,
  leakyreluAlpha: unknown,
  channels: number,
  outRank: number,
): EpiloguePlan | null {
  const act = typeof activation === 'string' ? activation : 'linear';
  if (!(act in NATIVE_ACTIVATIONS) && act !== 'prelu') return null;
  const alpha = typeof leakyreluAlpha === 'number' ? leakyreluAlpha : 0.2;
  let nativeBias: Float32Array | null = null;
  let deferredBias: tf.TensorInfo | null = null;
  if (bias) {
    const values = float32Values(backend, bias);
    if (values && perChannelBias(bias, channels, outRank)) {
      nativeBias = values.length === channels ? values : new Float32Array(channels).fill(values[0]);
    } else {
      deferredBias = bias;
    }
  }
  const nativeActivation = deferredBias === null && act !== 'prelu';
  const native: NativeEpilogueArgs = {
    bias: nativeBias,
    activation: nativeActivation ? NATIVE_ACTIVATIONS[act] : 0,
    leakyReluAlpha: alpha,
  };
  if (nativeActivation) return { native, finish: null };
  return {
    native,
    finish: (result, cpu) => {
      let current = result;
      if (deferredBias) {
        const added = runCpuKernel('Add', { a: current, b: deferredBias }, cpu);
        cpu.disposeIntermediateTensorInfo(current);
        current = added;
      }
      if (act !== 'linear') {
        const inputs = act === 'prelu' ? { x: current, alpha: preluWeights } : { x: current };
        const activated = runCpuKernel(ACTIVATION_KERNELS[act], inputs, cpu, { alpha });
        cpu.disposeIntermediateTensorInfo(current);
        current = activated;
      }
      return current;
    },
  };
}
