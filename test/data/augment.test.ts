import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import {
  NO_AUGMENTATION,
  adjustBrightness,
  adjustContrast,
  adjustHue,
  adjustSaturation,
  applyViewPlan,
  augmentView,
  cropBox,
  evaluationView,
  hueMatrix,
  normalize,
  resolveAugmentOptions,
  sampleCropWindow,
  sampleViewPlan,
  twoViews,
  type AugmentOptions,
  AUGMENT_PRESETS,
  augmentOptionsFor,
  checkAugmentSetting,
  defaultAugmentPreset,
  eraseRectangles,
  sampleEraseWindow,
  translatedCropBox,
} from '../../src/data/augment';
import { Rng } from '../../src/data/rng';
import { InvalidArgumentError } from '../../src/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Random images in [0, 1], with exact 0s and 1s sprinkled in to exercise the clipping. */
function randomImages(shape: [number, number, number, number], seed = 1): tf.Tensor4D {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Float32Array.from({ length: n }, () => {
    const u = rng.next();
    return u < 0.05 ? 0 : u > 0.95 ? 1 : rng.next();
  });
  return tf.tensor4d(values, shape);
}

const LUMA = [0.299, 0.587, 0.114];
const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
const only = (o: AugmentOptions): AugmentOptions => ({ ...NO_AUGMENTATION, ...o });

