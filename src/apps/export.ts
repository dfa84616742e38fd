/**
 * Exporting a trained encoder as a plain tfjs LayersModel: `model.json` + `weights.bin` that
 * `tf.loadLayersModel` loads in Node or a browser with nothing but `@tensorflow/tfjs` (no class
 * of this package registered), plus `metadata.json` (input size, channels, preprocessing and
 * normalization, outputs, class names).
 *
 * The export never reuses the training model's layer objects (they are this package's fused
 * ConvBatchNorm layers). It builds a new encoder of the run's architecture from standard tfjs
 * layers (`createEncoder({ fused: false })`), reads the checkpoint's weights by their names (`stem_conv/kernel`,
 * `stage1_block1_bn1/gamma`, ...) and writes them into it; the same for the projection head
 * (without its final L2Normalize layer, which is this package's class: the metadata says to
 * normalize) and the linear classifier. Every exported weight must be found with its shape.
 * Then the exported model is run next to the checkpoint's own models on a fixed input, and the
 * outputs must agree.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { SupConError } from '../errors';
import { Rng } from '../data';
import { createEncoder, createLinearClassifier, createProjectionHead, L2Normalize, type EncoderArch } from '../models';
import { assignNamedWeights, CHECKPOINT_FILES, fileIOHandler, readSavedWeights } from '../train/checkpoint';
import { resolveTrainConfig, type TrainConfig } from '../train/config';
import { CheckpointError } from '../train/errors';
import { openCheckpoint } from '../train/evaluate';
import { readRunDataset, type RunDatasetInfo } from '../train/run_dataset';
import { disposeRunModels, type EncoderBuilder } from '../train/run_models';
import { readTrainingState, RUN_FILES } from '../train/run_state';
import { packageVersion } from '../paths';

/** Options of {@link exportCheckpoint}. */
export interface ExportOptions {
  /** Add the projection head's output (before its L2 normalization) as an output (contrastive runs; default false). */
  projection?: boolean;
  /** Add the linear classifier's logits as an output (the CE head, or a contrastive run's linear evaluation; default false). */
  classifier?: boolean;
  /** Builds the encoder of a run whose arch is 'custom' (it must use standard tfjs layers only). */
  buildEncoder?: EncoderBuilder;
  /** Compare the export's outputs with the checkpoint's own models on a fixed input (default true). */
  verify?: boolean;
}

/** One output of the exported model. */
export interface ExportOutput {
  name: 'embedding' | 'projection' | 'logits';
  /** Position in `model.predict`'s result (a lone output is returned as a tensor, not a list). */
  index: number;
  /** [null, size] */
  shape: [null, number];
  description: string;
}

/** `metadata.json` of an export. */
export interface ExportMetadata {
  format: 'supcon-native-export';
  version: 1;
  generatedBy: string;
  model: 'model.json';
  input: {
    name: string;
    /** [null, height, width, channels], NHWC float32. */
    shape: [null, number, number, number];
    height: number;
    width: number;
    channels: 1 | 3;
    /** Per channel, on the [0, 1] scale: x = (pixel / 255 - mean) / std. */
    normalization: { mean: number[]; std: number[] };
    preprocessing: string;
  };
  outputs: ExportOutput[];
  classNames: string[];
  run: {
    checkpoint: string;
    method: TrainConfig['method'];
    arch: TrainConfig['arch'];
    width: number;
    stem?: string;
    dataset: string;
    epochs: number;
    step: number;
  };
}

/** What {@link exportCheckpoint} wrote. */
export interface ExportResult {
  dir: string;
  files: string[];
  metadata: ExportMetadata;
  /** Largest difference between the export's outputs and the checkpoint's models' (when verified). */
  maxDifference?: number;
}

/**
 * The tfjs classes (layers, models, initializers) an export may contain: those of tfjs-layers
 * itself, which any tfjs build can deserialize. Anything else would need this package.
 */
export const PLAIN_TFJS_CLASSES: ReadonlySet<string> = new Set([
  'Model',
  'Functional',
  'Sequential',
  'InputLayer',
  'Conv2D',
  'DepthwiseConv2D',
  'BatchNormalization',
  'ReLU',
  'Activation',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'ZeroPadding2D',
  'Add',
  'Dense',
  'Flatten',
  'Dropout',
  'Zeros',
  'Ones',
  'Constant',
  'RandomNormal',
  'RandomUniform',
  'TruncatedNormal',
  'VarianceScaling',
  'GlorotUniform',
  'GlorotNormal',
  'HeNormal',
  'HeUniform',
  'LeCunNormal',
  'LeCunUniform',
  'Orthogonal',
  'Identity',
]);

