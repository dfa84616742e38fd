/**
 * Common corruptions of images, after Hendrycks & Dietterich, "Benchmarking Neural Network
 * Robustness to Common Corruptions and Perturbations" (ICLR 2019): the ImageNet-C / CIFAR-10-C
 * benchmark. Each corruption has five severities; the parameters are those of the CIFAR-10-C
 * generator (`make_cifar_c.py` in github.com/hendrycks/robustness), the version made for small
 * (32-pixel) images, which fits 28-pixel Fashion-MNIST too. Like the benchmark, corrupted
 * images are stored back as 8-bit images.
 *
 * Computed here on typed arrays, once per (corruption, severity), like the benchmark's offline
 * dataset generation; the random ones draw from a seeded {@link Rng}, so a seed fixes every
 * corrupted pixel. Differences from the reference, on purpose: values are rounded to 8 bits
 * (the reference truncates), pixelation resamples by exact area overlap (PIL's BOX filter is
 * the same when shrinking), and the JPEG corruption quantizes the 8x8 DCT blocks with the IJG
 * tables of the given quality but without chroma subsampling or entropy coding (which is
 * lossless).
 */
import * as validate from '../validate';
import type { ImageDataset } from './datasets';
import { Rng } from './rng';

/** The corruptions {@link corruptImages} applies. */
export const CORRUPTIONS = [
  'gaussian-noise',
  'shot-noise',
  'impulse-noise',
  'speckle-noise',
  'gaussian-blur',
  'pixelate',
  'jpeg',
  'contrast',
  'brightness',
] as const;
export type CorruptionName = (typeof CORRUPTIONS)[number];

/** Severities 1 (mildest) to 5. */
export const SEVERITIES = [1, 2, 3, 4, 5] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * The parameter of each corruption at severities 1-5 (CIFAR-10-C's values):
 * - gaussian-noise: std of the added noise (pixels in [0, 1]);
 * - shot-noise: photons at full brightness, x -> Poisson(x c) / c;
 * - impulse-noise: fraction of values replaced by 0 or 1 (half each), skimage's 's&p';
 * - speckle-noise: std of the multiplicative noise, x -> x + x N(0, c^2);
 * - gaussian-blur: sigma in pixels;
 * - pixelate: side of the coarse image as a fraction of the side (then resampled back);
 * - jpeg: JPEG quality (IJG scale, 1-100);
 * - contrast: factor towards the image's mean, x -> (x - m) c + m;
 * - brightness: added to the HSV value channel.
 */
export const CORRUPTION_PARAMETERS: Readonly<Record<CorruptionName, readonly number[]>> = Object.freeze({
  'gaussian-noise': [0.04, 0.06, 0.08, 0.09, 0.1],
  'shot-noise': [500, 250, 100, 75, 50],
  'impulse-noise': [0.01, 0.02, 0.03, 0.05, 0.07],
  'speckle-noise': [0.06, 0.1, 0.12, 0.16, 0.2],
  'gaussian-blur': [0.4, 0.6, 0.7, 0.8, 1],
  pixelate: [0.95, 0.9, 0.85, 0.75, 0.65],
  jpeg: [80, 65, 58, 50, 40],
  contrast: [0.75, 0.5, 0.4, 0.3, 0.15],
  brightness: [0.05, 0.1, 0.15, 0.2, 0.3],
});

/** Size of a batch of NHWC images. */
export interface ImagesShape {
  count: number;
  height: number;
  width: number;
  channels: number;
}

const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

// ---------------------------------------------------------------------------------------------
// Random numbers beyond the uniform and normal ones of Rng.

/** log(k!) for the Poisson sampler: exact sums for small k, Stirling's series above. */
function logFactorial(k: number): number {
  if (k < 20) {
    let s = 0;
    for (let i = 2; i <= k; i++) s += Math.log(i);
    return s;
  }
  const x = k + 1;
  return (x - 0.5) * Math.log(x) - x + 0.5 * Math.log(2 * Math.PI) + 1 / (12 * x) - 1 / (360 * x ** 3) + 1 / (1260 * x ** 5);
}

/**
 * A Poisson(lambda) sample: Knuth's product of uniforms for lambda < 10, Hörmann's PTRS
 * transformed rejection ("The transformed rejection method for generating Poisson random
 * variables", 1993; the method numpy uses) above.
 */
export function poissonSample(rng: Rng, lambda: number): number {
  if (lambda <= 0) return 0;
  if (lambda < 10) {
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = rng.next();
    while (p > limit) {
      k++;
      p *= rng.next();
    }
    return k;
  }
  const slam = Math.sqrt(lambda);
  const loglam = Math.log(lambda);
  const b = 0.931 + 2.53 * slam;
  const a = -0.059 + 0.02483 * b;
  const invAlpha = 1.1239 + 1.1328 / (b - 3.4);
  const vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const u = rng.next() - 0.5;
    const v = rng.next();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + lambda + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (Math.log(v) + Math.log(invAlpha) - Math.log(a / (us * us) + b) <= -lambda + k * loglam - logFactorial(k)) return k;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-image operations on float planes. An image is `height * width * channels` floats, NHWC.

/** Separable Gaussian blur, kernel truncated at 4 sigma, edges extended (skimage's 'nearest'). */
function gaussianBlur(image: Float32Array, h: number, w: number, c: number, sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(4 * sigma));
  const kernel = Float64Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((s, v) => s + v, 0);
  for (let i = 0; i < kernel.length; i++) kernel[i] /= total;
  const pass = (src: Float32Array, alongRows: boolean): Float32Array => {
    const out = new Float32Array(src.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let ch = 0; ch < c; ch++) {
          let s = 0;
          for (let t = -radius; t <= radius; t++) {
            const yy = alongRows ? y : Math.min(h - 1, Math.max(0, y + t));
            const xx = alongRows ? Math.min(w - 1, Math.max(0, x + t)) : x;
            s += kernel[t + radius] * src[(yy * w + xx) * c + ch];
          }
          out[(y * w + x) * c + ch] = s;
        }
      }
    }
    return out;
  };
  return pass(pass(image, true), false);
}

