import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors';
import { createEncoder, ENCODER_ARCHS, encoderFeatureDim, type EncoderArch } from '../../src/models/resnet';
import { summarize } from '../../src/models/summary';
import { seededTensor, weightsByName } from './helpers';
import { expectInvalidArgument } from '../helpers/errors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

// ---------------------------------------------------------------------------------------
// An independent description of the architectures (from the papers, not from the builder)
// and a formula for their parameter counts.
// ---------------------------------------------------------------------------------------

interface PaperSpec {
  block: 'basic' | 'bottleneck';
  blocks: number[];
  widths: number[];
}

const SMALL = [16, 32, 64];
const LARGE = [64, 128, 256, 512];
const PAPER: Record<EncoderArch, PaperSpec> = {
  // He et al. 2016, section 4.2: 6n + 2 layers, n blocks per stage.
  resnet8: { block: 'basic', blocks: [1, 1, 1], widths: SMALL },
  resnet20: { block: 'basic', blocks: [3, 3, 3], widths: SMALL },
  resnet32: { block: 'basic', blocks: [5, 5, 5], widths: SMALL },
  resnet56: { block: 'basic', blocks: [9, 9, 9], widths: SMALL },
  // He et al. 2016, table 1 (and 2016b for the 200-layer net).
  resnet18: { block: 'basic', blocks: [2, 2, 2, 2], widths: LARGE },
  resnet34: { block: 'basic', blocks: [3, 4, 6, 3], widths: LARGE },
  resnet50: { block: 'bottleneck', blocks: [3, 4, 6, 3], widths: LARGE },
  resnet101: { block: 'bottleneck', blocks: [3, 4, 23, 3], widths: LARGE },
  resnet200: { block: 'bottleneck', blocks: [3, 24, 36, 3], widths: LARGE },
};

interface Counts {
  /** Conv kernels + BN gamma/beta: what PyTorch calls parameters. */
  trainable: number;
  /** BN moving mean/variance: buffers in PyTorch, non-trainable weights in tfjs. */
  bnStatistics: number;
  convLayers: number;
}

/** Parameter counts of a ResNet (bias-free convs, BN after each, 1x1+BN projections). */
function paperCounts(spec: PaperSpec, stem: 'cifar' | 'imagenet', inChannels: number, width = 1): Counts {
  const c = { trainable: 0, bnStatistics: 0, convLayers: 0 };
  const conv = (k: number, cin: number, cout: number) => {
    c.trainable += k * k * cin * cout + 2 * cout; // kernel + BN gamma/beta
    c.bnStatistics += 2 * cout;
    c.convLayers += 1;
  };
  const scaled = (n: number) => Math.max(1, Math.round(n * width));
  let channels = scaled(spec.widths[0]);
  conv(stem === 'imagenet' ? 7 : 3, inChannels, channels);
  spec.blocks.forEach((n, stage) => {
    const w = scaled(spec.widths[stage]);
    for (let b = 0; b < n; b++) {
      const out = spec.block === 'basic' ? w : 4 * w;
      if (spec.block === 'basic') {
        conv(3, channels, w);
        conv(3, w, w);
      } else {
        conv(1, channels, w);
        conv(3, w, w);
        conv(1, w, out);
      }
      const downsample = stage > 0 && b === 0;
      if (downsample || channels !== out) conv(1, channels, out);
      channels = out;
    }
  });
  return c;
}

// torchvision's resnetXX().parameters() minus the final fc layer (512*1000+1000 for
// basic-block nets, 2048*1000+1000 for bottleneck ones). BN running stats are buffers
// there, so these are tfjs's *trainable* counts, not countParams().
const TORCHVISION_WITHOUT_FC: Partial<Record<EncoderArch, number>> = {
  resnet18: 11_689_512 - 513_000, // = 11,176,512
  resnet34: 21_797_672 - 513_000,
  resnet50: 25_557_032 - 2_049_000, // = 23,508,032
  resnet101: 44_549_160 - 2_049_000,
};

