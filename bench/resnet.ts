/**
 * Small ResNets built from tfjs layers, shared by the kernel benchmark, the profile script and
 * the kernel tests: conv-BN-relu basic blocks with a residual add, global average pooling and
 * a dense classifier. They exercise every kernel a ResNet training step runs.
 */
import * as tf from '@tensorflow/tfjs';

/** Shape of a ResNet: stem width, per-stage widths and blocks, input and class count. */
export interface ResNetSpec {
  /** Input image [height, width, channels]. */
  inputShape: [number, number, number];
  /** Output channels of the 3x3 stem convolution. */
  stemWidth: number;
  /** Output channels of each stage; every stage after the first halves the resolution. */
  stageWidths: number[];
  /** Basic blocks per stage. */
  blocksPerStage: number;
  classes: number;
  seed?: number;
}

/** ResNet-8 of the benchmark: 3 stages of one basic block (16/32/64), 28x28x1 input. */
export const RESNET8: ResNetSpec = {
  inputShape: [28, 28, 1],
  stemWidth: 16,
  stageWidths: [16, 32, 64],
  blocksPerStage: 1,
  classes: 10,
};

/** ResNet-18 with the CIFAR stem (3x3 conv, no max pool), 32x32x3 input. */
export const RESNET18_CIFAR: ResNetSpec = {
  inputShape: [32, 32, 3],
  stemWidth: 64,
  stageWidths: [64, 128, 256, 512],
  blocksPerStage: 2,
  classes: 10,
};

/** Builds the ResNet described by `spec` as a functional tf.LayersModel (not compiled). */
export function buildResNet(spec: ResNetSpec): tf.LayersModel {
  let seed = spec.seed ?? 1;
  const init = () => tf.initializers.heNormal({ seed: seed++ });
  const conv = (x: tf.SymbolicTensor, filters: number, kernel: number, stride: number) =>
    tf.layers
      .conv2d({ filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false, kernelInitializer: init() })
      .apply(x) as tf.SymbolicTensor;
  const bn = (x: tf.SymbolicTensor) => tf.layers.batchNormalization({ axis: -1 }).apply(x) as tf.SymbolicTensor;
  const relu = (x: tf.SymbolicTensor) => tf.layers.reLU().apply(x) as tf.SymbolicTensor;

  const input = tf.input({ shape: spec.inputShape });
  let x = relu(bn(conv(input, spec.stemWidth, 3, 1)));
  let channels = spec.stemWidth;
  spec.stageWidths.forEach((width, stage) => {
    for (let b = 0; b < spec.blocksPerStage; ++b) {
      const stride = stage > 0 && b === 0 ? 2 : 1;
      let y = relu(bn(conv(x, width, 3, stride)));
      y = bn(conv(y, width, 3, 1));
      // Projection shortcut when the shape changes, identity otherwise.
      const shortcut = stride !== 1 || channels !== width ? bn(conv(x, width, 1, stride)) : x;
      x = relu(tf.layers.add().apply([y, shortcut]) as tf.SymbolicTensor);
      channels = width;
    }
  });
  const pooled = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
  const logits = tf.layers
    .dense({ units: spec.classes, kernelInitializer: tf.initializers.glorotUniform({ seed: seed++ }) })
    .apply(pooled) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: logits });
}

/** Softmax cross-entropy of the model in training mode (BN uses batch statistics). */
export function trainingLoss(model: tf.LayersModel, images: tf.Tensor4D, oneHot: tf.Tensor2D): tf.Scalar {
  const logits = model.apply(images, { training: true }) as tf.Tensor2D;
  return tf.losses.softmaxCrossEntropy(oneHot, logits) as tf.Scalar;
}

/** One SGD training step (forward, backward, update); returns the loss value. */
export function trainStep(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  images: tf.Tensor4D,
  oneHot: tf.Tensor2D,
): number {
  const loss = optimizer.minimize(() => trainingLoss(model, images, oneHot), true, model.trainableWeights.map((w) => w.read() as tf.Variable));
  const value = loss!.dataSync()[0];
  loss!.dispose();
  return value;
}

/** Deterministic random images and one-hot labels for a spec and batch size. */
export function syntheticBatch(spec: ResNetSpec, batch: number, seed = 7): { images: tf.Tensor4D; oneHot: tf.Tensor2D } {
  return tf.tidy(() => {
    const images = tf.randomNormal([batch, ...spec.inputShape], 0, 1, 'float32', seed) as tf.Tensor4D;
    const labels = tf.randomUniform([batch], 0, spec.classes, 'int32', seed + 1) as tf.Tensor1D;
    return { images, oneHot: tf.oneHot(labels, spec.classes).toFloat() as tf.Tensor2D };
  });
}
