/**
 * A seeded pseudo-random number generator for reproducible shuffling and augmentation.
 *
 * The generator is xoshiro128** (Blackman & Vigna, 2018): 128 bits of state, period 2^128 - 1,
 * passes BigCrush and PractRand, and needs only 32-bit integer arithmetic, which JavaScript does
 * exactly with `Math.imul` and `>>> 0`. Seed words are expanded into the state by a
 * splitmix-style counter passed through a 32-bit avalanche mixer, so nearby seeds (0, 1, 2, ...)
 * give unrelated streams.
 */
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';

const GOLDEN_GAMMA = 0x9e3779b9; // 2^32 / golden ratio: the splitmix increment

/** A 32-bit avalanche mixer (Chris Wellons' "lowbias32" constants). */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));

/** Splits a safe integer into 32-bit words (low word first; negative numbers keep their sign). */
function seedWords(argument: string, seed: number): number[] {
  validate.integer(argument, seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const magnitude = Math.abs(seed);
  const low = magnitude % 0x100000000;
  const high = Math.floor(magnitude / 0x100000000);
  return [low >>> 0, (high | (seed < 0 ? 0x80000000 : 0)) >>> 0];
}

/**
 * The bare xoshiro128** generator over explicit state. {@link Rng} is the public face; this is
 * exported so tests can check the recurrence against known values.
 */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** @param state Four 32-bit words, not all zero. */
  constructor(state: readonly [number, number, number, number]) {
    [this.s0, this.s1, this.s2, this.s3] = state.map((w) => w >>> 0);
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) {
      throw new InvalidArgumentError('state', 'four 32-bit words, not all zero', '[0, 0, 0, 0]');
    }
  }

  /** The next 32-bit output as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }
}

/**
 * A seeded random stream. Same seed, same calls -> same numbers, on every platform.
 *
 * ```ts
 * const rng = new Rng(42);
 * rng.shuffle(indices);
 * const epochRng = new Rng(42).derive(epoch); // independent of how much `rng` was used
 * ```
 */
export class Rng {
  /** The seed words this stream was created from (see {@link Rng.derive}). */
  readonly seed: readonly number[];
  private readonly core: Xoshiro128;
  private spareNormal: number | undefined;

  /**
   * @param seed A safe integer, or a list of them (a list is a path of derived keys:
   *   `new Rng([s, k])` is `new Rng(s).derive(k)`).
   */
  constructor(seed: number | readonly number[] = 0) {
    const keys = typeof seed === 'number' ? [seed] : seed;
    if (!Array.isArray(keys) || keys.length === 0) validate.fail('seed', 'a safe integer or a non-empty array of them', seed);
    this.seed = [...keys];
    const words = keys.flatMap((k, i) => seedWords(Array.isArray(seed) ? `seed[${i}]` : 'seed', k));
    // Absorb every seed word, then squeeze four state words: a splitmix-style sponge.
    let h = mix32(words.length);
    for (const w of words) h = mix32((h ^ w) + GOLDEN_GAMMA);
    const state: number[] = [];
    for (let i = 0; i < 4; i++) {
      h = (h + GOLDEN_GAMMA) >>> 0;
      state.push(mix32(h));
    }
    if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1; // the one state xoshiro cannot leave
    this.core = new Xoshiro128(state as [number, number, number, number]);
  }

  /** A uniform unsigned 32-bit integer. */
  nextUint32(): number {
    return this.core.nextUint32();
  }

  /** A uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const high = this.core.nextUint32() >>> 5; // 27 bits
    const low = this.core.nextUint32() >>> 6; // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  }

  /** A uniform float in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    validate.number('lo', lo);
    validate.number('hi', hi, { ge: lo });
    return lo + (hi - lo) * this.next();
  }

  /** A uniform integer in [0, n), without modulo bias. n must be in [1, 2^32]. */
  int(n: number): number {
    validate.integer('n', n, 1, 0x100000000);
    // Reject the top partial block of 2^32 so every residue is equally likely.
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.core.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    validate.number('p', p, { ge: 0, le: 1 });
    return this.next() < p;
  }

  /** A standard normal sample (Box-Muller; the second value of each pair is kept for the next call). */
  normal(mean = 0, std = 1): number {
    validate.number('mean', mean);
    validate.number('std', std, { ge: 0 });
    if (this.spareNormal !== undefined) {
      const z = this.spareNormal;
      this.spareNormal = undefined;
      return mean + std * z;
    }
    const u = 1 - this.next(); // (0, 1]: log(u) stays finite
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * this.next();
    this.spareNormal = r * Math.sin(theta);
    return mean + std * r * Math.cos(theta);
  }

  /** Shuffles `array` in place (Fisher-Yates: every permutation equally likely) and returns it. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    validate.integer('n', n, 0, 0x7fffffff);
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = i;
    return this.shuffle(out);
  }

  /**
   * A new stream seeded from this one's next outputs. Advances this stream; use it to hand a
   * sub-task its own generator.
   */
  fork(): Rng {
    return new Rng([this.nextUint32(), this.nextUint32()]);
  }

  /**
   * A stream determined by this stream's seed and `key` only, not by how far this stream has
   * advanced: `new Rng(seed).derive(epoch)` gives every epoch its own reproducible stream.
   */
  derive(key: number): Rng {
    seedWords('key', key);
    return new Rng([...this.seed, key]);
  }
}