describe('parameter counts', () => {
  it('the formula reproduces torchvision (sanity check of the test itself)', () => {
    for (const [arch, expected] of Object.entries(TORCHVISION_WITHOUT_FC)) {
      expect(paperCounts(PAPER[arch as EncoderArch], 'imagenet', 3).trainable).toBe(expected);
    }
    expect(TORCHVISION_WITHOUT_FC.resnet18).toBe(11_176_512);
    expect(TORCHVISION_WITHOUT_FC.resnet50).toBe(23_508_032);
  });

  it('ResNet-18 ImageNet stem: 11,176,512 trainable (torchvision) + 9,600 BN statistics', () => {
    const model = createEncoder({ fused: false, arch: 'resnet18', stem: 'imagenet', inputShape: [32, 32, 3], seed: 1 });
    const s = summarize(model);
    expect(s.trainableParams).toBe(11_176_512);
    // 4,800 BN channels (64 + 4*64 + 5*128 + 5*256 + 5*512), two statistics each.
    expect(s.nonTrainableParams).toBe(9_600);
    expect(s.totalParams).toBe(model.countParams());
    expect(s.totalParams).toBe(11_186_112);
    model.dispose();
  });

  it('ResNet-50 ImageNet stem: 23,508,032 trainable (torchvision), 53 conv layers', () => {
    const model = createEncoder({ fused: false, arch: 'resnet50', inputShape: [32, 32, 3], seed: 1 });
    const s = summarize(model);
    expect(s.trainableParams).toBe(23_508_032);
    expect(s.nonTrainableParams).toBe(paperCounts(PAPER.resnet50, 'imagenet', 3).bnStatistics);
    expect(model.layers.filter((l) => l.getClassName() === 'Conv2D')).toHaveLength(53);
    model.dispose();
  });

  it('ResNet-20 CIFAR: ~0.27M, exactly the formula with option-B projections', () => {
    const model = createEncoder({ fused: false, arch: 'resnet20', inputShape: [32, 32, 3] });
    const s = summarize(model);
    const expected = paperCounts(PAPER.resnet20, 'cifar', 3);
    expect(s.trainableParams).toBe(expected.trainable);
    expect(s.nonTrainableParams).toBe(expected.bnStatistics);
    // He et al. report 0.27M (with identity "option A" shortcuts and the 10-way fc); the two
    // projections (16->32, 32->64 plus BN) add 2,752 and the missing fc removes 650.
    expect(Math.abs(s.trainableParams - 270_000) / 270_000).toBeLessThan(0.01);
    expect(s.trainableParams).toBe(269_722 - 650 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64));
    model.dispose();
  });

  it('width multiplier scales every stage (rounded) and the feature dimension', () => {
    const half = createEncoder({ fused: false, arch: 'resnet18', stem: 'cifar', widthMultiplier: 0.5, inputShape: [8, 8, 3] });
    expect(summarize(half).trainableParams).toBe(paperCounts(PAPER.resnet18, 'cifar', 3, 0.5).trainable);
    expect(half.outputs[0].shape).toEqual([null, 256]);
    half.dispose();
    // 16*0.3 = 4.8 -> 5, 32*0.3 = 9.6 -> 10, 64*0.3 = 19.2 -> 19.
    const odd = createEncoder({ fused: false, arch: 'resnet8', widthMultiplier: 0.3, inputShape: [8, 8, 1] });
    expect(odd.getLayer('stem_conv').getWeights()[0].shape).toEqual([3, 3, 1, 5]);
    expect(odd.getLayer('stage2_block1_conv1').getWeights()[0].shape).toEqual([3, 3, 5, 10]);
    expect(odd.outputs[0].shape).toEqual([null, 19]);
    expect(encoderFeatureDim('resnet8', 0.3)).toBe(19);
    expect(summarize(odd).trainableParams).toBe(paperCounts(PAPER.resnet8, 'cifar', 1, 0.3).trainable);
    odd.dispose();
  });
});

