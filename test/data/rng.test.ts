import { describe, expect, it } from 'vitest';
import { Rng, Xoshiro128 } from '../../src/data/rng';
import { InvalidArgumentError } from '../../src/errors';

/** Pearson's chi-square statistic of observed counts against equal expected counts. */
function chiSquare(counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  const expected = total / counts.length;
  let chi = 0;
  for (let i = 0; i < counts.length; i++) chi += (counts[i] - expected) ** 2 / expected;
  return chi;
}

describe('Rng', () => {
  it('xoshiro128** follows the published recurrence (values worked by hand from state [1, 2, 3, 4])', () => {
    // out = rotl(s1 * 5, 7) * 9. Step 1: s1 = 2 -> rotl(10, 7) * 9 = 1280 * 9 = 11520; the state becomes
    // [7, 0, 1026, 12288], so step 2 outputs 0; then [12295, 1029, 1029, 25165824] -> rotl(5145, 7) * 9.
    const g = new Xoshiro128([1, 2, 3, 4]);
    expect([g.nextUint32(), g.nextUint32(), g.nextUint32()]).toEqual([11520, 0, 5145 * 128 * 9]);
    expect(() => new Xoshiro128([0, 0, 0, 0])).toThrow(InvalidArgumentError);
  });

  it('is deterministic per seed and differs across seeds', () => {
    const draw = (seed: number | number[]): number[] => {
      const r = new Rng(seed);
      return Array.from({ length: 8 }, () => r.nextUint32());
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(0)).not.toEqual(draw(-0 - 1));
    expect(draw(2 ** 40)).not.toEqual(draw(0)); // high seed words are used
    expect(draw([7, 1])).not.toEqual(draw([7, 2]));
    expect(draw(5)).toEqual(draw([5]));
  });

  it('next(), uniform() and int() stay in range', () => {
    const r = new Rng(1);
    for (let i = 0; i < 20000; i++) {
      const u = r.next();
      expect(u >= 0 && u < 1).toBe(true);
      const v = r.uniform(-3, 0.5);
      expect(v >= -3 && v < 0.5).toBe(true);
      const k = r.int(7);
      expect(Number.isInteger(k) && k >= 0 && k < 7).toBe(true);
    }
    expect(r.int(1)).toBe(0);
    const big = r.int(2 ** 32);
    expect(big >= 0 && big < 2 ** 32).toBe(true);
  });

  it('int() and next() are roughly uniform (chi-square, generous bound)', () => {
    const r = new Rng(2024);
    const draws = 100_000;
    const ints = new Array(10).fill(0);
    for (let i = 0; i < draws; i++) ints[r.int(10)]++;
    // 9 degrees of freedom: P(chi2 > 40) ~ 7e-6; a biased or broken generator lands far above.
    expect(chiSquare(ints)).toBeLessThan(40);
    const bins = new Array(16).fill(0);
    for (let i = 0; i < draws; i++) bins[Math.floor(r.next() * 16)]++;
    expect(chiSquare(bins)).toBeLessThan(50); // 15 degrees of freedom
    // Every output bit is fair.
    const ones = new Array(32).fill(0);
    for (let i = 0; i < 20000; i++) {
      const x = r.nextUint32();
      for (let b = 0; b < 32; b++) ones[b] += (x >>> b) & 1;
    }
    for (const n of ones) expect(Math.abs(n / 20000 - 0.5)).toBeLessThan(0.02);
  });

  it('consecutive seeds give uncorrelated first outputs', () => {
    // A bad seeding scheme makes seeds 0, 1, 2, ... start in nearby states.
    const firsts = new Array(16).fill(0);
    for (let seed = 0; seed < 16000; seed++) firsts[Math.floor(new Rng(seed).next() * 16)]++;
    expect(chiSquare(firsts)).toBeLessThan(50);
  });

  it('normal() has mean 0 and variance 1', () => {
    const r = new Rng(9);
    const n = 50_000;
    let s = 0;
    let s2 = 0;
    let beyond2 = 0;
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      s += z;
      s2 += z * z;
      if (Math.abs(z) > 2) beyond2++;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.03);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.03);
    expect(Math.abs(beyond2 / n - 0.0455)).toBeLessThan(0.006); // the normal tail, not just two moments
    const shifted = new Rng(9).normal(10, 0);
    expect(shifted).toBe(10);
  });

  it('shuffle() returns a permutation, and every position is reachable', () => {
    const r = new Rng(3);
    const a = Array.from({ length: 100 }, (_, i) => i);
    const out = r.shuffle(a);
    expect(out).toBe(a);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(a).not.toEqual(Array.from({ length: 100 }, (_, i) => i));
    // Where element 0 of a 4-array lands is uniform over 4 places.
    const where = new Array(4).fill(0);
    for (let t = 0; t < 8000; t++) where[r.shuffle([0, 1, 2, 3]).indexOf(0)]++;
    expect(chiSquare(where)).toBeLessThan(25);
    const perm = r.permutation(50);
    expect(perm).toBeInstanceOf(Int32Array);
    expect([...perm].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('derive() depends only on the seed and the key; fork() advances the parent', () => {
    const a = new Rng(11);
    const fresh = a.derive(3).nextUint32();
    a.nextUint32();
    a.nextUint32();
    expect(a.derive(3).nextUint32()).toBe(fresh); // consumption does not matter
    expect(a.derive(4).nextUint32()).not.toBe(fresh);
    expect(new Rng([11, 3]).nextUint32()).toBe(fresh);

    const b = new Rng(11);
    const c = new Rng(11);
    const childB = b.fork();
    const childC = c.fork();
    expect(childB.nextUint32()).toBe(childC.nextUint32());
    expect(b.nextUint32()).toBe(c.nextUint32());
    expect(b.fork().nextUint32()).not.toBe(childB.nextUint32());
  });

  it('validates its arguments', () => {
    const r = new Rng(0);
    expect(() => new Rng(1.5)).toThrow(InvalidArgumentError);
    expect(() => new Rng([])).toThrow(/seed/);
    expect(() => r.int(0)).toThrow(/integer in \[1, 4294967296\] for n/);
    expect(() => r.uniform(2, 1)).toThrow(/for hi/);
    expect(() => r.derive(Number.NaN)).toThrow(/key/);
    expect(() => r.bernoulli(1.5)).toThrow(/for p/);
  });
});