/**
 * Resamples an image to `outH x outW` by exact area overlap: each output pixel is the mean of
 * the input area it covers (PIL's BOX filter when shrinking).
 */
function areaResample(image: Float32Array, h: number, w: number, c: number, outH: number, outW: number): Float32Array {
  const weights = (inSize: number, outSize: number): Array<Array<[number, number]>> =>
    Array.from({ length: outSize }, (_, o) => {
      const lo = (o * inSize) / outSize;
      const hi = ((o + 1) * inSize) / outSize;
      const taps: Array<[number, number]> = [];
      for (let i = Math.floor(lo); i < Math.ceil(hi) && i < inSize; i++) {
        const overlap = Math.min(hi, i + 1) - Math.max(lo, i);
        if (overlap > 1e-12) taps.push([i, overlap / (hi - lo)]);
      }
      return taps;
    });
  const rows = weights(h, outH);
  const cols = weights(w, outW);
  const out = new Float32Array(outH * outW * c);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        for (const [iy, wy] of rows[y]) for (const [ix, wx] of cols[x]) s += wy * wx * image[(iy * w + ix) * c + ch];
        out[(y * outW + x) * c + ch] = s;
      }
    }
  }
  return out;
}

/** The JPEG standard's quantization tables (ITU T.81, Annex K, tables K.1 and K.2), row-major. */
const JPEG_LUMA_TABLE = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18,
  22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const JPEG_CHROMA_TABLE = [
  17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
  ...new Array<number>(32).fill(99),
];

/** A standard table scaled to `quality` as libjpeg (IJG) does, entries clamped to [1, 255]. */
export function jpegQuantizationTable(quality: number, chroma = false): Int32Array {
  validate.integer('quality', quality, 1, 100);
  const scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
  const base = chroma ? JPEG_CHROMA_TABLE : JPEG_LUMA_TABLE;
  return Int32Array.from(base, (q) => Math.min(255, Math.max(1, Math.floor((q * scale + 50) / 100))));
}

/** The orthonormal 8-point DCT-II matrix: row u, column x. */
const DCT8 = Array.from({ length: 8 }, (_, u) =>
  Float64Array.from({ length: 8 }, (_, x) => (u === 0 ? Math.sqrt(1 / 8) : Math.sqrt(2 / 8)) * Math.cos(((2 * x + 1) * u * Math.PI) / 16)),
);