describe('every architecture', () => {
  const expectedFeatureDim: Record<EncoderArch, number> = {
    resnet8: 64,
    resnet20: 64,
    resnet32: 64,
    resnet56: 64,
    resnet18: 512,
    resnet34: 512,
    resnet50: 2048,
    resnet101: 2048,
    resnet200: 2048,
  };

  it('lists exactly the nine architectures', () => {
    expect([...ENCODER_ARCHS].sort()).toEqual(Object.keys(PAPER).sort());
  });

  for (const arch of ENCODER_ARCHS) {
    it(`${arch}: features [2, ${expectedFeatureDim[arch]}] from 32x32x3, params and conv count match the paper layout`, () => {
      const spec = PAPER[arch];
      const stem = spec.widths.length === 3 ? 'cifar' : 'imagenet'; // the documented default
      const model = createEncoder({ fused: false, arch, inputShape: [32, 32, 3], seed: 3 });
      expect(encoderFeatureDim(arch)).toBe(expectedFeatureDim[arch]);
      const expected = paperCounts(spec, stem, 3);
      const s = summarize(model);
      expect(s.trainableParams).toBe(expected.trainable);
      expect(s.nonTrainableParams).toBe(expected.bnStatistics);
      expect(model.layers.filter((l) => l.getClassName() === 'Conv2D')).toHaveLength(expected.convLayers);
      const before = tf.memory().numTensors;
      const features = tf.tidy(() => model.predict(tf.zeros([2, 32, 32, 3])) as tf.Tensor);
      expect(features.shape).toEqual([2, expectedFeatureDim[arch]]);
      tf.dispose(features);
      expect(tf.memory().numTensors).toBe(before);
      model.dispose();
    });
  }

  it('the small nets take 28x28x1 (FashionMNIST); resnet18 takes the CIFAR stem', () => {
    for (const arch of ['resnet8', 'resnet20'] as const) {
      const model = createEncoder({ fused: false, arch, inputShape: [28, 28, 1] });
      const y = tf.tidy(() => model.predict(tf.zeros([2, 28, 28, 1])) as tf.Tensor);
      expect(y.shape).toEqual([2, 64]);
      y.dispose();
      model.dispose();
    }
    // 12 px rather than 28 keeps the 64-channel full-resolution stage cheap on the cpu backend.
    const r18 = createEncoder({ fused: false, arch: 'resnet18', stem: 'cifar', inputShape: [12, 12, 1] });
    expect(r18.getLayer('stem_conv').getWeights()[0].shape).toEqual([3, 3, 1, 64]);
    expect(r18.layers.some((l) => l.getClassName() === 'MaxPooling2D')).toBe(false);
    const y = tf.tidy(() => r18.predict(tf.zeros([2, 12, 12, 1])) as tf.Tensor);
    expect(y.shape).toEqual([2, 512]);
    y.dispose();
    r18.dispose();
  });
});

describe('layout', () => {
  const spatial = (model: tf.LayersModel, layer: string) => {
    const shape = model.getLayer(layer).outputShape as number[];
    return [shape[1], shape[2], shape[3]];
  };

  it('ImageNet stem downsamples 4x, each later stage 2x (32 -> 8, 4, 2, 1)', () => {
    const model = createEncoder({ fused: false, arch: 'resnet18', inputShape: [32, 32, 3] });
    expect(model.getLayer('stem_conv').getWeights()[0].shape).toEqual([7, 7, 3, 64]);
    expect(spatial(model, 'stem_conv')).toEqual([16, 16, 64]);
    expect(spatial(model, 'stem_pool')).toEqual([8, 8, 64]);
    expect(spatial(model, 'stage1_block2_out')).toEqual([8, 8, 64]);
    expect(spatial(model, 'stage2_block2_out')).toEqual([4, 4, 128]);
    expect(spatial(model, 'stage3_block2_out')).toEqual([2, 2, 256]);
    expect(spatial(model, 'stage4_block2_out')).toEqual([1, 1, 512]);
    model.dispose();
  });

  it('CIFAR stem keeps the resolution (32 -> 32, 16, 8)', () => {
    const model = createEncoder({ fused: false, arch: 'resnet20', inputShape: [32, 32, 3] });
    expect(spatial(model, 'stem_relu')).toEqual([32, 32, 16]);
    expect(spatial(model, 'stage1_block3_out')).toEqual([32, 32, 16]);
    expect(spatial(model, 'stage2_block3_out')).toEqual([16, 16, 32]);
    expect(spatial(model, 'stage3_block3_out')).toEqual([8, 8, 64]);
    model.dispose();
  });

  it('projection shortcuts exactly where the shape changes; bottleneck stride on the 3x3 (v1.5)', () => {
    const r18 = createEncoder({ fused: false, arch: 'resnet18', inputShape: [32, 32, 3] });
    const shortcuts18 = r18.layers.filter((l) => l.name.endsWith('_shortcut_conv')).map((l) => l.name);
    expect(shortcuts18).toEqual(['stage2_block1_shortcut_conv', 'stage3_block1_shortcut_conv', 'stage4_block1_shortcut_conv']);
    r18.dispose();

    const r50 = createEncoder({ fused: false, arch: 'resnet50', inputShape: [32, 32, 3] });
    const shortcuts50 = r50.layers.filter((l) => l.name.endsWith('_shortcut_conv')).map((l) => l.name);
    expect(shortcuts50).toEqual([1, 2, 3, 4].map((s) => `stage${s}_block1_shortcut_conv`));
    expect(r50.getLayer('stage1_block1_shortcut_conv').getWeights()[0].shape).toEqual([1, 1, 64, 256]);
    expect(spatial(r50, 'stage2_block1_conv1')).toEqual([8, 8, 128]); // 1x1, stride 1
    expect(spatial(r50, 'stage2_block1_conv2')).toEqual([4, 4, 128]); // 3x3, stride 2
    expect(spatial(r50, 'stage2_block1_conv3')).toEqual([4, 4, 512]);
    r50.dispose();
  });

  it('layer names are deterministic and readable', () => {
    const names = (m: tf.LayersModel) => m.layers.map((l) => l.name);
    const a = createEncoder({ fused: false, arch: 'resnet20', inputShape: [8, 8, 3] });
    const b = createEncoder({ fused: false, arch: 'resnet20', inputShape: [8, 8, 3] });
    expect(names(a)).toEqual(names(b));
    const pattern =
      /^(image|stem_(conv|bn|relu|pool)|stage[1-4]_block\d+_(conv[1-3]|bn[1-3]|relu[12]|shortcut_conv|shortcut_bn|add|out)|global_pool)$/;
    for (const name of names(a)) expect(name).toMatch(pattern);
    expect(names(a)).toContain('stage2_block1_conv1');
    expect(names(a)).toContain('stage3_block3_out');
    expect(names(a).at(-1)).toBe('global_pool');
    a.dispose();
    b.dispose();
  });
});

