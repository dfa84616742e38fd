/**
 * Two-view augmentation as in the SupCon paper (Khosla et al., 2020, following SimCLR):
 * random resized crop (scale 0.2-1, aspect 3/4-4/3) -> horizontal flip (p 0.5) ->
 * color jitter (brightness, contrast, saturation 0.4, hue 0.1; p 0.8) -> random grayscale (p 0.2).
 * Grayscale datasets get the crop, the flip, and brightness/contrast jitter.
 *
 * Two more operations, off in the paper's recipe, serve small images, where a crop down to 20%
 * of a 28-pixel image keeps too little of it: `padding` (a random translation with zero fill,
 * torchvision's `RandomCrop(size, padding)`) and random erasing (Zhong et al., "Random Erasing
 * Data Augmentation", AAAI 2020; torchvision's `RandomErasing`, here filling with 0).
 * {@link AUGMENT_PRESETS} names whole recipes and {@link defaultAugmentPreset} picks one by the
 * kind of images (the paper's for natural RGB images, a measured one for small grayscale ones).
 *
 * Work is split in two: {@link sampleViewPlan} draws every random number (a few per sample, in
 * JavaScript, from a seeded {@link Rng}); {@link applyViewPlan} runs batched tfjs ops only
 * (one `cropAndResize` with per-sample boxes, then each color operation as one per-sample
 * affine color map applied with a batched matMul). No JavaScript loop touches pixels.
 *
 * Differences from torchvision, on purpose: the order of the jitter operations is drawn once
 * per batch (torchvision draws it per image), hue is rotated in YIQ space rather than shifted in
 * HSV (a linear map, so it batches as a matrix product), and resizing is plain bilinear (no
 * antialiasing).
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import type { Normalization } from './datasets';
import type { Rng } from './rng';

/** Options of the augmentation. Every field is optional; the defaults are the SupCon recipe. */
export interface AugmentOptions {
  /** `[height, width]` of the views (default: the input's size). */
  outputSize?: [number, number];
  /** Range of the crop's area as a fraction of the image (default [0.2, 1]; [1, 1]: no crop). */
  cropScale?: [number, number];
  /** Range of the crop's aspect ratio width/height, sampled log-uniformly (default [3/4, 4/3]). */
  cropRatio?: [number, number];
  /** Probability of a horizontal flip (default 0.5). */
  flipProbability?: number;
  /** Probability that an image gets color jitter at all (default 0.8). */
  jitterProbability?: number;
  /** Brightness factor drawn from [max(0, 1 - b), 1 + b] (default 0.4; 0 turns it off). */
  brightness?: number;
  /** Contrast factor drawn from [max(0, 1 - c), 1 + c] (default 0.4; 0 turns it off). */
  contrast?: number;
  /** RGB only: saturation factor drawn from [max(0, 1 - s), 1 + s] (default 0.4; 0 turns it off). */
  saturation?: number;
  /** RGB only: hue shift in turns drawn from [-h, h], h <= 0.5 (default 0.1; 0 turns it off). */
  hue?: number;
  /** RGB only: probability of converting to grayscale, after jitter (default 0.2). */
  grayscaleProbability?: number;
  /**
   * Pixels of zero padding on every side before a random crop back to the size of the crop
   * stage's output: a random translation by up to `padding` pixels in each axis, the uncovered
   * border black (torchvision's `RandomCrop(size, padding=padding)`). Integer >= 0 (default 0).
   * Combined with a resized crop, the crop's window is shifted; samples that fall outside the
   * image are black (no interpolation into the border).
   */
  padding?: number;
  /** Probability of erasing one random rectangle of a view to 0, after the color operations (default 0). */
  eraseProbability?: number;
  /** Range of the erased rectangle's area as a fraction of the view (default [0.02, 0.33], torchvision's). */
  eraseScale?: [number, number];
  /** Range of the erased rectangle's aspect ratio height/width, log-uniform (default [0.3, 3.3], torchvision's). */
  eraseRatio?: [number, number];
}

/** {@link AugmentOptions} with every default filled in. */
export type ResolvedAugmentOptions = Readonly<Required<Omit<AugmentOptions, 'outputSize'>>> & {
  readonly outputSize?: [number, number];
};

/** The SupCon paper's augmentation (its CIFAR recipe). */
export const SUPCON_AUGMENTATION: ResolvedAugmentOptions = Object.freeze({
  cropScale: [0.2, 1] as [number, number],
  cropRatio: [3 / 4, 4 / 3] as [number, number],
  flipProbability: 0.5,
  jitterProbability: 0.8,
  brightness: 0.4,
  contrast: 0.4,
  saturation: 0.4,
  hue: 0.1,
  grayscaleProbability: 0.2,
  padding: 0,
  eraseProbability: 0,
  eraseScale: [0.02, 0.33] as [number, number],
  eraseRatio: [0.3, 3.3] as [number, number],
});