/** Every `class_name` in a model topology. */
function classNamesIn(topology: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(topology)) topology.forEach((t) => classNamesIn(t, into));
  else if (topology !== null && typeof topology === 'object') {
    const o = topology as Record<string, unknown>;
    if (typeof o.class_name === 'string') into.add(o.class_name);
    for (const v of Object.values(o)) classNamesIn(v, into);
  }
  return into;
}

/** The run's encoder built from standard tfjs layers: the architecture the export relies on. */
function plainEncoder(config: TrainConfig, data: RunDatasetInfo, buildEncoder?: EncoderBuilder): tf.LayersModel {
  const inputShape: [number, number, number] = [data.height, data.width, data.channels];
  if (config.arch === 'custom') {
    if (buildEncoder === undefined) {
      validate.fail('options.buildEncoder', "an encoder builder (the run's arch is 'custom')", buildEncoder);
    }
    return buildEncoder(config, inputShape, 0);
  }
  // fused: false: separate Conv2D / BatchNormalization / Add / ReLU layers, whose weights carry
  // the names the fused ConvBatchNorm layers of training save (`stem_conv/kernel`, `stem_bn/gamma`, ...).
  return createEncoder({
    arch: config.arch as EncoderArch,
    widthMultiplier: config.width,
    inputShape,
    fused: false,
    ...(config.stem === undefined ? {} : { stem: config.stem }),
  });
}

/**
 * Writes the run in `checkpointDir` as a plain tfjs LayersModel into `outDir` (see the module
 * notes): `model.json`, `weights.bin`, `metadata.json`.
 *
 * ```ts
 * await exportCheckpoint('runs/photos', 'exported', { projection: true, classifier: true });
 * // elsewhere, with plain tfjs:
 * const model = await tf.loadLayersModel('https://example.com/exported/model.json');
 * ```
 * @throws {@link CheckpointError} when the run is unusable or lacks what is asked for (a linear
 *   classifier before the run's evaluation).
 * @throws {@link InvalidArgumentError} for `projection` on a cross-entropy run.
 * @throws {@link SupConError} when the export would need a class plain tfjs lacks, or its outputs
 *   differ from the checkpoint's.
 */