/**
 * One plane (values 0-255) through JPEG's lossy step: level shift, 8x8 DCT, quantization with
 * `table`, and back. Partial edge blocks are filled by repeating the last row and column, as
 * libjpeg does.
 */
function jpegPlane(plane: Float64Array, h: number, w: number, table: Int32Array): Float64Array {
  const out = new Float64Array(h * w);
  const block = new Float64Array(64);
  const tmp = new Float64Array(64);
  for (let by = 0; by < h; by += 8) {
    for (let bx = 0; bx < w; bx += 8) {
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) block[y * 8 + x] = plane[Math.min(h - 1, by + y) * w + Math.min(w - 1, bx + x)] - 128;
      }
      // Forward: F = D B D^T, then quantize.
      for (let u = 0; u < 8; u++) for (let x = 0; x < 8; x++) {
        let s = 0;
        for (let y = 0; y < 8; y++) s += DCT8[u][y] * block[y * 8 + x];
        tmp[u * 8 + x] = s;
      }
      for (let u = 0; u < 8; u++) for (let v = 0; v < 8; v++) {
        let s = 0;
        for (let x = 0; x < 8; x++) s += tmp[u * 8 + x] * DCT8[v][x];
        const q = table[u * 8 + v];
        block[u * 8 + v] = Math.round(s / q) * q;
      }
      // Inverse: B = D^T F D.
      for (let y = 0; y < 8; y++) for (let v = 0; v < 8; v++) {
        let s = 0;
        for (let u = 0; u < 8; u++) s += DCT8[u][y] * block[u * 8 + v];
        tmp[y * 8 + v] = s;
      }
      for (let y = 0; y < 8 && by + y < h; y++) for (let x = 0; x < 8 && bx + x < w; x++) {
        let s = 0;
        for (let v = 0; v < 8; v++) s += tmp[y * 8 + v] * DCT8[v][x];
        out[(by + y) * w + bx + x] = s + 128;
      }
    }
  }
  return out;
}

/** JPEG's lossy step on an image in [0, 1]: one luma plane, or YCbCr (JFIF) planes for RGB. */
function jpegImage(image: Float32Array, h: number, w: number, c: number, quality: number): Float32Array {
  const n = h * w;
  const out = new Float32Array(image.length);
  const luma = jpegQuantizationTable(quality);
  if (c !== 3) {
    for (let ch = 0; ch < c; ch++) {
      const plane = Float64Array.from({ length: n }, (_, i) => 255 * image[i * c + ch]);
      const back = jpegPlane(plane, h, w, luma);
      for (let i = 0; i < n; i++) out[i * c + ch] = back[i] / 255;
    }
    return out;
  }
  const chroma = jpegQuantizationTable(quality, true);
  const Y = new Float64Array(n);
  const Cb = new Float64Array(n);
  const Cr = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const r = 255 * image[3 * i];
    const g = 255 * image[3 * i + 1];
    const b = 255 * image[3 * i + 2];
    Y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
    Cb[i] = -0.168736 * r - 0.331264 * g + 0.5 * b + 128;
    Cr[i] = 0.5 * r - 0.418688 * g - 0.081312 * b + 128;
  }
  const y2 = jpegPlane(Y, h, w, luma);
  const cb2 = jpegPlane(Cb, h, w, chroma);
  const cr2 = jpegPlane(Cr, h, w, chroma);
  for (let i = 0; i < n; i++) {
    out[3 * i] = (y2[i] + 1.402 * (cr2[i] - 128)) / 255;
    out[3 * i + 1] = (y2[i] - 0.344136 * (cb2[i] - 128) - 0.714136 * (cr2[i] - 128)) / 255;
    out[3 * i + 2] = (y2[i] + 1.772 * (cb2[i] - 128)) / 255;
  }
  return out;
}

/** Adds `delta` to the HSV value (the max channel), keeping hue and saturation, then clips. */
function brighten(image: Float32Array, c: number, delta: number): void {
  for (let p = 0; p < image.length; p += c) {
    let value = 0;
    for (let ch = 0; ch < c; ch++) value = Math.max(value, image[p + ch]);
    const target = clamp01(value + delta);
    // With hue and saturation fixed every channel is proportional to the value; black has no hue and turns gray.
    for (let ch = 0; ch < c; ch++) image[p + ch] = value > 0 ? (image[p + ch] * target) / value : target;
  }
}