describe('augmentation: two views', () => {
  it('gives views of the right shape and dtype, in [0, 1], for RGB and grayscale batches', () => {
    for (const channels of [3, 1]) {
      const images = randomImages([5, 12, 10, channels]);
      const [a, b] = twoViews(images, new Rng(0));
      for (const v of [a, b]) {
        expect(v.shape).toEqual([5, 12, 10, channels]);
        expect(v.dtype).toBe('float32');
        const values = v.dataSync();
        expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
        expect(Math.max(...values)).toBeLessThanOrEqual(1);
      }
      const resized = augmentView(images, new Rng(0), { outputSize: [7, 9] });
      expect(resized.shape).toEqual([5, 7, 9, channels]);
      tf.dispose([images, a, b, resized]);
    }
  });

  it('is deterministic under a seed; different seeds and the two views differ', () => {
    const images = randomImages([4, 10, 10, 3]);
    const [a1, a2] = twoViews(images, new Rng(42));
    const [b1, b2] = twoViews(images, new Rng(42));
    expect(a1.dataSync()).toEqual(b1.dataSync());
    expect(a2.dataSync()).toEqual(b2.dataSync());
    const [c1] = twoViews(images, new Rng(43));
    expect(maxAbsDiff(a1, c1)).toBeGreaterThan(0.05);
    expect(maxAbsDiff(a1, a2)).toBeGreaterThan(0.05);
    // Each image's two views differ (not just the batch as a whole).
    const perImage = tf.tidy(() => tf.max(tf.abs(tf.sub(a1, a2)), [1, 2, 3]).dataSync());
    for (const d of perImage) expect(d).toBeGreaterThan(0);
    tf.dispose([images, a1, a2, b1, b2, c1]);
  });

  it('a crop at scale 1 with no flip or jitter reproduces the input exactly', () => {
    for (const shape of [
      [3, 8, 8, 3],
      [2, 6, 8, 1],
    ] as [number, number, number, number][]) {
      const images = randomImages(shape, 5);
      const view = augmentView(images, new Rng(1), { cropScale: [1, 1], flipProbability: 0, jitterProbability: 0, grayscaleProbability: 0 });
      expect(view.dataSync()).toEqual(images.dataSync());
      tf.dispose([images, view]);
    }
  });

  it('a flip really mirrors: flipped full crops equal the mirrored input', () => {
    const images = randomImages([3, 6, 8, 3], 6);
    const view = augmentView(images, new Rng(2), only({ flipProbability: 1 }));
    const mirrored = tf.reverse(images, 2);
    expect(view.dataSync()).toEqual(mirrored.dataSync());
    expect(maxAbsDiff(view, images)).toBeGreaterThan(0.1); // and it is not the input
    tf.dispose([images, view, mirrored]);
  });

  it('grayscale with probability 1 gives three equal channels holding the luma', () => {
    const images = randomImages([2, 5, 5, 3], 7);
    const view = augmentView(images, new Rng(3), only({ grayscaleProbability: 1 }));
    const v = view.dataSync();
    const x = images.dataSync();
    for (let p = 0; p < v.length; p += 3) {
      expect(v[p + 1]).toBe(v[p]);
      expect(v[p + 2]).toBe(v[p]);
      expect(v[p]).toBeCloseTo(LUMA[0] * x[p] + LUMA[1] * x[p + 1] + LUMA[2] * x[p + 2], 5);
    }
    tf.dispose([images, view]);
  });

  it('leaks no tensors across 20 calls', () => {
    const images = randomImages([4, 8, 8, 3]);
    const rng = new Rng(9);
    twoViews(images, rng).forEach((t) => t.dispose()); // warm-up: tfjs may cache on first use
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      const [a, b] = twoViews(images, rng, { outputSize: [6, 6] });
      a.dispose();
      b.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    images.dispose();
  });

  it('follows the recipe: flips, jitter and grayscale happen at their probabilities', () => {
    const options = resolveAugmentOptions();
    const plan = sampleViewPlan(2000, 32, 32, 3, new Rng(11), options);
    let flipped = 0;
    let jittered = 0;
    let gray = 0;
    for (let b = 0; b < 2000; b++) {
      if (plan.boxes[4 * b + 1] > plan.boxes[4 * b + 3]) flipped++;
      if (plan.brightness[b] !== 1) jittered++;
      gray += plan.grayscale[b];
      for (const f of [plan.brightness[b], plan.contrast[b], plan.saturation[b]]) {
        expect(f).toBeGreaterThanOrEqual(0.6 - 1e-6);
        expect(f).toBeLessThanOrEqual(1.4 + 1e-6);
      }
      expect(Math.abs(plan.hue[b])).toBeLessThanOrEqual(0.1 + 1e-6);
    }
    expect(Math.abs(flipped / 2000 - 0.5)).toBeLessThan(0.05);
    expect(Math.abs(jittered / 2000 - 0.8)).toBeLessThan(0.04);
    expect(Math.abs(gray / 2000 - 0.2)).toBeLessThan(0.04);
    expect([...plan.colorOrder].sort()).toEqual(['brightness', 'contrast', 'hue', 'saturation']);
    // Grayscale datasets: no saturation, hue or grayscale conversion.
    const mono = sampleViewPlan(100, 28, 28, 1, new Rng(11), options);
    expect([...mono.colorOrder].sort()).toEqual(['brightness', 'contrast']);
    expect(mono.grayscale.every((g) => g === 0)).toBe(true);
    expect(mono.hue.every((h) => h === 0)).toBe(true);
  });

  it('validates options and images', () => {
    const images = randomImages([1, 4, 4, 3]);
    const rng = new Rng(0);
    expect(() => augmentView(images, rng, { cropScale: [0, 1] })).toThrow(/options.cropScale\[0\]/);
    expect(() => augmentView(images, rng, { cropScale: [0.9, 0.2] })).toThrow(/lo <= hi/);
    expect(() => augmentView(images, rng, { hue: 0.6 })).toThrow(/options.hue/);
    expect(() => augmentView(images, rng, { flipProbability: 2 })).toThrow(/options.flipProbability/);
    expect(() => augmentView(images, rng, { outputSize: [0, 3] as [number, number] })).toThrow(/options.outputSize/);
    expect(() => augmentView(images, rng, { blur: 1 } as never)).toThrow(/unknown option 'blur'/);
    expect(() => augmentView(tf.zeros([4, 4, 3]) as unknown as tf.Tensor4D, rng)).toThrow(InvalidArgumentError);
    expect(() => augmentView(tf.zeros([1, 4, 4, 3], 'int32') as tf.Tensor4D, rng)).toThrow(/float32/);
    expect(() => augmentView(tf.zeros([1, 4, 4, 2]) as tf.Tensor4D, rng)).toThrow(/1 or 3 channels/);
    images.dispose();
  });
});

