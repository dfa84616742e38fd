/**
 * Checkpoints on disk, in tfjs's standard layers-model format so that tfjs's own loaders read
 * them (`tf.loadLayersModel(fileIOHandler(dir))`):
 *
 *     model.json      topology + weights manifest          (LayersModel.save)
 *     weights.bin     the model's weights, float32
 *     optimizer.json  optimizer class and config + a weights manifest in the same format
 *     optimizer.bin   the optimizer's state (`Optimizer.getWeights()`: iterations, momentum)
 *     state.json      epoch, step, config, RNG positions, metrics: written last, it marks
 *                     a checkpoint as complete
 *
 * Weights are stored under their original (non-uniquified) names, e.g. `stem_conv/kernel`,
 * and optimizer slots as `<weight name>/momentum`, so a checkpoint loads into a model built in
 * another process. Every load checks names, shapes and byte counts and names the file and
 * the mismatch when something does not fit ({@link CheckpointError}).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { CheckpointError } from './errors';
import { MOMENTUM_SLOT_SUFFIX, type NamedTensor, type TrainOptimizer } from './optimizers';

/** File names inside a checkpoint directory. */
export const CHECKPOINT_FILES = Object.freeze({
  model: 'model.json',
  weights: 'weights.bin',
  optimizer: 'optimizer.json',
  optimizerWeights: 'optimizer.bin',
  state: 'state.json',
});

/** Format tag of optimizer.json. */
export const OPTIMIZER_FORMAT = 'supcon-optimizer-state';

type WeightsManifestEntry = tf.io.WeightsManifestEntry;
type WeightsManifest = Array<{ paths: string[]; weights: WeightsManifestEntry[] }>;

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

/** Bytes one manifest entry occupies in the binary file. */
function entryBytes(entry: WeightsManifestEntry, file: string): number {
  const dtype = entry.quantization?.dtype ?? entry.dtype;
  const size = DTYPE_BYTES[dtype];
  if (size === undefined) throw new CheckpointError(file, `weight '${entry.name}' has unsupported dtype '${dtype}'`);
  return size * entry.shape.reduce((a, b) => a * b, 1);
}

function toBuffer(data: ArrayBuffer | ArrayBuffer[]): Buffer {
  return Array.isArray(data) ? Buffer.concat(data.map((d) => Buffer.from(d))) : Buffer.from(data);
}