describe('initialization', () => {
  it('convs have no bias and He-normal weights with variance 2 / fan_out', () => {
    const model = createEncoder({ fused: false, arch: 'resnet8', widthMultiplier: 4, inputShape: [8, 8, 3], seed: 5 });
    const conv = model.getLayer('stage3_block1_conv2'); // 3x3, 256 -> 256: 589,824 samples
    expect(conv.getWeights()).toHaveLength(1);
    expect(conv.getConfig().useBias).toBe(false);
    const w = conv.getWeights()[0].dataSync();
    let mean = 0;
    for (const v of w) mean += v;
    mean /= w.length;
    let variance = 0;
    let maxAbs = 0;
    for (const v of w) {
      variance += (v - mean) ** 2;
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }
    variance /= w.length;
    const target = 2 / (3 * 3 * 256);
    expect(Math.abs(mean)).toBeLessThan(0.01 * Math.sqrt(target));
    expect(variance / target).toBeGreaterThan(0.98);
    expect(variance / target).toBeLessThan(1.02);
    // Truncated at two standard deviations of the underlying (pre-truncation) normal.
    expect(maxAbs).toBeLessThanOrEqual(2 * Math.sqrt(target / 0.7737413) * 1.0001);
    model.dispose();
  });

  it('BN: momentum 0.9 (moving = 0.9 moving + 0.1 batch), epsilon 1e-5, gamma 1, beta 0', () => {
    const model = createEncoder({ fused: false, arch: 'resnet8', inputShape: [6, 6, 1], seed: 6 });
    const bn = model.getLayer('stem_bn');
    expect(bn.getConfig().momentum).toBe(0.9);
    expect(bn.getConfig().epsilon).toBe(1e-5);
    const [gamma, beta, movingMean] = bn.getWeights().map((t) => Array.from(t.dataSync()));
    expect(gamma.every((v) => v === 1)).toBe(true);
    expect(beta.every((v) => v === 0)).toBe(true);
    expect(movingMean.every((v) => v === 0)).toBe(true);
    // One training-mode call: the moving mean becomes 0.1 x the batch mean of the conv output.
    const x = seededTensor([3, 6, 6, 1], 8);
    const convOut = tf.model({ inputs: model.inputs, outputs: model.getLayer('stem_conv').output as tf.SymbolicTensor });
    const batchMean = tf.tidy(() => tf.mean(convOut.predict(x) as tf.Tensor, [0, 1, 2]).dataSync());
    tf.tidy(() => {
      model.apply(x, { training: true });
    });
    const updated = bn.getWeights()[2].dataSync();
    batchMean.forEach((m, i) => expect(updated[i]).toBeCloseTo(0.1 * m, 6));
    tf.dispose(x);
    model.dispose();
  });

  it('zeroInitResidual zeroes exactly the last BN gamma of every block', () => {
    const gammaOf = (m: tf.LayersModel, name: string) => Array.from(m.getLayer(name).getWeights()[0].dataSync());
    const on = createEncoder({ fused: false, arch: 'resnet50', widthMultiplier: 0.125, inputShape: [8, 8, 3], zeroInitResidual: true });
    const off = createEncoder({ fused: false, arch: 'resnet50', widthMultiplier: 0.125, inputShape: [8, 8, 3] });
    const bnNames = on.layers.filter((l) => l.getClassName() === 'BatchNormalization').map((l) => l.name);
    const zeroed = bnNames.filter((n) => gammaOf(on, n).every((v) => v === 0));
    expect(zeroed).toHaveLength(3 + 4 + 6 + 3);
    expect(zeroed.every((n) => /^stage\d_block\d+_bn3$/.test(n))).toBe(true);
    for (const n of bnNames) {
      if (!zeroed.includes(n)) expect(gammaOf(on, n).every((v) => v === 1)).toBe(true);
      expect(gammaOf(off, n).every((v) => v === 1)).toBe(true);
    }
    // At initialization an identity block then outputs relu(its input).
    const x = seededTensor([1, 8, 8, 3], 2);
    const probe = tf.model({
      inputs: on.inputs,
      outputs: [on.getLayer('stage1_block1_out').output, on.getLayer('stage1_block2_out').output] as tf.SymbolicTensor[],
    });
    const [blockIn, blockOut] = probe.predict(x) as tf.Tensor[];
    expect(Array.from(blockOut.dataSync())).toEqual(Array.from(blockIn.dataSync()));
    tf.dispose([x, blockIn, blockOut]);
    on.dispose();
    off.dispose();
  });

  it('same seed gives identical weights; different seeds and different layers differ', () => {
    const weightsOf = (seed?: number) => {
      const model = createEncoder({ fused: false, arch: 'resnet8', inputShape: [8, 8, 1], ...(seed === undefined ? {} : { seed }) });
      const weights = weightsByName(model);
      model.dispose();
      return weights;
    };
    // Seed 0 on purpose: tfjs's truncated normal treats a zero seed as "unseeded".
    const a = weightsOf(0);
    const b = weightsOf(0);
    const c = weightsOf(1);
    const unseeded = weightsOf();
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [name, values] of a) expect(Array.from(b.get(name)!)).toEqual(Array.from(values));
    const kernels = [...a.keys()].filter((n) => n.endsWith('/kernel'));
    expect(kernels.length).toBe(9);
    for (const name of kernels) {
      expect(Array.from(c.get(name)!)).not.toEqual(Array.from(a.get(name)!));
      expect(Array.from(unseeded.get(name)!)).not.toEqual(Array.from(a.get(name)!));
    }
    // Two same-shape kernels of one model must not share a seed.
    expect(Array.from(a.get('stage1_block1_conv1/kernel')!)).not.toEqual(Array.from(a.get('stage1_block1_conv2/kernel')!));
  });
});