describe('augmentation: random resized crop', () => {
  it('samples windows inside the image with the requested area and aspect ratio', () => {
    const rng = new Rng(4);
    for (let t = 0; t < 2000; t++) {
      const w = sampleCropWindow(32, 32, rng, [0.2, 1], [3 / 4, 4 / 3]);
      expect(w.top).toBeGreaterThanOrEqual(0);
      expect(w.left).toBeGreaterThanOrEqual(0);
      expect(w.top + w.height).toBeLessThanOrEqual(32);
      expect(w.left + w.width).toBeLessThanOrEqual(32);
      // Integer rounding of the side lengths loosens the bounds a little.
      const area = (w.height * w.width) / 1024;
      expect(area).toBeGreaterThan(0.2 * 0.85);
      expect(area).toBeLessThanOrEqual(1);
      const aspect = w.width / w.height;
      expect(aspect).toBeGreaterThan((3 / 4) * 0.85);
      expect(aspect).toBeLessThan((4 / 3) / 0.85);
    }
    // Scale 1 on a square image is the whole image.
    expect(sampleCropWindow(28, 28, rng, [1, 1], [3 / 4, 4 / 3])).toEqual({ top: 0, left: 0, height: 28, width: 28 });
  });

  it('resamples the window with half-pixel centers (checked on a ramp image)', () => {
    // Pixel value = its column, so a resampled view reads back the source positions.
    const width = 10;
    const ramp = tf.tensor4d(Float32Array.from({ length: 4 * width }, (_, i) => i % width), [1, 4, width, 1]);
    const window = { top: 0, left: 2, height: 4, width: 4 };
    for (const mirror of [false, true]) {
      const box = cropBox(window, 4, width, 4, 8, mirror);
      const view = tf.image.cropAndResize(ramp, [box], [0], [4, 8]);
      const row = [...view.dataSync().slice(0, 8)];
      // Output k reads left + (k + 0.5) * 4 / 8 - 0.5 = 1.75 + 0.5 k.
      const expected = Array.from({ length: 8 }, (_, k) => 1.75 + 0.5 * k);
      if (mirror) expected.reverse();
      row.forEach((v, k) => expect(v).toBeCloseTo(expected[k], 5));
      tf.dispose(view);
    }
    ramp.dispose();
  });

  it('never samples outside the image (no extrapolated black pixels), flipped or not', () => {
    // Rounding can put the last sample a hair past the edge, where cropAndResize writes 0; with
    // these sizes about 1 box in 250 did so before cropBox learned to pull its end back.
    const ones = tf.ones([1, 28, 28, 1]) as tf.Tensor4D;
    const rng = new Rng(8);
    const sizes: [number, number][] = [
      [29, 27],
      [28, 28],
      [13, 17],
    ];
    for (const [oh, ow] of sizes) {
      const boxes: number[][] = [];
      for (let t = 0; t < 3000; t++) {
        const w = sampleCropWindow(28, 28, rng, [0.05, 1], [0.5, 2]);
        boxes.push(cropBox(w, 28, 28, oh, ow, rng.next() < 0.5));
      }
      const views = tf.image.cropAndResize(ones, boxes, new Array(boxes.length).fill(0), [oh, ow]);
      expect(tf.min(views).dataSync()[0]).toBeCloseTo(1, 6);
      views.dispose();
    }
    ones.dispose();
  });
});