/** Writes a file under a temporary name and renames it into place, so readers never see half a file. */
async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CheckpointError(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CheckpointError(path, 'not a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * Reads the weights a JSON file's `weightsManifest` lists (paths relative to `dir`) and checks
 * their byte counts. Returns the specs and the concatenated data.
 */
async function readManifestWeights(
  dir: string,
  jsonFile: string,
  json: Record<string, unknown>,
): Promise<{ specs: WeightsManifestEntry[]; data: ArrayBuffer }> {
  const jsonPath = join(dir, jsonFile);
  const manifest = json.weightsManifest as WeightsManifest | undefined;
  if (!Array.isArray(manifest) || manifest.some((g) => !g || !Array.isArray(g.paths) || !Array.isArray(g.weights))) {
    throw new CheckpointError(jsonPath, "has no valid 'weightsManifest' (a list of { paths, weights })");
  }
  const specs: WeightsManifestEntry[] = [];
  const chunks: Buffer[] = [];
  for (const group of manifest) {
    const groupChunks: Buffer[] = [];
    for (const file of group.paths) {
      const path = join(dir, file);
      try {
        groupChunks.push(await readFile(path));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new CheckpointError(path, code === 'ENOENT' ? `no such file (listed in ${jsonFile})` : (e as Error).message);
      }
    }
    const expected = group.weights.reduce((sum, w) => sum + entryBytes(w, jsonPath), 0);
    const actual = groupChunks.reduce((sum, c) => sum + c.length, 0);
    if (actual !== expected) {
      const files = group.paths.map((p) => join(dir, p)).join(' + ');
      throw new CheckpointError(
        files,
        `holds ${actual} bytes but ${jsonFile} lists weights totalling ${expected} bytes (${
          actual < expected ? 'truncated' : 'longer than listed'
        }; was it written by another model or cut short?)`,
      );
    }
    specs.push(...group.weights);
    chunks.push(...groupChunks);
  }
  const joined = Buffer.concat(chunks);
  return { specs, data: joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer };
}

/** Options of {@link fileIOHandler}. */
export interface FileIOHandlerOptions {
  /** Name of the JSON file (default 'model.json'). */
  modelFile?: string;
  /** Name of the binary weights file (default 'weights.bin'). */
  weightsFile?: string;
}

/**
 * A tfjs IOHandler that saves to and loads from a directory with node:fs (tfjs's `file://`
 * handler needs tfjs-node). Use it with `model.save(fileIOHandler(dir))` and
 * `tf.loadLayersModel(fileIOHandler(dir))`. Files are written atomically.
 */
export function fileIOHandler(dir: string, options: FileIOHandlerOptions = {}): tf.io.IOHandler {
  validate.string('dir', dir);
  const o = validate.options('options', options, ['modelFile', 'weightsFile']);
  const modelFile = o.modelFile === undefined ? CHECKPOINT_FILES.model : validate.string('options.modelFile', o.modelFile);
  const weightsFile = o.weightsFile === undefined ? CHECKPOINT_FILES.weights : validate.string('options.weightsFile', o.weightsFile);
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new CheckpointError(join(dir, modelFile), 'cannot save a binary (GraphDef) topology; only layers models');
      }
      await mkdir(dir, { recursive: true });
      const weights = toBuffer(artifacts.weightData ?? new ArrayBuffer(0));
      const modelJson: Record<string, unknown> = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [weightsFile], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.trainingConfig !== undefined) modelJson.trainingConfig = artifacts.trainingConfig;
      if (artifacts.userDefinedMetadata !== undefined) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
      const text = JSON.stringify(modelJson);
      await writeAtomic(join(dir, weightsFile), weights);
      await writeAtomic(join(dir, modelFile), text);
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: Buffer.byteLength(JSON.stringify(artifacts.modelTopology ?? null)),
          weightSpecsBytes: Buffer.byteLength(JSON.stringify(artifacts.weightSpecs ?? [])),
          weightDataBytes: weights.length,
        },
      };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const json = await readJson(join(dir, modelFile));
      if (json.modelTopology === undefined) throw new CheckpointError(join(dir, modelFile), "has no 'modelTopology'");
      const { specs, data } = await readManifestWeights(dir, modelFile, json);
      const artifacts: tf.io.ModelArtifacts = {
        modelTopology: json.modelTopology as object,
        weightSpecs: specs,
        weightData: data,
      };
      if (typeof json.format === 'string') artifacts.format = json.format;
      if (typeof json.generatedBy === 'string') artifacts.generatedBy = json.generatedBy;
      if (typeof json.convertedBy === 'string') artifacts.convertedBy = json.convertedBy;
      if (json.trainingConfig !== undefined) artifacts.trainingConfig = json.trainingConfig as tf.io.TrainingConfig;
      if (json.userDefinedMetadata !== undefined) artifacts.userDefinedMetadata = json.userDefinedMetadata as Record<string, {}>;
      return artifacts;
    },
  };
}

/** Saves a model's topology and weights into `dir` (model.json + weights.bin). */
export async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
  await model.save(fileIOHandler(dir));
}

/** Decodes manifest weights; names must be unique. */
function decodeNamed(path: string, specs: WeightsManifestEntry[], data: ArrayBuffer): tf.NamedTensorMap {
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new CheckpointError(path, `lists weight '${s.name}' twice`);
    seen.add(s.name);
  }
  return tf.io.decodeWeights(data, specs);
}

const shapeText = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/**
 * Loads the weights saved in `dir` (model.json + weights.bin) into `model`, matching them by
 * name. Every weight of the model must be present with the same shape, and the checkpoint may
 * hold no others.
 * @throws {@link CheckpointError} naming the file and the first mismatch.
 */
export async function loadWeightsInto(model: tf.LayersModel, dir: string, modelFile: string = CHECKPOINT_FILES.model): Promise<void> {
  const path = join(dir, modelFile);
  const named = await readSavedWeights(dir, modelFile);
  try {
    assignNamedWeights(model, named, path, { allowExtra: false });
  } finally {
    tf.dispose(Object.values(named));
  }
}

/**
 * The weights saved in `dir` (model.json + weights.bin) by their original names, e.g.
 * `stem_conv/kernel`, without building the model they came from. The caller disposes them.
 * @throws {@link CheckpointError} naming the file when it is missing, corrupt or truncated.
 */
export async function readSavedWeights(dir: string, modelFile: string = CHECKPOINT_FILES.model): Promise<tf.NamedTensorMap> {
  const path = join(dir, modelFile);
  const json = await readJson(path);
  const { specs, data } = await readManifestWeights(dir, modelFile, json);
  return decodeNamed(path, specs, data);
}