/** Options with everything off: views are the input, resized to `outputSize` if given. */
export const NO_AUGMENTATION: ResolvedAugmentOptions = Object.freeze({
  cropScale: [1, 1] as [number, number],
  cropRatio: [3 / 4, 4 / 3] as [number, number],
  flipProbability: 0,
  jitterProbability: 0,
  brightness: 0,
  contrast: 0,
  saturation: 0,
  hue: 0,
  grayscaleProbability: 0,
  padding: 0,
  eraseProbability: 0,
  eraseScale: [0.02, 0.33] as [number, number],
  eraseRatio: [0.3, 3.3] as [number, number],
});

/**
 * Named augmentation recipes, selectable with `--augment` (`TrainConfig.augment`):
 * - `paper`: the SupCon paper's recipe ({@link SUPCON_AUGMENTATION}), for natural RGB images.
 * - `crop-flip`: random translation by up to 4 pixels (zero padding 4, then a crop back to the
 *   input size) and a horizontal flip, the usual CIFAR / Fashion-MNIST training augmentation.
 * - `flip`: a horizontal flip (p 0.5) only: the best measured for 28-pixel grayscale images at
 *   the main job's budgets (`bench/results/sweep-epochs-augment.json`: at 20 epochs flip 89.1%,
 *   pad 2 + flip 88.4%, pad 4 + flip 87.8%; at 30 epochs flip and pad 4 + flip tie at 89.25%).
 * - `none`: the images as they are ({@link NO_AUGMENTATION}).
 */
export const AUGMENT_PRESETS = Object.freeze({
  paper: SUPCON_AUGMENTATION,
  'crop-flip': Object.freeze({ ...NO_AUGMENTATION, padding: 4, flipProbability: 0.5 }) as ResolvedAugmentOptions,
  flip: Object.freeze({ ...NO_AUGMENTATION, flipProbability: 0.5 }) as ResolvedAugmentOptions,
  none: NO_AUGMENTATION,
});

/** Names of {@link AUGMENT_PRESETS}. */
export const AUGMENT_PRESET_NAMES = Object.keys(AUGMENT_PRESETS) as Array<keyof typeof AUGMENT_PRESETS>;
export type AugmentPresetName = keyof typeof AUGMENT_PRESETS;

/** The largest side (pixels) of the images {@link defaultAugmentPreset} treats as small. */
export const SMALL_IMAGE_SIZE = 64;

/**
 * The preset for a kind of images: `flip` for small grayscale images (one channel, sides up to
 * {@link SMALL_IMAGE_SIZE} pixels: MNIST, Fashion-MNIST), where the paper's crop down to 20% of
 * the area and its color jitter remove much of what tells the classes apart
 * (`bench/results/sweep-augment.json`: 81.4% with the paper's recipe vs 84.7% with a flip at 5
 * epochs; `sweep-epochs-augment.json` picks the flip over padding at 20-30 epochs), and `paper`
 * for everything else.
 * @param images `{ channels, height, width }` of the images, e.g. a dataset.
 */
export function defaultAugmentPreset(images: { channels: number; height: number; width: number }): AugmentPresetName {
  validate.integer('images.channels', images.channels, 1);
  validate.integer('images.height', images.height, 1);
  validate.integer('images.width', images.width, 1);
  const small = Math.max(images.height, images.width) <= SMALL_IMAGE_SIZE;
  return images.channels === 1 && small ? 'flip' : 'paper';
}

/**
 * How a run augments: `'auto'` ({@link defaultAugmentPreset} of its images), a preset name, or
 * explicit options (missing fields take the paper's values, as in {@link resolveAugmentOptions}).
 */
export type AugmentSetting = 'auto' | AugmentPresetName | AugmentOptions;

/**
 * Validates an {@link AugmentSetting}: a name must be `'auto'` or a preset; options are checked
 * and completed by {@link resolveAugmentOptions}.
 * @throws InvalidArgumentError naming `argument` (e.g. `config.augment`).
 */
export function checkAugmentSetting(argument: string, setting: unknown): AugmentSetting {
  if (typeof setting === 'string') return validate.oneOf(argument, setting, ['auto', ...AUGMENT_PRESET_NAMES] as const);
  if (setting === null || typeof setting !== 'object' || Array.isArray(setting)) {
    validate.fail(argument, `'auto', a preset name (${AUGMENT_PRESET_NAMES.join(', ')}) or an options object`, setting);
  }
  try {
    return resolveAugmentOptions(setting as AugmentOptions);
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw new InvalidArgumentError(e.argument.replace(/^options/, argument), e.expected, e.received);
    throw e;
  }
}

/**
 * The options a setting stands for with images of the given kind, and a name for it
 * (the preset's, or `'custom'` for explicit options).
 */