describe('augmentation: color operations', () => {
  const pixels = [
    [0.2, 0.5, 0.7],
    [0.9, 0.1, 0.3],
    [0.4, 0.4, 0.4],
    [0.6, 0.3, 0.5],
  ];
  /** Two 1x2 images: image 0 holds pixels 0, 1; image 1 holds pixels 2, 3. */
  const make = (): tf.Tensor4D => tf.tensor4d(pixels.flat(), [2, 1, 2, 3]);
  const read = (t: tf.Tensor): number[][] => {
    const v = [...t.dataSync()];
    return [0, 1, 2, 3].map((p) => v.slice(3 * p, 3 * p + 3));
  };
  const clamp = (x: number): number => Math.min(1, Math.max(0, x));
  const lumaOf = (p: number[]): number => LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2];

  it('brightness, contrast and saturation match per-pixel references', () => {
    const images = make();
    const factors = [1.3, 0.6];
    const image = (p: number): number => (p < 2 ? 0 : 1);
    const bright = read(adjustBrightness(images, factors));
    const contrast = read(adjustContrast(images, factors));
    const saturation = read(adjustSaturation(images, factors));
    const means = [0, 1].map((i) => (lumaOf(pixels[2 * i]) + lumaOf(pixels[2 * i + 1])) / 2);
    pixels.forEach((px, p) => {
      const f = factors[image(p)];
      px.forEach((x, c) => {
        expect(bright[p][c]).toBeCloseTo(clamp(f * x), 5);
        expect(contrast[p][c]).toBeCloseTo(clamp(f * x + (1 - f) * means[image(p)]), 5);
        expect(saturation[p][c]).toBeCloseTo(clamp(f * x + (1 - f) * lumaOf(px)), 5);
      });
    });
    images.dispose();
  });

  it('factor 1 and hue 0 leave images exactly unchanged', () => {
    const images = make();
    for (const out of [
      adjustBrightness(images, [1, 1]),
      adjustContrast(images, [1, 1]),
      adjustSaturation(images, [1, 1]),
      adjustHue(images, [0, 0]),
    ]) {
      expect(out.dataSync()).toEqual(images.dataSync());
      out.dispose();
    }
    images.dispose();
  });

  it('hue rotation keeps luma, inverts with the opposite shift, spares grays, and turns the right way', () => {
    // Muted colors, so that no shift leaves the RGB cube and clipping stays out of the way.
    const muted = [
      [0.4, 0.55, 0.6],
      [0.6, 0.4, 0.45],
      [0.4, 0.4, 0.4],
      [0.5, 0.45, 0.55],
    ];
    const images = tf.tensor4d(muted.flat(), [2, 1, 2, 3]);
    const shifted = adjustHue(images, [0.07, -0.05]);
    const back = adjustHue(shifted, [-0.07, 0.05]);
    const s = read(shifted);
    read(back).forEach((px, p) => px.forEach((v, c) => expect(v).toBeCloseTo(muted[p][c], 5)));
    s.forEach((px, p) => expect(lumaOf(px)).toBeCloseTo(lumaOf(muted[p]), 5));
    s[2].forEach((v) => expect(v).toBeCloseTo(0.4, 5)); // a gray pixel has no hue
    expect(Math.max(...s.flat().map((v, i) => Math.abs(v - muted.flat()[i])))).toBeGreaterThan(0.02);
    // Like an HSV hue increase, +1/3 turn moves red toward green and green toward blue.
    const primaries = tf.tensor4d([0.8, 0.2, 0.2, 0.2, 0.8, 0.2], [2, 1, 1, 3]);
    const turned = read(adjustHue(primaries, [1 / 3, 1 / 3]));
    expect(turned[0][1]).toBeGreaterThan(Math.max(turned[0][0], turned[0][2]));
    expect(turned[1][2]).toBeGreaterThan(Math.max(turned[1][0], turned[1][1]));
    // A full turn is the identity.
    hueMatrix(1).forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(i === j ? 1 : 0, 6)));
    tf.dispose([images, shifted, back, primaries]);
  });

  it('applyViewPlan runs the colour operations in the plan order', () => {
    // Without clipping brightness and contrast commute; with it they do not. Gray pixels: luma = value.
    const images = tf.tensor4d([0.8, 0.8, 0.8, 0.2, 0.2, 0.2], [1, 1, 2, 3]);
    const base = sampleViewPlan(1, 1, 2, 3, new Rng(0), resolveAugmentOptions(NO_AUGMENTATION));
    const plan = { ...base, brightness: Float32Array.of(1.5), contrast: Float32Array.of(0.5) };
    const bright = (v: number[]): number[] => v.map((x) => clamp(1.5 * x));
    const contrast = (v: number[]): number[] => {
      const mean = (v[0] + v[1]) / 2;
      return v.map((x) => clamp(0.5 * x + 0.5 * mean));
    };
    const cases = [
      { order: ['brightness', 'contrast'] as const, expected: contrast(bright([0.8, 0.2])) }, // [0.825, 0.475]
      { order: ['contrast', 'brightness'] as const, expected: bright(contrast([0.8, 0.2])) }, // [0.975, 0.525]
    ];
    for (const { order, expected } of cases) {
      const out = applyViewPlan(images, { ...plan, colorOrder: [...order] });
      const v = out.dataSync();
      expect(v[0]).toBeCloseTo(expected[0], 5);
      expect(v[3]).toBeCloseTo(expected[1], 5);
      out.dispose();
    }
    images.dispose();
  });
});

describe('evaluation transform and normalization', () => {
  it('evaluationView is the input (a copy), or the input resized', () => {
    const images = randomImages([2, 8, 8, 3]);
    const same = evaluationView(images);
    expect(same).not.toBe(images);
    expect(same.dataSync()).toEqual(images.dataSync());
    const resized = evaluationView(images, { outputSize: [4, 4] });
    expect(resized.shape).toEqual([2, 4, 4, 3]);
    tf.dispose([images, same, resized]);
  });

  it('normalize subtracts the mean and divides by the std per channel', () => {
    const images = tf.tensor4d([0.5, 0.2, 0.9, 0.1, 0.4, 0.6], [1, 1, 2, 3]);
    const out = normalize(images, { mean: [0.5, 0.25, 0.5], std: [0.5, 0.25, 0.2] });
    const expected = [0, -0.2, 2, -0.8, 0.6, 0.5];
    [...out.dataSync()].forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
    expect(() => normalize(images, { mean: [0.5], std: [0.5] })).toThrow(/array of 3 numbers for normalization.mean/);
    expect(() => normalize(images, { mean: [0, 0, 0], std: [1, 0, 1] })).toThrow(/normalization.std\[1\]/);
    tf.dispose([images, out]);
  });
});