/**
 * Writes `named` tensors into the weights of `model` with the same original names. Every weight
 * of the model must be there with its shape; with `allowExtra: false` nothing else may be.
 * @param path The file `named` came from, for messages.
 * @throws {@link CheckpointError} naming the file and the first mismatch.
 */
export function assignNamedWeights(model: tf.LayersModel, named: tf.NamedTensorMap, path: string, options: { allowExtra: boolean }): void {
  const weights = model.weights;
  const modelNames = new Set(weights.map((w) => w.originalName));
  for (const w of weights) {
    const saved = named[w.originalName];
    if (saved === undefined) {
      throw new CheckpointError(
        path,
        `has no weight '${w.originalName}' that the model '${model.name}' has (was it saved from a different architecture?)`,
      );
    }
    if (!tf.util.arraysEqual(saved.shape, w.shape as number[])) {
      throw new CheckpointError(
        path,
        `weight '${w.originalName}' has shape ${shapeText(saved.shape)} in the checkpoint but ${shapeText(
          w.shape as number[],
        )} in the model '${model.name}' (a different architecture or width?)`,
      );
    }
  }
  const extra = Object.keys(named).filter((n) => !modelNames.has(n));
  if (extra.length > 0 && !options.allowExtra) {
    throw new CheckpointError(
      path,
      `holds ${extra.length} weight(s) the model '${model.name}' does not have, e.g. '${extra[0]}' (a different architecture?)`,
    );
  }
  for (const w of weights) w.write(named[w.originalName]);
}

/** Maps the model's variable names (unique per process) to its weights' original names and back. */
function weightNameMaps(model: tf.LayersModel): { toOriginal: Map<string, string>; toVariable: Map<string, tf.Variable> } {
  const toOriginal = new Map<string, string>();
  const toVariable = new Map<string, tf.Variable>();
  for (const w of model.weights) {
    toOriginal.set(w.name, w.originalName);
    toVariable.set(w.originalName, w.read() as tf.Variable);
  }
  return { toOriginal, toVariable };
}

/** The class name tfjs's registry knows an optimizer by. */
function optimizerClassName(optimizer: tf.Optimizer): string {
  return (optimizer.constructor as unknown as { className: string }).className;
}

/** The optimizer's state with slot names rewritten to the model's original weight names. */
async function optimizerStateByWeightName(optimizer: TrainOptimizer, model: tf.LayersModel): Promise<NamedTensor[]> {
  const { toOriginal } = weightNameMaps(model);
  const state = await optimizer.getWeights();
  return state.map(({ name, tensor }) => {
    if (!name.endsWith(MOMENTUM_SLOT_SUFFIX)) return { name, tensor };
    const variable = name.slice(0, -MOMENTUM_SLOT_SUFFIX.length);
    const original = toOriginal.get(variable);
    if (original === undefined) {
      throw new CheckpointError(
        '(optimizer state)',
        `the optimizer holds momentum for variable '${variable}', which is not a weight of the model '${model.name}'`,
      );
    }
    return { name: original + MOMENTUM_SLOT_SUFFIX, tensor };
  });
}

/** The files of an optimizer's state: optimizer.json and the bytes of optimizer.bin. */
async function encodeOptimizerState(optimizer: TrainOptimizer, model: tf.LayersModel): Promise<{ json: string; data: Buffer }> {
  const state = await optimizerStateByWeightName(optimizer, model);
  const { data, specs } = await tf.io.encodeWeights(state, 'optimizer');
  // getWeights() made a new 'iter' scalar; the slots are the optimizer's own variables.
  for (const { name, tensor } of state) if (name === 'iter') tensor.dispose();
  const json = {
    format: OPTIMIZER_FORMAT,
    generatedBy: 'supcon-native',
    optimizer: { className: optimizerClassName(optimizer), config: optimizer.getConfig() },
    iterations: optimizer.iterations,
    weightsManifest: [{ paths: [CHECKPOINT_FILES.optimizerWeights], weights: specs }],
  };
  return { json: JSON.stringify(json), data: toBuffer(data) };
}

/** Saves an optimizer's state into `dir` (optimizer.json + optimizer.bin). */
export async function saveOptimizerState(optimizer: TrainOptimizer, model: tf.LayersModel, dir: string): Promise<void> {
  const { json, data } = await encodeOptimizerState(optimizer, model);
  await mkdir(dir, { recursive: true });
  await writeAtomic(join(dir, CHECKPOINT_FILES.optimizerWeights), data);
  await writeAtomic(join(dir, CHECKPOINT_FILES.optimizer), json);
}