describe('option validation', () => {
  const base = { arch: 'resnet8' as const, inputShape: [8, 8, 1] as [number, number, number] };
  const expectInvalid = (options: unknown, argument: string) => expectInvalidArgument(() => createEncoder(options as never), argument);

  it('names the bad option', () => {
    expectInvalid({ ...base, arch: 'resnet9' }, 'options.arch');
    expectInvalid({ ...base, arch: undefined }, 'options.arch');
    expectInvalid({ ...base, widthMultiplier: 0 }, 'options.widthMultiplier');
    expectInvalid({ ...base, widthMultiplier: -1 }, 'options.widthMultiplier');
    expectInvalid({ ...base, widthMultiplier: NaN }, 'options.widthMultiplier');
    expectInvalid({ ...base, inputShape: [8, 8] }, 'options.inputShape');
    expectInvalid({ ...base, inputShape: [8, 0, 1] }, 'options.inputShape');
    expectInvalid({ ...base, inputShape: [8, 8.5, 1] }, 'options.inputShape');
    expectInvalid({ ...base, inputShape: '8x8' }, 'options.inputShape');
    expectInvalid({ arch: 'resnet8' }, 'options.inputShape');
    expectInvalid({ ...base, stem: 'mnist' }, 'options.stem');
    expectInvalid({ ...base, zeroInitResidual: 1 }, 'options.zeroInitResidual');
    expectInvalid({ ...base, seed: -1 }, 'options.seed');
    expectInvalid({ ...base, seed: 0.5 }, 'options.seed');
    expectInvalid({ ...base, depth: 8 }, 'options');
    expectInvalid(undefined, 'options');
    expectInvalid([], 'options');
  });

  it('encoderFeatureDim validates too', () => {
    expect(() => encoderFeatureDim('resnet9' as EncoderArch)).toThrow(InvalidArgumentError);
    expect(() => encoderFeatureDim('resnet8', 0)).toThrow(/widthMultiplier/);
  });
});