export function augmentOptionsFor(
  setting: AugmentSetting,
  images: { channels: number; height: number; width: number },
): { name: AugmentPresetName | 'custom'; options: ResolvedAugmentOptions } {
  const checked = checkAugmentSetting('augment', setting);
  if (typeof checked !== 'string') return { name: 'custom', options: resolveAugmentOptions(checked) };
  const name = checked === 'auto' ? defaultAugmentPreset(images) : checked;
  return { name, options: AUGMENT_PRESETS[name] };
}

const OPTION_NAMES = [
  'outputSize',
  'cropScale',
  'cropRatio',
  'flipProbability',
  'jitterProbability',
  'brightness',
  'contrast',
  'saturation',
  'hue',
  'grayscaleProbability',
  'padding',
  'eraseProbability',
  'eraseScale',
  'eraseRatio',
] as const;

/** Validates options and fills in the defaults of {@link SUPCON_AUGMENTATION}. */
export function resolveAugmentOptions(options: AugmentOptions = {}): ResolvedAugmentOptions {
  const o = validate.options('options', options, OPTION_NAMES);
  const d = SUPCON_AUGMENTATION;
  const probability = (key: 'flipProbability' | 'jitterProbability' | 'grayscaleProbability' | 'eraseProbability'): number =>
    o[key] === undefined ? d[key] : validate.number(`options.${key}`, o[key], { ge: 0, le: 1 });
  const strength = (key: 'brightness' | 'contrast' | 'saturation', max = Infinity): number =>
    o[key] === undefined ? d[key] : validate.number(`options.${key}`, o[key], { ge: 0, le: max });
  let outputSize: [number, number] | undefined;
  if (o.outputSize !== undefined) outputSize = validate.shape('options.outputSize', o.outputSize, [2]) as [number, number];
  return {
    ...(outputSize ? { outputSize: [outputSize[0], outputSize[1]] as [number, number] } : {}),
    cropScale: o.cropScale === undefined ? d.cropScale : validate.interval('options.cropScale', o.cropScale, { gt: 0, le: 1 }),
    cropRatio: o.cropRatio === undefined ? d.cropRatio : validate.interval('options.cropRatio', o.cropRatio, { gt: 0 }),
    flipProbability: probability('flipProbability'),
    jitterProbability: probability('jitterProbability'),
    brightness: strength('brightness'),
    contrast: strength('contrast'),
    saturation: strength('saturation'),
    hue: o.hue === undefined ? d.hue : validate.number('options.hue', o.hue, { ge: 0, le: 0.5 }),
    grayscaleProbability: probability('grayscaleProbability'),
    padding: o.padding === undefined ? d.padding : validate.integer('options.padding', o.padding, 0, 1024),
    eraseProbability: probability('eraseProbability'),
    eraseScale: o.eraseScale === undefined ? d.eraseScale : validate.interval('options.eraseScale', o.eraseScale, { gt: 0, le: 1 }),
    eraseRatio: o.eraseRatio === undefined ? d.eraseRatio : validate.interval('options.eraseRatio', o.eraseRatio, { gt: 0 }),
  };
}

// ---------------------------------------------------------------------------------------------
// Random resized crop: torchvision's sampling of the window, then a box for tf.image.cropAndResize.

/** A crop window in pixels. */
export interface CropWindow {
  readonly top: number;
  readonly left: number;
  readonly height: number;
  readonly width: number;
}

/**
 * Draws a crop window as torchvision's RandomResizedCrop does: area fraction uniform in `scale`,
 * aspect ratio log-uniform in `ratio`, up to 10 tries to fit, else a center crop of the
 * closest allowed aspect ratio. A scale of exactly [1, 1] takes the whole image (torchvision may
 * still return a window a pixel narrower on wide images) and draws no random numbers.
 */
