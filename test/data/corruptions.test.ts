import { describe, expect, it } from 'vitest';
import {
  CORRUPTIONS,
  CORRUPTION_PARAMETERS,
  corruptDataset,
  corruptImages,
  jpegQuantizationTable,
  poissonSample,
  type CorruptionName,
} from '../../src/data/corruptions';
import { loadDataset, subsetDataset } from '../../src/data/datasets';
import { Rng } from '../../src/data/rng';
import { InvalidArgumentError } from '../../src/errors';

/** Random uint8 images. */
function randomImages(count: number, h: number, w: number, c: number, seed = 1): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length: count * h * w * c }, () => rng.int(256));
}

const shape = (count: number, height: number, width: number, channels: number) => ({ count, height, width, channels });
const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;

describe('corruptions', () => {
  it('keep the shape, differ from the input, and hurt more at higher severity', () => {
    const images = randomImages(4, 12, 10, 1);
    for (const name of CORRUPTIONS) {
      const distance = [1, 3, 5].map((severity) => {
        const out = corruptImages(images, shape(4, 12, 10, 1), name, severity, new Rng(0));
        expect(out).toBeInstanceOf(Uint8Array);
        expect(out.length).toBe(images.length);
        return mean(out.map((v, i) => Math.abs(v - images[i])));
      });
      expect(distance[0], name).toBeGreaterThan(0);
      expect(distance[2], name).toBeGreaterThan(distance[0]);
    }
  });

  it('are reproducible from the seed, and the seed changes the noise', () => {
    const full = { ...shape(3, 8, 8, 3), images: randomImages(3, 8, 8, 3) };
    const a = corruptImages(full.images, full, 'gaussian-noise', 2, new Rng(5));
    const b = corruptImages(full.images, full, 'gaussian-noise', 2, new Rng(5));
    const c = corruptImages(full.images, full, 'gaussian-noise', 2, new Rng(6));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
  });

  it('gaussian noise adds noise of the stated std where nothing clips', () => {
    const images = new Uint8Array(20000).fill(128);
    const out = corruptImages(images, shape(1, 100, 200, 1), 'gaussian-noise', 5, new Rng(1));
    const diffs = Array.from(out, (v) => (v - 128) / 255);
    const m = mean(diffs);
    const sd = Math.sqrt(mean(diffs.map((d) => (d - m) ** 2)));
    expect(Math.abs(m)).toBeLessThan(0.003);
    // std 0.1, plus the variance of rounding to 1/255 steps.
    expect(sd).toBeCloseTo(Math.sqrt(0.1 ** 2 + 1 / (12 * 255 * 255)), 2);
  });

  it('shot noise keeps the mean and has the Poisson variance; black stays black', () => {
    const rng = new Rng(3);
    for (const lambda of [0.5, 4, 25, 250]) {
      const draws = Array.from({ length: 20000 }, () => poissonSample(rng, lambda));
      const m = mean(draws);
      const v = mean(draws.map((d) => (d - m) ** 2));
      expect(Math.abs(m - lambda) / Math.sqrt(lambda / 20000)).toBeLessThan(4);
      expect(v / lambda).toBeGreaterThan(0.93);
      expect(v / lambda).toBeLessThan(1.07);
      expect(draws.every((d) => Number.isInteger(d) && d >= 0)).toBe(true);
    }
    const black = new Uint8Array(64);
    expect(Array.from(corruptImages(black, shape(1, 8, 8, 1), 'shot-noise', 5, new Rng(0)))).toEqual(Array.from(black));
  });

  it('impulse noise replaces about the stated fraction of values by 0 or 255', () => {
    const images = new Uint8Array(40000).fill(100);
    const out = corruptImages(images, shape(1, 200, 200, 1), 'impulse-noise', 5, new Rng(2));
    const salt = out.filter((v) => v === 255).length / out.length;
    const pepper = out.filter((v) => v === 0).length / out.length;
    expect(out.every((v) => v === 0 || v === 100 || v === 255)).toBe(true);
    expect(salt + pepper).toBeCloseTo(0.07, 2);
    expect(salt).toBeCloseTo(0.035, 2);
  });

  it('deterministic corruptions leave a constant image constant (or move it as defined)', () => {
    const flat = new Uint8Array(28 * 28).fill(77);
    const run = (name: CorruptionName, severity: number) => corruptImages(flat, shape(1, 28, 28, 1), name, severity, new Rng(0));
    for (const name of ['gaussian-blur', 'pixelate', 'contrast'] as const) {
      expect(new Set(run(name, 5)).size, name).toBe(1);
      expect(run(name, 5)[0], name).toBe(77);
    }
    // JPEG at quality 40 keeps a flat block flat (only the DC coefficient, quantized).
    expect(new Set(run('jpeg', 5)).size).toBe(1);
    expect(Math.abs(run('jpeg', 5)[0] - 77)).toBeLessThanOrEqual(5);
    // Brightness on grayscale adds to the value: 77 + 0.2 * 255 at severity 4.
    expect(run('brightness', 4)[0]).toBe(77 + 51);
  });

  it('contrast pulls every pixel towards the image mean by the factor', () => {
    const images = Uint8Array.from([0, 100, 200, 100]);
    const out = corruptImages(images, shape(1, 2, 2, 1), 'contrast', 2, new Rng(0)); // factor 0.5, mean 100
    expect(Array.from(out)).toEqual([50, 100, 150, 100]);
  });

  it('brightness on RGB keeps hue and saturation: channels scale together, black turns gray', () => {
    const images = Uint8Array.from([100, 50, 0, 0, 0, 0]);
    const out = corruptImages(images, shape(1, 1, 2, 3), 'brightness', 1, new Rng(0)); // + 0.05
    const target = 100 / 255 + 0.05;
    expect(Array.from(out)).toEqual([Math.round(255 * target), Math.round((255 * target) / 2), 0, 13, 13, 13]);
  });

  it('pixelate averages by area: 2x2 -> 1x1 -> 2x2, and 4 -> 3 -> 4 pixels with fractional overlaps', () => {
    const images = Uint8Array.from([0, 40, 80, 120]);
    const out = corruptImages(images, shape(1, 2, 2, 1), 'pixelate', 5, new Rng(0)); // floor(2 * 0.65) = 1
    expect(Array.from(out)).toEqual([60, 60, 60, 60]);
    // A 1x4 row at severity 4: floor(4 * 0.75) = 3 coarse pixels, each 4/3 input pixels wide.
    const row = Uint8Array.from([0, 90, 180, 240]);
    const coarse = [(0 + 90 / 3) * 0.75, (90 * (2 / 3) + 180 * (2 / 3)) * 0.75, (180 / 3 + 240) * 0.75]; // 22.5, 135, 225
    // Back to 4: output pixel k covers [3k/4, 3(k+1)/4) of the coarse row.
    const back = [coarse[0], (coarse[0] + coarse[1] * 2) / 3, (coarse[1] * 2 + coarse[2]) / 3, coarse[2]];
    const pixelated = corruptImages(row, shape(1, 1, 4, 1), 'pixelate', 4, new Rng(0));
    expect(Array.from(pixelated)).toEqual(back.map((v) => Math.round(v)));
  });

  it('gaussian blur smooths an impulse into a symmetric bump that sums to the impulse', () => {
    const images = new Uint8Array(15 * 15);
    images[7 * 15 + 7] = 255;
    const out = corruptImages(images, shape(1, 15, 15, 1), 'gaussian-blur', 5, new Rng(0)); // sigma 1
    expect(out[7 * 15 + 7]).toBe(Math.round(255 / (2 * Math.PI))); // the 2-D Gaussian's peak, 1 / (2 pi sigma^2)
    expect(out[7 * 15 + 6]).toBe(out[7 * 15 + 8]);
    expect(out[6 * 15 + 7]).toBe(out[8 * 15 + 7]);
    expect(Math.abs(out.reduce((s, v) => s + v, 0) - 255)).toBeLessThan(8); // rounding of 81 taps
  });

  it('jpeg: IJG table scaling (all ones at quality 100); a lower quality loses more', () => {
    expect(Array.from(jpegQuantizationTable(50).subarray(0, 4))).toEqual([16, 11, 10, 16]);
    expect(jpegQuantizationTable(100).every((q) => q === 1)).toBe(true);
    expect(jpegQuantizationTable(10)[0]).toBe(80); // scale 500: (16 * 500 + 50) / 100
    expect(jpegQuantizationTable(1, true)[63]).toBe(255); // clamped
    expect(() => jpegQuantizationTable(0)).toThrow(InvalidArgumentError);
    const images = randomImages(2, 28, 28, 3, 9);
    const err = (q: number) => {
      // Quality through the severities: 80 (1) ... 40 (5).
      const out = corruptImages(images, shape(2, 28, 28, 3), 'jpeg', q, new Rng(0));
      return mean(out.map((v, i) => Math.abs(v - images[i])));
    };
    expect(err(5)).toBeGreaterThan(err(1));
  });

  it('corruptDataset corrupts every image and keeps labels; the noise depends on (seed, kind, severity) only', async () => {
    const full = await loadDataset('fashion-mnist-mini', { split: 'test' });
    const test = subsetDataset(full, Int32Array.from({ length: 20 }, (_, i) => i));
    const a = corruptDataset(test, 'shot-noise', 3, 7);
    expect(a.labels).toBe(test.labels);
    expect(a.count).toBe(20);
    expect(Array.from(a.images)).not.toEqual(Array.from(test.images));
    expect(Array.from(corruptDataset(test, 'shot-noise', 3, 7).images)).toEqual(Array.from(a.images));
    expect(Array.from(corruptDataset(test, 'shot-noise', 3, 8).images)).not.toEqual(Array.from(a.images));
  });

  it('has five parameters per kind, and names bad arguments', () => {
    for (const name of CORRUPTIONS) expect(CORRUPTION_PARAMETERS[name]).toHaveLength(5);
    const images = new Uint8Array(16);
    expect(() => corruptImages(images, shape(1, 4, 4, 1), 'fog' as CorruptionName, 1, new Rng(0))).toThrow(/for corruption/);
    expect(() => corruptImages(images, shape(1, 4, 4, 1), 'contrast', 6, new Rng(0))).toThrow(/for severity/);
    expect(() => corruptImages(images, shape(2, 4, 4, 1), 'contrast', 1, new Rng(0))).toThrow(/for images/);
  });
});