export async function exportCheckpoint(checkpointDir: string, outDir: string, options: ExportOptions = {}): Promise<ExportResult> {
  validate.string('checkpointDir', checkpointDir);
  validate.string('outDir', outDir);
  const o = validate.options('options', options, ['projection', 'classifier', 'buildEncoder', 'verify']);
  const withProjection = o.projection === undefined ? false : validate.boolean('options.projection', o.projection);
  const withClassifier = o.classifier === undefined ? false : validate.boolean('options.classifier', o.classifier);
  const verify = o.verify === undefined ? true : validate.boolean('options.verify', o.verify);
  const buildEncoder = o.buildEncoder as EncoderBuilder | undefined;
  if (buildEncoder !== undefined && typeof buildEncoder !== 'function') validate.fail('options.buildEncoder', 'a function', buildEncoder);
  if (!existsSync(checkpointDir)) throw new CheckpointError(checkpointDir, 'no such directory');
  const state = await readTrainingState(checkpointDir);
  const config = resolveTrainConfig(state.config);
  const data = await readRunDataset(checkpointDir, config);
  if (withProjection && config.method === 'ce') validate.fail('options.projection', 'false (a cross-entropy run has no projection head)', true);
  const linearDir = join(checkpointDir, RUN_FILES.linearClassifier);
  if (withClassifier && config.method !== 'ce' && !existsSync(join(linearDir, CHECKPOINT_FILES.model))) {
    throw new CheckpointError(
      linearDir,
      'no linear classifier yet (it is saved by the run\'s final evaluation): finish the run with `supcon train --resume`, or export without the classifier',
    );
  }

  const checkpointFile = join(checkpointDir, CHECKPOINT_FILES.model);
  const named = await readSavedWeights(checkpointDir);
  const built: tf.LayersModel[] = [];
  try {
    const encoder = plainEncoder(config, data, buildEncoder);
    built.push(encoder);
    assignNamedWeights(encoder, named, checkpointFile, { allowExtra: true });
    const featureDim = encoder.outputs[0].shape[1] as number;
    const image = tf.input({ shape: [data.height, data.width, data.channels], name: 'image' });
    const features = encoder.apply(image) as tf.SymbolicTensor;
    const outputs: tf.SymbolicTensor[] = [features];
    const described: ExportOutput[] = [
      { name: 'embedding', index: 0, shape: [null, featureDim], description: "encoder features after global average pooling (what linear evaluation and 'supcon embed' use)" },
    ];
    if (withProjection) {
      const head = createProjectionHead({ inputDim: featureDim, kind: config.projectionHead, outputDim: config.projectionDim });
      built.push(head);
      assignNamedWeights(head, named, checkpointFile, { allowExtra: true });
      // The head up to the layer feeding its L2Normalize: all standard layers.
      const l2 = head.layers.find((l) => l instanceof L2Normalize);
      if (l2 === undefined) throw new SupConError('The projection head has no L2Normalize layer to leave out', 'ERR_SUPCON_EXPORT');
      const body = tf.model({ inputs: head.inputs, outputs: l2.input as tf.SymbolicTensor, name: 'projection' });
      built.push(body);
      outputs.push(body.apply(features) as tf.SymbolicTensor);
      described.push({
        name: 'projection',
        index: described.length,
        shape: [null, config.projectionDim],
        description: "projection head output before its L2 normalization: divide each row by its L2 norm to get the training projection ('supcon embed --projection')",
      });
    }
    if (withClassifier) {
      const classifier = createLinearClassifier({ inputDim: featureDim, numClasses: data.numClasses });
      built.push(classifier);
      if (config.method === 'ce') assignNamedWeights(classifier, named, checkpointFile, { allowExtra: true });
      else {
        const linear = await readSavedWeights(linearDir);
        try {
          assignNamedWeights(classifier, linear, join(linearDir, CHECKPOINT_FILES.model), { allowExtra: false });
        } finally {
          tf.dispose(Object.values(linear));
        }
      }
      outputs.push(classifier.apply(features) as tf.SymbolicTensor);
      described.push({
        name: 'logits',
        index: described.length,
        shape: [null, data.numClasses],
        description: config.method === 'ce' ? 'class logits of the cross-entropy head (classNames order)' : 'class logits of the linear classifier trained on the frozen encoder (classNames order)',
      });
    }
    const exported = tf.model({ inputs: image, outputs: outputs.length === 1 ? outputs[0] : outputs, name: 'supcon_export' });
    built.push(exported);

    let topology: unknown;
    await exported.save({
      save: async (artifacts) => {
        topology = artifacts.modelTopology;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      },
    });
    const foreign = [...classNamesIn(topology)].filter((c) => !PLAIN_TFJS_CLASSES.has(c));
    if (foreign.length > 0) {
      throw new SupConError(
        `Cannot export ${checkpointDir}: the model would need class(es) ${foreign.join(', ')}, which plain tfjs does not have`,
        'ERR_SUPCON_EXPORT',
      );
    }

    const maxDifference = verify ? await compareWithCheckpoint(checkpointDir, exported, described, data, buildEncoder, withClassifier) : undefined;

    await mkdir(outDir, { recursive: true });
    await exported.save(fileIOHandler(outDir));
    const metadata: ExportMetadata = {
      format: 'supcon-native-export',
      version: 1,
      generatedBy: `supcon-native ${packageVersion()}`,
      model: 'model.json',
      input: {
        name: 'image',
        shape: [null, data.height, data.width, data.channels],
        height: data.height,
        width: data.width,
        channels: data.channels,
        normalization: { mean: [...data.normalization.mean], std: [...data.normalization.std] },
        preprocessing:
          `decode, turn upright (EXIF), resize the shorter side to ${data.height} px and center-crop to ${data.height}x${data.width}, ` +
          (data.channels === 1 ? 'convert to ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B), ' : 'keep RGB (drop alpha), ') +
          'divide by 255, then subtract mean and divide by std per channel; NHWC float32',
      },
      outputs: described,
      classNames: [...data.classNames],
      run: {
        checkpoint: resolve(checkpointDir),
        method: config.method,
        arch: config.arch,
        width: config.width,
        ...(config.stem === undefined ? {} : { stem: config.stem }),
        dataset: config.dataset,
        epochs: state.epoch,
        step: state.step,
      },
    };
    const metadataFile = join(outDir, 'metadata.json');
    await writeFile(metadataFile, JSON.stringify(metadata, null, 2) + '\n');
    return {
      dir: outDir,
      files: [join(outDir, CHECKPOINT_FILES.model), join(outDir, CHECKPOINT_FILES.weights), metadataFile],
      metadata,
      ...(maxDifference === undefined ? {} : { maxDifference }),
    };
  } finally {
    tf.dispose(Object.values(named));
    // The models share layers (and the outer ones nest the inner ones): dispose every weight once.
    const weights = new Set(built.flatMap((m) => m.weights));
    for (const w of weights) w.dispose();
  }
}