export function sampleCropWindow(
  height: number,
  width: number,
  rng: Rng,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): CropWindow {
  // A fixed full area leaves no room for another aspect ratio: the window is the whole image.
  if (scale[0] >= 1) return { top: 0, left: 0, height, width };
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(targetArea * aspect));
    const h = Math.round(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(width / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(height * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/**
 * cropAndResize writes `extrapolationValue` for any sample position outside [0, size - 1], and
 * rounding can push the last sample a hair past the edge (about 1 box in 250 for 28 -> 29 pixels).
 * Pulls `end` toward `start` by a growing relative step (2^-22 of the span, then doubling)
 * until the last position is inside under both float32 and float64 evaluation of the kernel's
 * formula `start * (size - 1) + k * (end - start) * (size - 1) / (out - 1)`. Spans that fit are
 * returned unchanged, so full-image boxes stay exact.
 */
function fitSpan(start: number, end: number, size: number, out: number): [number, number] {
  const s = Math.fround(start);
  const e = Math.fround(end);
  if (out < 2 || size < 2) return [s, e];
  const f = Math.fround;
  const k = out - 1;
  const inside = (e2: number): boolean => {
    const pos64 = s * (size - 1) + k * (((e2 - s) * (size - 1)) / k);
    const pos32 = f(f(s * (size - 1)) + f(k * f(f(f(e2 - s) * (size - 1)) / k)));
    return pos64 >= 0 && pos64 <= size - 1 && pos32 >= 0 && pos32 <= size - 1;
  };
  if (inside(e)) return [s, e];
  for (let shrink = 2 ** -22; shrink <= 2 ** -8; shrink *= 2) {
    const candidate = f(e - (e - s) * shrink);
    if (inside(candidate)) return [s, candidate];
  }
  throw new Error(`supcon-native: cannot fit crop span [${start}, ${end}] into ${size} pixels`);
}

/**
 * The normalized `[y1, x1, y2, x2]` box that makes tf.image.cropAndResize resample `window`
 * to `outHeight x outWidth` with half-pixel centers (output pixel k reads source position
 * `top + (k + 0.5) * height / outHeight - 0.5`). `mirror` swaps x1 and x2: a horizontal flip.
 * The full window at the same size maps every output pixel exactly onto an input pixel.
 */
export function cropBox(
  window: CropWindow,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
  mirror: boolean,
): [number, number, number, number] {
  return windowBox(window, height, width, outHeight, outWidth, mirror, true, fitSpan);
}

/**
 * The box of a window in cropAndResize's normalized coordinates (half-pixel centers), its x
 * ends swapped when `mirror`; with `clampToImage` the sample positions are first clamped to the
 * image. `fit` then adjusts each span (see {@link fitSpan} and {@link fitInsideSpan}).
 */
function windowBox(
  window: CropWindow,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
  mirror: boolean,
  clampToImage: boolean,
  fit: (a: number, b: number, size: number, out: number) => [number, number],
): [number, number, number, number] {
  const span = (offset: number, length: number, size: number, out: number): [number, number] => {
    const clamp = (v: number): number => (clampToImage ? Math.min(Math.max(v, 0), size - 1) : v);
    const norm = size > 1 ? size - 1 : 1;
    return [clamp(offset + (0.5 * length) / out - 0.5) / norm, clamp(offset + length - (0.5 * length) / out - 0.5) / norm];
  };
  const [y1, y2] = fit(...span(window.top, window.height, height, outHeight), height, outHeight);
  let [x1, x2] = span(window.left, window.width, width, outWidth);
  if (mirror) [x1, x2] = [x2, x1];
  [x1, x2] = fit(x1, x2, width, outWidth);
  return [y1, x1, y2, x2];
}

/**
 * Makes every sample position that belongs inside the image (ideal position in [0, size - 1])
 * evaluate inside under cropAndResize's formula, in float32 box values and float64 as well as
 * float32 arithmetic, so that rounding never turns an edge pixel into extrapolated black. The
 * span is shrunk about the image's center by a growing relative step (2^-22, then doubling)
 * until it holds; positions move by at most about 1e-5 pixels. Positions that belong outside
 * stay outside (they are a whole pixel or more away).
 */
function fitInsideSpan(a: number, b: number, size: number, out: number): [number, number] {
  const f = Math.fround;
  if (out < 2 || size < 2) return [f(a), f(b)];
  const last = size - 1;
  const ideal = (k: number) => a * last + (k * (b - a) * last) / (out - 1);
  const inside = (a2: number, b2: number): boolean => {
    for (let k = 0; k < out; k++) {
      const want = ideal(k);
      if (want < -1e-6 || want > last + 1e-6) continue;
      const pos64 = a2 * last + k * (((b2 - a2) * last) / (out - 1));
      const pos32 = f(f(a2 * last) + f(k * f(f(f(b2 - a2) * last) / (out - 1))));
      if (pos64 < 0 || pos64 > last || pos32 < 0 || pos32 > last) return false;
    }
    return true;
  };
  if (inside(f(a), f(b))) return [f(a), f(b)];
  for (let shrink = 2 ** -22; shrink <= 2 ** -8; shrink *= 2) {
    const a2 = f(0.5 + (a - 0.5) * (1 - shrink));
    const b2 = f(0.5 + (b - 0.5) * (1 - shrink));
    if (inside(a2, b2)) return [a2, b2];
  }
  throw new Error(`supcon-native: cannot fit crop span [${a}, ${b}] into ${size} pixels`);
}

/**
 * The box of a window that may reach outside the image (a translated view): like
 * {@link cropBox} but unclamped, so tf.image.cropAndResize fills what lies outside with 0 (the
 * default extrapolation value). A window of the output's size at an integer offset maps every
 * output pixel exactly onto an input pixel or the black border: torchvision's zero-padded
 * `RandomCrop`, without building the padded image.
 */
export function translatedCropBox(
  window: CropWindow,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
  mirror: boolean,
): [number, number, number, number] {
  return windowBox(window, height, width, outHeight, outWidth, mirror, false, fitInsideSpan);
}

// ---------------------------------------------------------------------------------------------
// The plan: every random choice of one view of a batch.

/** A color operation of the jitter. */
export type ColorOp = 'brightness' | 'contrast' | 'saturation' | 'hue';

/** Every random choice for one view of a batch; {@link applyViewPlan} turns it into pixels. */
export interface ViewPlan {
  /**
   * `[y1, x1, y2, x2]` per sample for tf.image.cropAndResize; x1 > x2 is a mirrored crop. Values
   * outside [0, 1] (translated views) sample the black border.
   */
  readonly boxes: Float32Array;
  /** `[height, width]` of the view. */
  readonly outputSize: readonly [number, number];
  /** Color operations in the order they run; operations that change no sample are left out. */
  readonly colorOrder: readonly ColorOp[];
  /** Per-sample factors; 1 leaves a sample unchanged. */
  readonly brightness: Float32Array;
  readonly contrast: Float32Array;
  readonly saturation: Float32Array;
  /** Per-sample hue shift in turns; 0 leaves a sample unchanged. */
  readonly hue: Float32Array;
  /** Per-sample: 1 converts to grayscale (RGB only). */
  readonly grayscale: Uint8Array;
  /**
   * Per-sample `[top, left, height, width]` in view pixels of the rectangle erased to 0;
   * height 0 erases nothing.
   */
  readonly erase: Int32Array;
}

/**
 * Draws the rectangle random erasing removes from a `height x width` view, as torchvision's
 * `RandomErasing` does: area fraction uniform in `scale`, aspect ratio (height/width)
 * log-uniform in `ratio`, up to 10 tries to fit strictly inside; `undefined` when none fits.
 */
export function sampleEraseWindow(
  height: number,
  width: number,
  rng: Rng,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): CropWindow | undefined {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const h = Math.round(Math.sqrt(targetArea * aspect));
    const w = Math.round(Math.sqrt(targetArea / aspect));
    if (h > 0 && w > 0 && h < height && w < width) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  return undefined;
}

/** Draws the plan of one view for a batch of `count` images of the given size. */
export function sampleViewPlan(
  count: number,
  height: number,
  width: number,
  channels: 1 | 3,
  rng: Rng,
  options: ResolvedAugmentOptions,
): ViewPlan {
  const [outHeight, outWidth] = options.outputSize ?? [height, width];
  const rgb = channels === 3;
  const boxes = new Float32Array(count * 4);
  const factors = {
    brightness: new Float32Array(count).fill(1),
    contrast: new Float32Array(count).fill(1),
    saturation: new Float32Array(count).fill(1),
    hue: new Float32Array(count),
  };
  const grayscale = new Uint8Array(count);
  const strengths: Record<ColorOp, number> = {
    brightness: options.brightness,
    contrast: options.contrast,
    saturation: rgb ? options.saturation : 0,
    hue: rgb ? options.hue : 0,
  };
  const factorIn = (s: number): number => rng.uniform(Math.max(0, 1 - s), 1 + s);
  const pad = options.padding;
  const erase = new Int32Array(count * 4);
  let jittered = 0;
  for (let b = 0; b < count; b++) {
    let window = sampleCropWindow(height, width, rng, options.cropScale, options.cropRatio);
    if (pad > 0) {
      // A shift in [-pad, pad]: the window may now reach into the (virtual) black border.
      const dy = rng.int(2 * pad + 1) - pad;
      const dx = rng.int(2 * pad + 1) - pad;
      window = { ...window, top: window.top + dy, left: window.left + dx };
    }
    const mirror = rng.next() < options.flipProbability;
    const box = pad > 0 ? translatedCropBox(window, height, width, outHeight, outWidth, mirror) : cropBox(window, height, width, outHeight, outWidth, mirror);
    boxes.set(box, 4 * b);
    if (rng.next() < options.jitterProbability) {
      jittered++;
      if (strengths.brightness > 0) factors.brightness[b] = factorIn(strengths.brightness);
      if (strengths.contrast > 0) factors.contrast[b] = factorIn(strengths.contrast);
      if (strengths.saturation > 0) factors.saturation[b] = factorIn(strengths.saturation);
      if (strengths.hue > 0) factors.hue[b] = rng.uniform(-strengths.hue, strengths.hue);
    }
    if (rgb && rng.next() < options.grayscaleProbability) grayscale[b] = 1;
    if (options.eraseProbability > 0 && rng.next() < options.eraseProbability) {
      const hole = sampleEraseWindow(outHeight, outWidth, rng, options.eraseScale, options.eraseRatio);
      if (hole) erase.set([hole.top, hole.left, hole.height, hole.width], 4 * b);
    }
  }
  const active = (['brightness', 'contrast', 'saturation', 'hue'] as const).filter((op) => strengths[op] > 0 && jittered > 0);
  return {
    boxes,
    outputSize: [outHeight, outWidth],
    colorOrder: rng.shuffle([...active]),
    ...factors,
    grayscale,
    erase,
  };
}

// ---------------------------------------------------------------------------------------------
// Tensor operations. Each takes per-sample parameters and clips to [0, 1] as torchvision does.
// All of them are per-image affine maps of the color vector, so they share one primitive,
// {@link applyColorMaps}, built on batched matMul: on tfjs's cpu backend a broadcast multiply
// by a [B, 1, 1, 1] tensor costs about five times a [B, HW, 3] x [B, 3, 3] matMul.

/** ITU-R BT.601 luma weights, the ones torchvision's rgb_to_grayscale uses. */
export const LUMA_WEIGHTS: readonly [number, number, number] = [0.299, 0.587, 0.114];

/** RGB -> YIQ (NTSC). Its first row is the luma. */
const RGB_TO_YIQ = [
  [0.299, 0.587, 0.114],
  [0.595716, -0.274453, -0.321263],
  [0.211456, -0.522591, 0.311135],
];

/** A 3x3 matrix as rows. */
export type Matrix3 = number[][];

const IDENTITY3: Matrix3 = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
];

function multiply3(a: Matrix3, b: Matrix3): Matrix3 {
  return a.map((row) => [0, 1, 2].map((j) => row[0] * b[0][j] + row[1] * b[1][j] + row[2] * b[2][j]));
}

function invert3(m: Matrix3): Matrix3 {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  return [
    [(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
    [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
    [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det],
  ];
}

const YIQ_TO_RGB = invert3(RGB_TO_YIQ);

/**
 * The RGB matrix of a hue shift by `turns`: a rotation of the (I, Q) chroma plane that keeps the
 * luma Y. Positive turns go red -> green -> blue, like an HSV hue increase.
 */
export function hueMatrix(turns: number): Matrix3 {
  if (turns === 0) return IDENTITY3;
  // In YIQ the hue angle atan2(Q, I) runs red -> blue -> green, so an HSV-style shift rotates backwards.
  const angle = -2 * Math.PI * turns;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const rotation = [
    [1, 0, 0],
    [0, cos, -sin],
    [0, sin, cos],
  ];
  return multiply3(YIQ_TO_RGB, multiply3(rotation, RGB_TO_YIQ));
}

/** The RGB matrix blending an image with its grayscale: factor 0 is gray, 1 is unchanged. */
export function saturationMatrix(factor: number): Matrix3 {
  return [0, 1, 2].map((row) => [0, 1, 2].map((col) => (row === col ? factor : 0) + (1 - factor) * LUMA_WEIGHTS[col]));
}

/** The RGB matrix writing the luma into all three channels. */
const GRAYSCALE_MATRIX: Matrix3 = [[...LUMA_WEIGHTS], [...LUMA_WEIGHTS], [...LUMA_WEIGHTS]];

/** Throws unless `images` is a float32 rank-4 tensor with an allowed channel count (any when `channels` is undefined). */
function checkImages(images: tf.Tensor4D, argument = 'images', channels: readonly number[] | undefined = [1, 3]): void {
  if (!(images instanceof tf.Tensor)) validate.fail(argument, 'a tf.Tensor4D', images);
  if (images.rank !== 4) {
    throw new InvalidArgumentError(argument, 'a tensor of rank 4 [batch, height, width, channels]', `rank ${images.rank} (shape [${images.shape.join(', ')}])`);
  }
  if (images.dtype !== 'float32') throw new InvalidArgumentError(argument, 'a float32 tensor', `dtype ${images.dtype}`);
  if (channels !== undefined && !channels.includes(images.shape[3])) {
    throw new InvalidArgumentError(argument, `${channels.join(' or ')} channels`, `shape [${images.shape.join(', ')}]`);
  }
}

function checkPerSample(values: ArrayLike<unknown>, images: tf.Tensor4D, argument: string): void {
  if (values.length !== images.shape[0]) {
    throw new InvalidArgumentError(argument, `${images.shape[0]} values (one per image)`, `${values.length} values`);
  }
}

const clip01 = <T extends tf.Tensor>(x: T): T => tf.clipByValue(x, 0, 1);

/**
 * Applies one affine color map per image and clips to [0, 1]:
 * `out[b, y, x, c] = sum_k matrices[b][c][k] * in[b, y, x, k] + offsets[b, c]`.
 * @param matrices `[B, C, C]` row-major (out channel, in channel).
 * @param offsets Optional `[B, C]` tensor added to every pixel of image b.
 */
export function applyColorMaps(images: tf.Tensor4D, matrices: Float32Array, offsets?: tf.Tensor2D): tf.Tensor4D {
  checkImages(images);
  const [batch, height, width, channels] = images.shape;
  if (matrices.length !== batch * channels * channels) {
    throw new InvalidArgumentError('matrices', `${batch * channels * channels} numbers (${batch} matrices of ${channels}x${channels})`, `${matrices.length}`);
  }
  return tf.tidy(() => {
    const pixels = tf.reshape(images, [batch, height * width, channels]);
    let out: tf.Tensor3D = tf.matMul(pixels, tf.tensor3d(matrices, [batch, channels, channels]), false, true);
    if (offsets) {
      // The outer product ones x offset spreads each image's offset over its pixels (cheaper than a broadcast add).
      const spread = tf.matMul(tf.ones([batch, height * width, 1]), tf.reshape(offsets, [batch, 1, channels]));
      out = tf.add(out, spread);
    }
    return clip01(tf.reshape(out, [batch, height, width, channels]));
  });
}

/** `matrixOf(b)` for every image, flattened to `[B, C, C]`; C = 1 takes the top-left entry. */
function stackMatrices(batch: number, channels: number, matrixOf: (b: number) => Matrix3): Float32Array {
  const out = new Float32Array(batch * channels * channels);
  for (let b = 0; b < batch; b++) {
    const m = matrixOf(b);
    for (let r = 0; r < channels; r++) for (let c = 0; c < channels; c++) out[(b * channels + r) * channels + c] = m[r][c];
  }
  return out;
}

const scaledIdentity = (f: number): Matrix3 => IDENTITY3.map((row) => row.map((v) => v * f));

/** Per-image luma `[B, H, W, 1]` (the image itself when it has one channel). */
export function luma(images: tf.Tensor4D): tf.Tensor4D {
  checkImages(images);
  const [batch, height, width, channels] = images.shape;
  if (channels === 1) return tf.clone(images);
  return tf.tidy(() =>
    tf.reshape(tf.matMul(tf.reshape(images, [-1, 3]), tf.tensor2d([...LUMA_WEIGHTS], [3, 1])), [batch, height, width, 1]),
  );
}

/** Multiplies each image by its factor. */
export function adjustBrightness(images: tf.Tensor4D, factors: ArrayLike<number>): tf.Tensor4D {
  checkImages(images);
  checkPerSample(factors, images, 'factors');
  const [batch, , , channels] = images.shape;
  return applyColorMaps(images, stackMatrices(batch, channels, (b) => scaledIdentity(factors[b])));
}

/** Blends each image with the mean of its luma: factor 0 is flat gray, 1 is unchanged. */
export function adjustContrast(images: tf.Tensor4D, factors: ArrayLike<number>): tf.Tensor4D {
  checkImages(images);
  checkPerSample(factors, images, 'factors');
  const [batch, , , channels] = images.shape;
  return tf.tidy(() => {
    const mean = tf.mean(tf.reshape(luma(images), [batch, -1]), 1, true); // [B, 1]
    const weight = tf.tensor2d(Float32Array.from(factors, (f) => 1 - f), [batch, 1]);
    const offsets = tf.tile(tf.mul(mean, weight), [1, channels]) as tf.Tensor2D;
    return applyColorMaps(images, stackMatrices(batch, channels, (b) => scaledIdentity(factors[b])), offsets);
  });
}

/** Applies one 3x3 matrix per RGB image: out[c] = sum_k m[c][k] * in[k], clipped to [0, 1]. */
export function applyColorMatrices(images: tf.Tensor4D, matrices: readonly Matrix3[]): tf.Tensor4D {
  checkImages(images, 'images', [3]);
  checkPerSample(matrices, images, 'matrices');
  return applyColorMaps(images, stackMatrices(images.shape[0], 3, (b) => matrices[b]));
}

/** Blends each RGB image with its grayscale: factor 0 is gray, 1 is unchanged, > 1 more vivid. */
export function adjustSaturation(images: tf.Tensor4D, factors: ArrayLike<number>): tf.Tensor4D {
  return applyColorMatrices(images, Array.from(factors, (f) => saturationMatrix(f)));
}

/** Rotates each RGB image's hue by its shift in turns (see {@link hueMatrix}). */
export function adjustHue(images: tf.Tensor4D, shifts: ArrayLike<number>): tf.Tensor4D {
  return applyColorMatrices(images, Array.from(shifts, (s) => hueMatrix(s)));
}

/** Replaces the selected RGB images by their luma in all three channels. */
export function toGrayscale(images: tf.Tensor4D, selected: ArrayLike<number | boolean>): tf.Tensor4D {
  return applyColorMatrices(images, Array.from(selected, (s) => (s ? GRAYSCALE_MATRIX : IDENTITY3)));
}

/**
 * Sets one rectangle per image to 0: `rects` holds `[top, left, height, width]` per image
 * (height 0: none; the rectangle is clipped to the image). A `[B, H, W, 1]` mask of ones with
 * the rectangles zeroed is written directly (cheaper than building it from tensor comparisons
 * on tfjs's cpu backend), then multiplied in.
 */
export function eraseRectangles(images: tf.Tensor4D, rects: Int32Array): tf.Tensor4D {
  checkImages(images);
  const [batch, height, width] = images.shape;
  if (!(rects instanceof Int32Array) || rects.length !== 4 * batch) {
    throw new InvalidArgumentError('rects', `an Int32Array of ${4 * batch} numbers (4 per image)`, rects instanceof Int32Array ? `${rects.length}` : validate.describe(rects));
  }
  const mask = new Float32Array(batch * height * width).fill(1);
  for (let b = 0; b < batch; b++) {
    const [top, left, h, w] = rects.subarray(4 * b, 4 * b + 4);
    const y0 = Math.max(0, top);
    const x0 = Math.max(0, left);
    const y1 = Math.min(height, top + h);
    const x1 = Math.min(width, left + w);
    for (let y = y0; y < y1; y++) mask.fill(0, (b * height + y) * width + x0, (b * height + y) * width + Math.max(x0, x1));
  }
  return tf.tidy(() => tf.mul(images, tf.tensor4d(mask, [batch, height, width, 1])) as tf.Tensor4D);
}

/** Turns a plan into a view: crop + flip (black outside the image), the color operations in plan order, grayscale, erasing. */
export function applyViewPlan(images: tf.Tensor4D, plan: ViewPlan): tf.Tensor4D {
  checkImages(images);
  const batch = images.shape[0];
  if (plan.boxes.length !== 4 * batch) {
    throw new InvalidArgumentError('plan.boxes', `${4 * batch} numbers for a batch of ${batch}`, `${plan.boxes.length}`);
  }
  return tf.tidy(() => {
    const boxIndex = tf.range(0, batch, 1, 'int32') as tf.Tensor1D;
    let view = tf.image.cropAndResize(images, tf.tensor2d(plan.boxes, [batch, 4]), boxIndex, [
      plan.outputSize[0],
      plan.outputSize[1],
    ]);
    for (const op of plan.colorOrder) {
      if (op === 'brightness') view = adjustBrightness(view, plan.brightness);
      else if (op === 'contrast') view = adjustContrast(view, plan.contrast);
      else if (op === 'saturation') view = adjustSaturation(view, plan.saturation);
      else view = adjustHue(view, plan.hue);
    }
    if (images.shape[3] === 3 && plan.grayscale.some((g) => g === 1)) view = toGrayscale(view, plan.grayscale);
    if (plan.erase.some((v, i) => i % 4 === 2 && v > 0)) view = eraseRectangles(view, plan.erase);
    return clip01(view);
  });
}

// ---------------------------------------------------------------------------------------------
// Public entry points.

/**
 * One augmented view of a batch: a new `[B, H', W', C]` tensor in [0, 1] the caller disposes.
 * @param images `[B, H, W, C]` float32 in [0, 1], C = 1 or 3.
 * @param rng Source of all randomness: the same seed gives the same view.
 */
export function augmentView(images: tf.Tensor4D, rng: Rng, options: AugmentOptions = {}): tf.Tensor4D {
  checkImages(images);
  const resolved = resolveAugmentOptions(options);
  const [batch, height, width, channels] = images.shape;
  return applyViewPlan(images, sampleViewPlan(batch, height, width, channels as 1 | 3, rng, resolved));
}

/**
 * Two independently augmented views of every image, as SupCon and SimCLR train on.
 *
 * ```ts
 * const [v1, v2] = twoViews(batch.images, rng);   // each [B, H, W, C] in [0, 1]
 * ```
 */
export function twoViews(images: tf.Tensor4D, rng: Rng, options: AugmentOptions = {}): [tf.Tensor4D, tf.Tensor4D] {
  const first = augmentView(images, rng, options);
  try {
    return [first, augmentView(images, rng, options)];
  } catch (e) {
    first.dispose();
    throw e;
  }
}

/**
 * The evaluation transform: no randomness; the images resized to `outputSize` when given
 * (bilinear, half-pixel centers). Returns a new tensor the caller disposes.
 */
export function evaluationView(images: tf.Tensor4D, options: { outputSize?: [number, number] } = {}): tf.Tensor4D {
  checkImages(images);
  const o = validate.options('options', options, ['outputSize']);
  if (o.outputSize === undefined) return tf.clone(images);
  const [h, w] = validate.shape('options.outputSize', o.outputSize, [2]);
  if (h === images.shape[1] && w === images.shape[2]) return tf.clone(images);
  return tf.tidy(() => clip01(tf.image.resizeBilinear(images, [h, w], false, true)));
}

/**
 * `(images - mean) / std` per channel, with a dataset's statistics (see `DATASETS[name].normalization`).
 * Returns a new tensor the caller disposes.
 */
export function normalize(images: tf.Tensor4D, normalization: Normalization): tf.Tensor4D {
  checkImages(images, 'images', undefined);
  const channels = images.shape[3];
  const o = validate.options('normalization', normalization, ['mean', 'std']);
  const check = (key: 'mean' | 'std'): number[] => {
    const v = o[key];
    if (!Array.isArray(v) || v.length !== channels) validate.fail(`normalization.${key}`, `an array of ${channels} numbers`, v);
    return (v as unknown[]).map((x, i) => validate.number(`normalization.${key}[${i}]`, x, key === 'std' ? { gt: 0 } : {}));
  };
  const mean = check('mean');
  const std = check('std');
  return tf.tidy(() => tf.div(tf.sub(images, tf.tensor1d(mean)), tf.tensor1d(std)));
}