/** One image (floats in [0, 1], modified or replaced) under a corruption. */
function corruptImage(image: Float32Array, h: number, w: number, c: number, name: CorruptionName, p: number, rng: Rng): Float32Array {
  switch (name) {
    case 'gaussian-noise':
      for (let i = 0; i < image.length; i++) image[i] = image[i] + p * rng.normal();
      return image;
    case 'shot-noise':
      for (let i = 0; i < image.length; i++) image[i] = poissonSample(rng, image[i] * p) / p;
      return image;
    case 'impulse-noise':
      for (let i = 0; i < image.length; i++) if (rng.next() < p) image[i] = rng.next() < 0.5 ? 0 : 1;
      return image;
    case 'speckle-noise':
      for (let i = 0; i < image.length; i++) image[i] = image[i] + image[i] * p * rng.normal();
      return image;
    case 'gaussian-blur':
      return gaussianBlur(image, h, w, c, p);
    case 'pixelate': {
      const small = areaResample(image, h, w, c, Math.max(1, Math.floor(h * p)), Math.max(1, Math.floor(w * p)));
      return areaResample(small, Math.max(1, Math.floor(h * p)), Math.max(1, Math.floor(w * p)), c, h, w);
    }
    case 'jpeg':
      return jpegImage(image, h, w, c, p);
    case 'contrast':
      for (let ch = 0; ch < c; ch++) {
        let mean = 0;
        for (let i = ch; i < image.length; i += c) mean += image[i];
        mean /= h * w;
        for (let i = ch; i < image.length; i += c) image[i] = (image[i] - mean) * p + mean;
      }
      return image;
    case 'brightness':
      brighten(image, c, p);
      return image;
  }
}

/**
 * A corrupted copy of NHWC uint8 images.
 * @param images `count * height * width * channels` bytes.
 * @param rng Source of the noise of the random corruptions (the others draw nothing).
 * @returns New uint8 images of the same shape (values rounded and clipped to 0-255).
 * @throws InvalidArgumentError for an unknown corruption, a severity outside 1-5, or a size mismatch.
 */
export function corruptImages(images: Uint8Array, shape: ImagesShape, corruption: CorruptionName, severity: number, rng: Rng): Uint8Array {
  const name = validate.oneOf('corruption', corruption, CORRUPTIONS);
  const level = validate.integer('severity', severity, 1, 5);
  const count = validate.integer('shape.count', shape.count, 0);
  const h = validate.integer('shape.height', shape.height, 1);
  const w = validate.integer('shape.width', shape.width, 1);
  const c = validate.integer('shape.channels', shape.channels, 1);
  validate.typedArray('images', images, Uint8Array, count * h * w * c);
  if (!(rng instanceof Rng)) validate.fail('rng', 'an Rng', rng);
  const p = CORRUPTION_PARAMETERS[name][level - 1];
  const size = h * w * c;
  const out = new Uint8Array(images.length);
  for (let b = 0; b < count; b++) {
    const image = Float32Array.from(images.subarray(b * size, (b + 1) * size), (v) => v / 255);
    const result = corruptImage(image, h, w, c, name, p, rng);
    for (let i = 0; i < size; i++) out[b * size + i] = Math.round(255 * clamp01(result[i]));
  }
  return out;
}

/**
 * The dataset with every image corrupted at `severity`. The noise depends only on
 * (seed, corruption, severity): `new Rng([seed, corruption index, severity])`.
 */
export function corruptDataset(dataset: ImageDataset, corruption: CorruptionName, severity: number, seed = 0): ImageDataset {
  const name = validate.oneOf('corruption', corruption, CORRUPTIONS);
  validate.integer('seed', seed, 0, 2 ** 32 - 1);
  const rng = new Rng([seed, CORRUPTIONS.indexOf(name), validate.integer('severity', severity, 1, 5)]);
  return { ...dataset, images: corruptImages(dataset.images, dataset, name, severity, rng) };
}