/**
 * Restores an optimizer's state saved by {@link saveOptimizerState} for the same model.
 * @throws {@link CheckpointError} when the file is missing or corrupt, was written by another
 *   optimizer class, or holds state for weights the model does not have (or of other shapes).
 */
export async function loadOptimizerState(optimizer: TrainOptimizer, model: tf.LayersModel, dir: string): Promise<void> {
  const path = join(dir, CHECKPOINT_FILES.optimizer);
  const json = await readJson(path);
  if (json.format !== OPTIMIZER_FORMAT) {
    throw new CheckpointError(path, `has format ${JSON.stringify(json.format)} but '${OPTIMIZER_FORMAT}' was expected`);
  }
  const saved = (json.optimizer as { className?: unknown } | undefined)?.className;
  const expected = optimizerClassName(optimizer);
  if (saved !== expected) {
    throw new CheckpointError(path, `holds the state of optimizer ${JSON.stringify(saved)} but the run uses '${expected}'`);
  }
  const { specs, data } = await readManifestWeights(dir, CHECKPOINT_FILES.optimizer, json);
  const named = decodeNamed(path, specs, data);
  try {
    const { toVariable } = weightNameMaps(model);
    const state: NamedTensor[] = [];
    if (named.iter === undefined) throw new CheckpointError(path, "has no 'iter' (iteration count) entry");
    state.push({ name: 'iter', tensor: named.iter });
    for (const spec of specs) {
      if (spec.name === 'iter') continue;
      if (!spec.name.endsWith(MOMENTUM_SLOT_SUFFIX)) {
        throw new CheckpointError(path, `holds an unknown entry '${spec.name}' (expected '<weight>${MOMENTUM_SLOT_SUFFIX}')`);
      }
      const weightName = spec.name.slice(0, -MOMENTUM_SLOT_SUFFIX.length);
      const variable = toVariable.get(weightName);
      if (variable === undefined) {
        throw new CheckpointError(path, `holds momentum for weight '${weightName}', which the model '${model.name}' does not have`);
      }
      const tensor = named[spec.name];
      if (!tf.util.arraysEqual(tensor.shape, variable.shape)) {
        throw new CheckpointError(
          path,
          `momentum of '${weightName}' has shape ${shapeText(tensor.shape)} but the weight has shape ${shapeText(variable.shape)}`,
        );
      }
      state.push({ name: variable.name + MOMENTUM_SLOT_SUFFIX, tensor });
    }
    await optimizer.setWeights(state);
  } finally {
    tf.dispose(Object.values(named));
  }
}

/** Reads a JSON file of a checkpoint, with errors naming it. */
export async function readCheckpointJson(path: string): Promise<Record<string, unknown>> {
  return readJson(path);
}

/** Writes JSON atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeAtomic(path, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Saves a whole checkpoint: model, optimizer, then `state` as state.json. Every file is first
 * written under a temporary name, then all are renamed into place with state.json last: a
 * crash can only leave a mixed checkpoint during those few renames.
 */
export async function saveCheckpoint(
  dir: string,
  parts: { model: tf.LayersModel; optimizer: TrainOptimizer; state: unknown },
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const staged: Array<[string, string | Uint8Array]> = [];
  let modelArtifacts: tf.io.ModelArtifacts | undefined;
  await parts.model.save({
    save: async (artifacts: tf.io.ModelArtifacts) => {
      modelArtifacts = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
  });
  const artifacts = modelArtifacts!;
  staged.push([CHECKPOINT_FILES.weights, toBuffer(artifacts.weightData ?? new ArrayBuffer(0))]);
  staged.push([
    CHECKPOINT_FILES.model,
    JSON.stringify({
      modelTopology: artifacts.modelTopology,
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy ?? null,
      weightsManifest: [{ paths: [CHECKPOINT_FILES.weights], weights: artifacts.weightSpecs ?? [] }],
    }),
  ]);
  const optimizerFiles = await encodeOptimizerState(parts.optimizer, parts.model);
  staged.push([CHECKPOINT_FILES.optimizerWeights, optimizerFiles.data]);
  staged.push([CHECKPOINT_FILES.optimizer, optimizerFiles.json]);
  staged.push([CHECKPOINT_FILES.state, JSON.stringify(parts.state, null, 2) + '\n']);
  const tmp = (name: string) => join(dir, `${name}.tmp-${process.pid}`);
  for (const [name, data] of staged) await writeFile(tmp(name), data);
  for (const [name] of staged) await rename(tmp(name), join(dir, name));
}

/** True when `dir` holds a state.json (a completed checkpoint save). */
export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, CHECKPOINT_FILES.state));
}