/**
 * Runs the export and the checkpoint's own models (as training builds them) on the same fixed
 * input and returns the largest difference; throws when it exceeds 1e-4 relative.
 */
async function compareWithCheckpoint(
  dir: string,
  exported: tf.LayersModel,
  outputs: ExportOutput[],
  data: RunDatasetInfo,
  buildEncoder: EncoderBuilder | undefined,
  withClassifier: boolean,
): Promise<number> {
  const opened = await openCheckpoint(dir, { fastKernels: false, ...(buildEncoder ? { buildEncoder } : {}) });
  const rng = new Rng(12345);
  const size = 4 * data.height * data.width * data.channels;
  const x = tf.tensor4d(Float32Array.from({ length: size }, () => rng.normal()), [4, data.height, data.width, data.channels]);
  let linear: tf.LayersModel | undefined;
  try {
    const mine = tf.tidy(() => {
      const y = exported.predict(x);
      return Array.isArray(y) ? y : [y];
    });
    const theirs: tf.Tensor[] = [];
    for (const out of outputs) {
      if (out.name === 'embedding') theirs.push(opened.models.encoder.predict(x) as tf.Tensor);
      else if (out.name === 'projection') {
        // The checkpoint's projection is L2-normalized: compare with the export's, normalized the same way.
        const i = out.index;
        const normalized = tf.tidy(() => tf.div(mine[i], tf.maximum(tf.norm(mine[i], 'euclidean', 1, true), 1e-12)));
        mine[i].dispose();
        mine[i] = normalized;
        theirs.push(opened.models.trainModel.predict(x) as tf.Tensor);
      } else if (opened.config.method === 'ce') theirs.push(opened.models.trainModel.predict(x) as tf.Tensor);
      else if (withClassifier) {
        linear = createLinearClassifier({ inputDim: opened.models.encoder.outputs[0].shape[1] as number, numClasses: data.numClasses });
        const weights = await readSavedWeights(join(dir, RUN_FILES.linearClassifier));
        try {
          assignNamedWeights(linear, weights, join(dir, RUN_FILES.linearClassifier, CHECKPOINT_FILES.model), { allowExtra: false });
        } finally {
          tf.dispose(Object.values(weights));
        }
        const linearModel = linear;
        theirs.push(tf.tidy(() => linearModel.predict(opened.models.encoder.predict(x) as tf.Tensor) as tf.Tensor));
      }
    }
    let worst = 0;
    try {
      outputs.forEach((out, i) => {
        const a = mine[i].dataSync();
        const b = theirs[i].dataSync();
        let scale = 1;
        for (let j = 0; j < b.length; j++) scale = Math.max(scale, Math.abs(b[j]));
        for (let j = 0; j < b.length; j++) worst = Math.max(worst, Math.abs(a[j] - b[j]) / scale);
        if (!(worst <= 1e-4)) {
          throw new SupConError(
            `Cannot export ${dir}: the exported '${out.name}' output differs from the checkpoint's by ${worst.toExponential(2)} (relative)`,
            'ERR_SUPCON_EXPORT',
          );
        }
      });
    } finally {
      tf.dispose([...mine, ...theirs]);
    }
    return worst;
  } finally {
    x.dispose();
    linear?.dispose();
    disposeRunModels(opened.models);
  }
}
