/**
 * Weight initializers shared by the model builders, with reproducible per-layer seeds.
 *
 * tfjs initializers accept a numeric seed, but two layers given the same seed would get
 * the same weights, so a {@link LayerSeeds} sequence hands every layer its own seed
 * derived from the one seed the caller chose.
 */
import * as tf from '@tensorflow/tfjs';

/** A tfjs weight initializer (the layers API does not export the class's type). */
export type WeightInitializer = ReturnType<typeof tf.initializers.varianceScaling>;

/**
 * Variance of a standard normal truncated to [-2, 2]: tfjs's `'normal'` variance-scaling
 * samples a normal truncated at two standard deviations, which shrinks the variance by
 * this factor, so the scale is divided by it to get the intended variance.
 */
export const TRUNCATED_NORMAL_VARIANCE_FACTOR = 0.7737413;

/**
 * Deterministic sequence of per-layer seeds. With no base seed every call returns
 * `undefined`, which lets tfjs draw fresh random weights.
 */
export class LayerSeeds {
  private index = 0;
  constructor(private readonly baseSeed: number | undefined) {}

  /** The seed for the next layer, or `undefined` when the builder is unseeded. */
  next(): number | undefined {
    if (this.baseSeed === undefined) return undefined;
    this.index += 1;
    return mixSeed(this.baseSeed, this.index);
  }
}

/**
 * Hashes a uint32 seed and a layer index into [1, 2^31 - 1]. Hashing, rather than adding the index, keeps
 * seed 1's second layer from sharing weights with seed 2's first; zero is avoided because
 * tfjs's truncated normal treats a zero seed as "no seed".
 */
export function mixSeed(seed: number, index: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 16) ^ Math.imul(index, 0xc2b2ae35), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  const positive = h & 0x7fffffff;
  return positive === 0 ? 1 : positive;
}

/**
 * He (Kaiming) normal initializer for ReLU networks with variance 2 / fan_out, as
 * torchvision's ResNet uses (`kaiming_normal_(mode='fan_out')`). Samples are truncated at
 * two standard deviations (tfjs's only normal variance scaling) with the scale corrected so
 * the variance is exactly 2 / fan_out; fan_out = kernelH * kernelW * outChannels.
 */
export function heNormalFanOut(seed: number | undefined): WeightInitializer {
  return tf.initializers.varianceScaling({
    scale: 2 / TRUNCATED_NORMAL_VARIANCE_FACTOR,
    mode: 'fanOut',
    distribution: 'normal',
    seed,
  });
}

/** Largest seed the builders accept: seeds are uint32 so they hash without loss. */
export const MAX_SEED = 2 ** 32 - 1;

/** Glorot (Xavier) uniform initializer for dense layers, as in Keras's default. */
export function glorotUniform(seed: number | undefined): WeightInitializer {
  return tf.initializers.glorotUniform({ seed });
}