describe('augmentation: translation (padding), erasing and presets', () => {
  /** The view's shift (dy, dx) in pixels and whether it is mirrored, read from a translated plan's box. */
  function shiftOf(box: ArrayLike<number>, height: number, width: number): { dy: number; dx: number; mirrored: boolean } {
    // Normalized box coordinates count in steps of 1 / (size - 1); a translated box may leave [0, 1].
    const mirrored = box[1] > box[3];
    return { dy: Math.round(box[0] * (height - 1)), dx: Math.round(Math.min(box[1], box[3]) * (width - 1)), mirrored };
  }

  it('padding translates by up to `padding` pixels with a black border, exactly (no resampling)', () => {
    const [B, H, W] = [24, 9, 7];
    const images = randomImages([B, H, W, 1], 4);
    const pixels = images.arraySync() as number[][][][];
    const plan = sampleViewPlan(B, H, W, 1, new Rng(2), resolveAugmentOptions(only({ padding: 3, flipProbability: 0.5 })));
    const view = (applyViewPlan(images, plan).arraySync() as number[][][][]);
    const shifts = new Set<string>();
    let mirrors = 0;
    for (let b = 0; b < B; b++) {
      const { dy, dx, mirrored } = shiftOf(plan.boxes.subarray(4 * b, 4 * b + 4), H, W);
      expect(Math.abs(dy)).toBeLessThanOrEqual(3);
      expect(Math.abs(dx)).toBeLessThanOrEqual(3);
      shifts.add(`${dy},${dx}`);
      if (mirrored) mirrors++;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          // View pixel (y, x) reads input pixel (y + dy, x' + dx), x' mirrored when flipped; black outside.
          const sx = (mirrored ? W - 1 - x : x) + dx;
          const sy = y + dy;
          const expected = sy >= 0 && sy < H && sx >= 0 && sx < W ? pixels[b][sy][sx][0] : 0;
          expect(view[b][y][x][0]).toBeCloseTo(expected, 5);
        }
      }
    }
    expect(shifts.size).toBeGreaterThan(10); // 49 possible shifts, 24 draws
    expect(mirrors).toBeGreaterThan(3);
    expect(mirrors).toBeLessThan(21);
    images.dispose();
  });

  it('padding combines with the resized crop: views stay in [0, 1] and repeat under a seed', () => {
    const images = randomImages([6, 28, 28, 1]);
    const options = only({ padding: 4, cropScale: [0.5, 1] });
    const view = augmentView(images, new Rng(1), options);
    const again = augmentView(images, new Rng(1), options);
    expect(view.shape).toEqual([6, 28, 28, 1]);
    expect(Math.min(...view.dataSync())).toBeGreaterThanOrEqual(0);
    expect(Math.max(...view.dataSync())).toBeLessThanOrEqual(1);
    expect(maxAbsDiff(view, again)).toBe(0);
    tf.dispose([images, view, again]);
  });

  it('translated boxes never lose an edge pixel to rounding, for every shift and size', () => {
    for (const size of [7, 28, 29, 32, 100]) {
      for (let shift = -4; shift <= 4; shift++) {
        for (const mirror of [false, true]) {
          const box = translatedCropBox({ top: shift, left: shift, height: size, width: size }, size, size, size, size, mirror);
          for (const [a, b] of [[box[0], box[2]], [box[1], box[3]]]) {
            for (let k = 0; k < size; k++) {
              const ideal = (mirror && a === box[1] ? size - 1 - k : k) + shift;
              const pos = a * (size - 1) + k * (((b - a) * (size - 1)) / (size - 1));
              if (ideal >= 0 && ideal <= size - 1) {
                expect(pos).toBeGreaterThanOrEqual(0);
                expect(pos).toBeLessThanOrEqual(size - 1);
                expect(Math.abs(pos - ideal)).toBeLessThan(1e-4);
              } else {
                expect(pos < 0 || pos > size - 1).toBe(true);
              }
            }
          }
        }
      }
    }
  });

  it('eraseRectangles zeroes exactly the given rectangle of each image', () => {
    const images = tf.ones([3, 6, 5, 3]) as tf.Tensor4D;
    const rects = Int32Array.from([1, 2, 3, 2, 0, 0, 0, 0, 0, 0, 6, 5]);
    const out = eraseRectangles(images, rects).arraySync() as number[][][][];
    for (let b = 0; b < 3; b++) {
      const [top, left, h, w] = rects.subarray(4 * b, 4 * b + 4);
      for (let y = 0; y < 6; y++) for (let x = 0; x < 5; x++) {
        const inside = y >= top && y < top + h && x >= left && x < left + w;
        expect(out[b][y][x]).toEqual(inside ? [0, 0, 0] : [1, 1, 1]);
      }
    }
    expect(() => eraseRectangles(images, new Int32Array(4))).toThrow(/an Int32Array of 12 numbers \(4 per image\) for rects/);
    images.dispose();
  });

  it('erasing draws rectangles of the stated area and ratio with the stated probability; off, it draws nothing', () => {
    const options = resolveAugmentOptions(only({ eraseProbability: 0.5, eraseScale: [0.1, 0.2], eraseRatio: [0.5, 2] }));
    const plan = sampleViewPlan(400, 28, 28, 1, new Rng(9), options);
    let erased = 0;
    for (let b = 0; b < 400; b++) {
      const [top, left, h, w] = plan.erase.subarray(4 * b, 4 * b + 4);
      if (h === 0) continue;
      erased++;
      expect(h * w).toBeGreaterThanOrEqual(Math.floor(0.1 * 784 * 0.8));
      expect(h * w).toBeLessThanOrEqual(Math.ceil(0.2 * 784 * 1.25));
      expect(top + h).toBeLessThanOrEqual(28);
      expect(left + w).toBeLessThanOrEqual(28);
    }
    expect(erased).toBeGreaterThan(160);
    expect(erased).toBeLessThan(240);
    const window = sampleEraseWindow(28, 28, new Rng(1), [0.1, 0.1], [1, 1]);
    expect(window).toMatchObject({ height: 9, width: 9 });
    // Off: the plan draws the same random numbers as before erasing existed (the same boxes as without the option).
    const a = sampleViewPlan(8, 28, 28, 1, new Rng(3), resolveAugmentOptions({}));
    const b = sampleViewPlan(8, 28, 28, 1, new Rng(3), resolveAugmentOptions({ eraseProbability: 0, padding: 0 }));
    expect(Array.from(a.boxes)).toEqual(Array.from(b.boxes));
    expect(a.erase.every((v) => v === 0)).toBe(true);
  });

  it('presets: the paper recipe for RGB or large images, flip for small grayscale ones', () => {
    expect(defaultAugmentPreset({ channels: 1, height: 28, width: 28 })).toBe('flip');
    expect(defaultAugmentPreset({ channels: 3, height: 32, width: 32 })).toBe('paper');
    expect(defaultAugmentPreset({ channels: 1, height: 224, width: 224 })).toBe('paper');
    expect(AUGMENT_PRESETS.paper).toEqual(resolveAugmentOptions({}));
    expect(AUGMENT_PRESETS['crop-flip']).toMatchObject({ padding: 4, flipProbability: 0.5, cropScale: [1, 1], jitterProbability: 0 });
    expect(augmentOptionsFor('auto', { channels: 1, height: 28, width: 28 })).toEqual({ name: 'flip', options: AUGMENT_PRESETS.flip });
    expect(augmentOptionsFor('paper', { channels: 1, height: 28, width: 28 }).name).toBe('paper');
    expect(augmentOptionsFor({ padding: 2 }, { channels: 3, height: 32, width: 32 })).toMatchObject({ name: 'custom', options: { padding: 2, brightness: 0.4 } });
  });

  it('names the argument of a bad setting or option', () => {
    expect(() => checkAugmentSetting('config.augment', 'imagenet')).toThrow(/Expected one of 'auto', 'paper', .* for config\.augment but received 'imagenet'/);
    expect(() => checkAugmentSetting('config.augment', { padding: 1.5 })).toThrow(/for config\.augment\.padding/);
    expect(() => checkAugmentSetting('config.augment', [1])).toThrow(/for config\.augment/);
    expect(() => resolveAugmentOptions({ eraseProbability: 2 })).toThrow(/options\.eraseProbability/);
    expect(() => resolveAugmentOptions({ eraseScale: [0.3, 0.1] })).toThrow(/options\.eraseScale/);
  });
});
