/**
 * The training loop: SupCon / SimCLR pre-training on `config.views` augmented views of every
 * image (two by default; or the cross-entropy baseline on one), a kNN monitor after every epoch, checkpoints, resume, and
 * the final evaluation (linear evaluation of the frozen encoder, or the CE head's accuracy).
 *
 * Reproducibility: the shuffle of epoch e is `epochOrder(count, { seed, epoch: e })` and the
 * augmentation of batch b of epoch e draws from `Rng([seed, 4, e, b])`, so the random state at
 * any step is a function of (seed, epoch, batch): a checkpoint stores those three numbers, and a
 * resumed run repeats exactly the steps an uninterrupted one would have taken.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError, SupConError } from '../errors';
import { supConLoss } from '../loss/op';
import type { LabelsLike } from '../loss/tensor_inputs';
import {
  augmentOptionsFor,
  augmentView,
  batchCount,
  batchOf,
  epochOrder,
  gatherLabelSets,
  loadDataset,
  normalize,
  Rng,
  type ImageDataset,
  type ResolvedAugmentOptions,
} from '../data';
import { CHECKPOINT_FILES, hasCheckpoint, loadOptimizerState, loadWeightsInto, saveCheckpoint, saveModel } from './checkpoint';
import { resolveTrainConfig, type TrainConfig } from './config';
import { CheckpointError } from './errors';
import { enableFastKernels } from './fast_kernels';
import { accuracyOfLogits, firstRecords, predictDataset } from './features';
import { knnAccuracy } from './knn';
import { linearEvaluation } from './linear_eval';
import { JsonlMetricsSink, type EpochRecord, type MetricsSink, type ResultRecord } from './metrics';
import { createOptimizer, type TrainOptimizer } from './optimizers';
import { buildRunModels, derivedSeed, disposeRunModels, SEED_STREAMS, type EncoderBuilder, type RunModels } from './run_models';
import { loadConfigSplit, writeRunDataset, type DataHooks } from './run_dataset';
import { readTrainingState, RUN_FILES, STATE_FORMAT, type TrainCallbacks, type TrainingState } from './run_state';
import { chunkedGradients } from './grad_cache';
import { decodeQueue, encodeQueue, MemoryQueue, QUEUE_FILE, type QueueLabelSets } from './queue';
import { cosineWithWarmup, type LearningRateSchedule } from './schedule';
import { TensorBoardSink, TENSORBOARD_DIR } from './tensorboard';
import { checkSyncBatchNormAvailable, joinDataParallel, type DataParallel } from './distributed';

/** Options of {@link trainRun} and {@link resumeRun}. */
export interface TrainRunOptions {
  /** The run directory: checkpoint, metrics.jsonl, result.json. */
  outDir: string;
  /** Stop after the current step, save a checkpoint and return `status: 'interrupted'`. */
  signal?: AbortSignal;
  callbacks?: TrainCallbacks;
  /** Builds the encoder when the config's arch is 'custom'. */
  buildEncoder?: EncoderBuilder;
  /** Datasets to use instead of loading `config.dataset` (limits still apply). */
  datasets?: { train: ImageDataset; test: ImageDataset };
  /** Register the native tfjs kernels when available (default true). */
  fastKernels?: boolean;
  /** Write TensorBoard event and projector files into `outDir/tensorboard` (default true). */
  tensorboard?: boolean;
}

/** How a run ended. */
export interface TrainRunResult {
  status: 'complete' | 'interrupted';
  outDir: string;
  config: TrainConfig;
  /** Epochs completed. */
  epochs: number;
  step: number;
  metrics: EpochRecord[];
  /** The final evaluation (status 'complete'; on rank 0 of a data-parallel run). */
  result?: ResultRecord;
  /** This process's rank and the number of processes (0 and 1 unless data-parallel). */
  rank: number;
  worldSize: number;
}

const TRAIN_OPTION_KEYS = ['outDir', 'signal', 'callbacks', 'buildEncoder', 'datasets', 'fastKernels', 'tensorboard'] as const;

/**
 * Trains a new run in `options.outDir` (which must not hold a checkpoint yet) and evaluates it.
 *
 * Started by an MPI launcher with K > 1 processes (mpirun -np K, srun), every process calls it
 * with the same config and the run is data-parallel (docs/distributed.md): `batchSize` is the
 * global batch, rank 0 writes `outDir` and evaluates, and MPI is finalized when it returns (one
 * run per process). Without MPI compiled that throws MpiError ERR_SUPCON_NO_MPI.
 *
 * ```ts
 * const run = await trainRun({ method: 'supcon', epochs: 5 }, { outDir: 'runs/a' });
 * console.log(run.result?.testAccuracy);
 * ```
 */
export async function trainRun(config: Partial<TrainConfig>, options: TrainRunOptions): Promise<TrainRunResult> {
  const resolved = resolveTrainConfig(config);
  const opts = checkRunOptions(options);
  if (existsSync(opts.outDir) && !statSync(opts.outDir).isDirectory()) {
    throw new InvalidArgumentError('options.outDir', 'a directory, or a path to create one at', `${opts.outDir}, which is a file`);
  }
  if (hasCheckpoint(opts.outDir)) {
    throw new InvalidArgumentError(
      'options.outDir',
      'a directory without a checkpoint (resume an existing run instead)',
      `${opts.outDir}, which holds ${CHECKPOINT_FILES.state}`,
    );
  }
  const dp = joinDataParallel();
  return asDataParallel(dp, () => runTraining(resolved, opts, undefined, dp));
}

/**
 * Continues the run saved in `options.outDir` where its checkpoint left it: at the next batch
 * of an interrupted epoch, or at the next epoch, with the same schedule. A run whose training
 * is done but whose evaluation is missing is evaluated; a finished run returns its result.
 * @param overrides Settings that may change between sessions (only `dataDir`).
 */
export async function resumeRun(options: TrainRunOptions, overrides: Pick<Partial<TrainConfig>, 'dataDir'> = {}): Promise<TrainRunResult> {
  const opts = checkRunOptions(options);
  const o = validate.options('overrides', overrides, ['dataDir']);
  const dp = joinDataParallel();
  return asDataParallel(dp, async () => {
    // Data-parallel: rank 0 reads the checkpoint and sends it (the others may not see its disk).
    const state = dp ? dp.broadcastJson(dp.isRoot ? await readTrainingState(opts.outDir) : undefined) : await readTrainingState(opts.outDir);
    const config = resolveTrainConfig({ ...state.config, ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir as string }) });
    return runTraining(config, opts, state, dp);
  });
}

/**
 * Runs a training session; data-parallel, finalizes MPI after it (every rank waits for rank 0's
 * evaluation), and on an error on this rank reports it and ends every rank (MPI_Abort) rather
 * than leaving the others waiting in a collective.
 */
async function asDataParallel(dp: DataParallel | null, run: () => Promise<TrainRunResult>): Promise<TrainRunResult> {
  if (!dp) return run();
  let result: TrainRunResult;
  try {
    result = await run();
  } catch (e) {
    process.stderr.write(`supcon train [rank ${dp.rank} of ${dp.size}]: ${(e as Error).message ?? String(e)}; stopping every rank\n`);
    dp.abort(1);
    throw e;
  }
  dp.close();
  return result;
}

function checkRunOptions(options: TrainRunOptions): TrainRunOptions {
  const o = validate.options('options', options, TRAIN_OPTION_KEYS);
  const outDir = resolvePath(validate.string('options.outDir', o.outDir));
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) validate.fail('options.signal', 'an AbortSignal', o.signal);
  if (o.buildEncoder !== undefined && typeof o.buildEncoder !== 'function') validate.fail('options.buildEncoder', 'a function', o.buildEncoder);
  if (o.fastKernels !== undefined) validate.boolean('options.fastKernels', o.fastKernels);
  if (o.tensorboard !== undefined) validate.boolean('options.tensorboard', o.tensorboard);
  return { ...(options as TrainRunOptions), outDir };
}

/** Loads the train and test splits of a config, with its limits applied. */
export async function loadRunDatasets(
  config: TrainConfig,
  given?: { train: ImageDataset; test: ImageDataset },
  hooks: DataHooks = {},
): Promise<{ train: ImageDataset; test: ImageDataset }> {
  const load = (split: 'train' | 'test') => loadConfigSplit(config, split, hooks);
  const train = given ? given.train : await load('train');
  const test = given ? given.test : await load('test');
  return { train: firstRecords(train, config.limitTrain), test: firstRecords(test, config.limitTest) };
}

/** Everything the loop needs, built once per session. */
interface Session {
  config: TrainConfig;
  outDir: string;
  train: ImageDataset;
  test: ImageDataset;
  models: RunModels;
  optimizer: TrainOptimizer;
  variables: tf.Variable[];
  schedule: LearningRateSchedule;
  /** The augmentation's preset name (or 'custom') and options. */
  augmentation: { name: string; options: ResolvedAugmentOptions };
  batchSize: number;
  stepsPerEpoch: number;
  callbacks: TrainCallbacks;
  signal?: AbortSignal;
  tensorboard: boolean;
  /** The data-parallel job, or null for one process. */
  dp: DataParallel | null;
  /** The cross-batch memory (config.queueSize > 0). */
  queue?: MemoryQueue;
}

async function runTraining(
  config: TrainConfig,
  options: TrainRunOptions,
  state: TrainingState | undefined,
  dp: DataParallel | null,
): Promise<TrainRunResult> {
  if (config.syncBatchNorm) checkSyncBatchNormAvailable();
  const worldSize = dp ? dp.size : 1;
  if (state !== undefined && (state.worldSize ?? 1) !== worldSize) {
    throw new CheckpointError(
      join(options.outDir, CHECKPOINT_FILES.state),
      `was saved by a run of ${state.worldSize ?? 1} process(es) but this one has ${worldSize}: resume it with as many (mpirun -np ${state.worldSize ?? 1})`,
    );
  }
  const kernels = options.fastKernels === false ? [] : enableFastKernels();
  const outDir = options.outDir;
  const { train, test } = await loadRunDatasets(config, options.datasets, options.callbacks);
  if (train.count < 2) throw new InvalidArgumentError('config.limitTrain', 'at least 2 training images', `${train.count}`);
  // Not yet combined with data-parallel training: a rank's queue, chunks or label sets would need
  // the distributed loss to take them.
  if (dp) {
    for (const key of ['queueSize', 'chunkSize'] as const) {
      if (config[key] > 0) throw new InvalidArgumentError(`config.${key}`, '0 in a data-parallel run', `${config[key]}`);
    }
    if (train.labelSets) throw new InvalidArgumentError('config.labelsCsv', 'no label sets in a data-parallel run', 'a multi-label dataset');
  }
  if (state !== undefined && (state.trainCount !== train.count || state.testCount !== test.count)) {
    throw new CheckpointError(
      join(outDir, CHECKPOINT_FILES.state),
      `was saved for ${state.trainCount} training / ${state.testCount} test images, but the dataset now gives ${train.count} / ${test.count}`,
    );
  }
  const models = buildRunModels(config, [train.height, train.width, train.channels], train.numClasses, options.buildEncoder);
  if (config.syncBatchNorm) checkSyncableBatchNorm(models.trainModel);
  const batchSize = Math.min(config.batchSize, train.count);
  const stepsPerEpoch = batchCount(train.count, batchSize, true);
  const optimizer = createOptimizer(config.optimizer, {
    learningRate: config.lr,
    momentum: config.momentum,
    weightDecay: config.weightDecay,
  });
  const session: Session = {
    config,
    outDir,
    train,
    test,
    models,
    optimizer,
    variables: models.trainModel.trainableWeights.map((w) => w.read() as tf.Variable),
    schedule: cosineWithWarmup({
      baseLr: config.lr,
      totalSteps: config.epochs * stepsPerEpoch,
      warmupSteps: config.warmupEpochs * stepsPerEpoch,
    }),
    augmentation: augmentOptionsFor(config.augment, train),
    batchSize,
    stepsPerEpoch,
    callbacks: options.callbacks ?? {},
    ...(options.signal ? { signal: options.signal } : {}),
    tensorboard: options.tensorboard !== false,
    dp,
  };
  const writer = !dp || dp.isRoot; // rank 0 alone reads and writes the run directory
  try {
    if (config.queueSize > 0) {
      const labeled = config.method === 'supcon';
      session.queue = new MemoryQueue(config.queueSize, config.projectionDim, labeled, labeled ? (train.labelSets?.numLabels ?? 0) : 0);
    }
    if (state !== undefined) {
      if (writer) {
        await loadWeightsInto(models.trainModel, outDir);
        await loadOptimizerState(optimizer, models.trainModel, outDir);
      }
      if (session.queue) session.queue = await loadQueue(outDir, state, session.queue);
      if (state.stepsPerEpoch !== stepsPerEpoch) {
        throw new CheckpointError(join(outDir, CHECKPOINT_FILES.state), `has ${state.stepsPerEpoch} steps per epoch but the run now has ${stepsPerEpoch}`);
      }
    } else if (writer) {
      await mkdir(outDir, { recursive: true });
    }
    if (writer && (state === undefined || !existsSync(join(outDir, RUN_FILES.dataset)))) await writeRunDataset(outDir, train);
    if (dp) {
      // Every rank starts from rank 0's weights and optimizer state.
      dp.broadcastWeights(models.trainModel);
      await dp.broadcastOptimizer(optimizer);
    }
    return await loop(session, state, kernels);
  } finally {
    dp?.setSyncBatchNorm(false);
    optimizer.dispose();
    disposeRunModels(models);
  }
}

/**
 * Synchronized batch norm reaches the fused ConvBatchNorm layers only: a model with tfjs's own
 * BatchNormalization layers (an encoder built with fused: false, a custom one) is refused.
 */
function checkSyncableBatchNorm(model: tf.LayersModel): void {
  const plain: string[] = [];
  const visit = (layer: tf.layers.Layer) => {
    if (layer.getClassName() === 'BatchNormalization') plain.push(layer.name);
    for (const inner of (layer as { layers?: tf.layers.Layer[] }).layers ?? []) visit(inner);
  };
  model.layers.forEach(visit);
  if (plain.length > 0) {
    throw new InvalidArgumentError(
      'config.syncBatchNorm',
      'an encoder of ConvBatchNorm layers (the fused default) for synchronized batch norm',
      `a model with tfjs BatchNormalization layers (${plain.slice(0, 3).join(', ')}${plain.length > 3 ? ', ...' : ''})`,
    );
  }
}

function initialState(s: Session): TrainingState {
  return {
    format: STATE_FORMAT,
    version: 1,
    config: s.config,
    epoch: 0,
    batch: 0,
    step: 0,
    stepsPerEpoch: s.stepsPerEpoch,
    trainCount: s.train.count,
    testCount: s.test.count,
    ...(s.dp ? { worldSize: s.dp.size } : {}),
    rng: rngPosition(s.config.seed, 0, 0),
    partialEpoch: { lossSum: 0, steps: 0, seconds: 0, images: 0 },
    metrics: [],
    pretrainingDone: false,
    savedAt: new Date().toISOString(),
  };
}

function rngPosition(seed: number, epoch: number, batch: number): TrainingState['rng'] {
  return {
    seed,
    epoch,
    batch,
    shuffle: 'epochOrder(count, { seed, epoch })',
    augmentation: `Rng([seed, ${SEED_STREAMS.augmentation}, epoch, batch])`,
  };
}

async function checkpoint(s: Session, state: TrainingState): Promise<void> {
  if (s.dp && !s.dp.isRoot) return; // rank 0 alone writes
  s.callbacks.onPhase?.('checkpoint', s.outDir);
  state.rng = rngPosition(s.config.seed, state.epoch, state.batch);
  state.savedAt = new Date().toISOString();
  const files: Array<[string, Uint8Array]> = [];
  if (s.queue) {
    const { info, data } = encodeQueue(s.queue);
    state.queue = info;
    files.push([QUEUE_FILE, data]);
  }
  await saveCheckpoint(s.outDir, { model: s.models.trainModel, optimizer: s.optimizer, state, files });
}

/** The queue of a checkpoint (queue.bin, described by state.queue), checked against the run's. */
async function loadQueue(dir: string, state: TrainingState, fresh: MemoryQueue): Promise<MemoryQueue> {
  const path = join(dir, QUEUE_FILE);
  const info = state.queue;
  if (!info || info.size !== fresh.size || info.dim !== fresh.dim || info.labeled !== fresh.labeled || (info.numLabels ?? 0) !== fresh.numLabels) {
    throw new CheckpointError(
      join(dir, CHECKPOINT_FILES.state),
      `describes ${info ? `a queue of ${info.size} rows of ${info.dim}` : 'no memory queue'} but the run has one of ${fresh.size} rows of ${fresh.dim}`,
    );
  }
  let data: Uint8Array;
  try {
    data = await readFile(path);
  } catch (e) {
    throw new CheckpointError(path, `cannot be read: ${(e as Error).message}`);
  }
  try {
    return decodeQueue(info, data, path);
  } catch (e) {
    throw new CheckpointError(path, (e as Error).message);
  }
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function loop(s: Session, restored: TrainingState | undefined, kernels: string[]): Promise<TrainRunResult> {
  const { config } = s;
  const state = restored ?? initialState(s);
  // Every record goes to every sink: metrics.jsonl, and TensorBoard unless turned off.
  const writer = !s.dp || s.dp.isRoot; // data-parallel: rank 0 alone writes metrics and evaluates
  const board = writer && s.tensorboard ? new TensorBoardSink(join(s.outDir, RUN_FILES.tensorboard), state.step) : undefined;
  const sinks: MetricsSink[] = writer ? [new JsonlMetricsSink(join(s.outDir, RUN_FILES.metrics)), ...(board ? [board] : [])] : [];
  const finish = (status: 'complete' | 'interrupted'): TrainRunResult => ({
    status,
    outDir: s.outDir,
    config,
    epochs: state.epoch,
    step: state.step,
    metrics: state.metrics,
    ...(state.result ? { result: state.result } : {}),
    rank: s.dp?.rank ?? 0,
    worldSize: s.dp?.size ?? 1,
  });
  s.callbacks.onStart?.({
    config,
    outDir: s.outDir,
    resumed: restored !== undefined,
    epoch: state.epoch,
    batch: state.batch,
    stepsPerEpoch: s.stepsPerEpoch,
    trainCount: s.train.count,
    testCount: s.test.count,
    parameters: s.models.trainModel.countParams(),
    fastKernels: kernels,
    augmentation: s.augmentation.name,
    worldSize: s.dp?.size ?? 1,
  });
  if (state.result) return finish('complete');

  const contrastive = config.method !== 'ce';
  let savedOnRequest = -1; // the step rank 0 saved at on a stop request of its own
  const imagesPerStep = s.batchSize * (contrastive ? config.views : 1);
  while (state.epoch < config.epochs) {
    const epoch = state.epoch;
    const order = epochOrder(s.train.count, { seed: config.seed, epoch });
    s.callbacks.onEpochStart?.(epoch, state.batch, s.stepsPerEpoch);
    let lr = s.schedule(Math.max(0, state.step - 1));
    while (state.batch < s.stepsPerEpoch) {
      // Data-parallel: stop where every rank agreed to (a rank's request travels with the step).
      if (s.dp ? s.dp.stopRequested : s.signal?.aborted) {
        await checkpoint(s, state);
        return finish('interrupted');
      }
      // Data-parallel: rank 0, itself asked to stop, saves at once (after a step every rank holds
      // the same weights), before the ranks agree: a launcher that kills the job soon after its
      // SIGTERM (Open MPI's mpirun after a second) then still leaves this step's checkpoint.
      if (s.dp?.isRoot && s.signal?.aborted && savedOnRequest !== state.step) {
        await checkpoint(s, state);
        savedOnRequest = state.step;
      }
      const b = state.batch;
      lr = s.schedule(state.step);
      s.optimizer.learningRate = lr;
      const started = performance.now();
      // Data-parallel: this rank's shard of the global batch, augmented from its own stream.
      const records = order.subarray(b * s.batchSize, (b + 1) * s.batchSize);
      const stream = [config.seed, SEED_STREAMS.augmentation, epoch, b, ...(s.dp ? [s.dp.rank] : [])];
      const loss = trainStep(s, s.dp ? s.dp.shard(records) : records, new Rng(stream));
      const seconds = (performance.now() - started) / 1000;
      if (!Number.isFinite(loss)) {
        throw new SupConError(
          `Training diverged: the loss is ${loss} at epoch ${epoch + 1}, step ${state.step + 1} (learning rate ${lr}); ` +
            `lower --lr or raise --warmup-epochs. The last checkpoint in ${s.outDir} is intact.`,
          'ERR_SUPCON_DIVERGED',
        );
      }
      state.step += 1;
      state.batch += 1;
      const p = state.partialEpoch;
      p.lossSum += loss;
      p.steps += 1;
      p.seconds += seconds;
      p.images += imagesPerStep;
      s.callbacks.onStep?.({
        epoch,
        batch: b,
        stepsPerEpoch: s.stepsPerEpoch,
        step: state.step,
        loss,
        lr,
        imagesPerSecond: p.images / Math.max(p.seconds, 1e-9),
        seconds,
      });
      await nextTick(); // lets a SIGINT handler run between steps
    }
    const knn = writer ? knnMonitor(s) : undefined;
    const p = state.partialEpoch;
    const record: EpochRecord = {
      type: 'epoch',
      epoch: epoch + 1,
      epochs: config.epochs,
      step: state.step,
      loss: p.steps > 0 ? p.lossSum / p.steps : NaN,
      lr,
      ...(knn === undefined ? {} : { knnAccuracy: knn }),
      imagesPerSecond: p.images / Math.max(p.seconds, 1e-9),
      seconds: p.seconds,
      time: new Date().toISOString(),
    };
    state.metrics.push(record);
    state.epoch += 1;
    state.batch = 0;
    state.partialEpoch = { lossSum: 0, steps: 0, seconds: 0, images: 0 };
    state.pretrainingDone = state.epoch >= config.epochs;
    await checkpoint(s, state);
    for (const sink of sinks) await sink.record(record);
    s.callbacks.onEpochEnd?.(record);
  }
  if (s.dp ? s.dp.stopRequested : s.signal?.aborted) return finish('interrupted');
  if (!writer) return finish('complete');

  state.result = await finalEvaluation(s);
  for (const sink of sinks) await sink.record(state.result);
  await board?.projectEmbeddings(s.models.encoder, s.test);
  await writeFile(join(s.outDir, RUN_FILES.result), JSON.stringify({ ...state.result, outDir: s.outDir, config }, null, 2) + '\n');
  await checkpoint(s, state);
  return finish('complete');
}

/** One optimizer step on the given records; returns the loss. */
function trainStep(s: Session, records: Int32Array, rng: Rng): number {
  const { config, models, train } = s;
  const augment = s.augmentation.options;
  const batch = batchOf(train, records);
  let projected: Float32Array | undefined;
  const batchLabels = s.queue?.labeled && s.queue.numLabels === 0 ? (batch.labels.dataSync() as Int32Array) : undefined;
  // Synchronized batch norm during the step only: rank 0's kNN monitor and evaluation run
  // without the other ranks, so no batch-norm call there may wait for them.
  s.dp?.setSyncBatchNorm(config.syncBatchNorm);
  try {
    if (config.chunkSize > 0 && config.method !== 'ce') {
      const { value, features } = chunkedStep(s, records, batch, rng);
      if (s.queue) s.queue.push(features, rowLabelsOf(s, s.queue, batchLabels, records, features.length));
      return value;
    }
    const loss = tf.tidy(() => {
      const lossFn = (): tf.Scalar => {
        if (config.method === 'ce') {
          const x = normalize(augmentView(batch.images, rng, augment), train.normalization);
          const logits = models.trainModel.apply(x, { training: true }) as tf.Tensor2D;
          const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(batch.labels, train.numClasses), logits) as tf.Scalar;
          return s.dp ? s.dp.meanShare(ce, records.length, s.batchSize) : ce;
        }
        const views = Array.from({ length: config.views }, () => augmentView(batch.images, rng, augment));
        const x = normalize(views.length === 1 ? views[0] : tf.concat(views, 0), train.normalization);
        const projections = models.trainModel.apply(x, { training: true }) as tf.Tensor2D;
        // [V B, D] with view-major rows -> [B, V, D], the loss's layout (docs/loss.md).
        const features = tf.transpose(tf.reshape(projections, [config.views, records.length, -1]), [1, 0, 2]);
        if (s.dp) {
          const labels = config.method === 'supcon' ? batch.labels : null;
          return s.dp.supConLoss(features, labels, { temperature: config.temperature, variant: config.lossVariant });
        }
        const labels = lossLabels(s, records, batch.labels);
        // The queue's rows (earlier steps', constants here) join the contrast set.
        const contrast = s.queue?.contrastSet();
        if (s.queue) projected = (features.dataSync() as Float32Array).slice();
        const options = { temperature: config.temperature, variant: config.lossVariant, ...(contrast ? { contrast } : {}) };
        return supConLoss(features, labels, options) as tf.Scalar;
      };
      const { value, grads } = tf.variableGrads(lossFn, s.variables);
      if (s.dp) {
        // One allreduce: the gradients, the loss and this rank's stop request.
        const averaged = s.dp.averageGradients(grads, [value.dataSync()[0]], s.signal?.aborted === true);
        s.optimizer.applyGradients(averaged.grads);
        return tf.scalar(averaged.scalars[0]);
      }
      s.optimizer.applyGradients(grads);
      return value;
    });
    if (s.queue && projected) s.queue.push(projected, rowLabelsOf(s, s.queue, batchLabels, records, projected.length));
    const value = loss.dataSync()[0];
    loss.dispose();
    return value;
  } finally {
    s.dp?.setSyncBatchNorm(false);
    batch.images.dispose();
    batch.labels.dispose();
  }
}

/** The loss's labels of a batch: none (SimCLR), its label sets (multi-label data), or its class ids. */
function lossLabels(s: Session, records: Int32Array, classIds: tf.Tensor1D): LabelsLike | null {
  if (s.config.method !== 'supcon') return null;
  return s.train.labelSets ? gatherLabelSets(s.train.labelSets, records) : classIds;
}

/**
 * Labels of a step's rows [B, V, D] (memory order, sample-major) for the queue, each its sample's:
 * class ids, or (a multi-label queue) the records' label sets.
 */
function rowLabelsOf(s: Session, queue: MemoryQueue, labels: Int32Array | undefined, records: Int32Array, floats: number): Int32Array | QueueLabelSets | null {
  if (!queue.labeled) return null;
  const views = floats / (records.length * queue.dim);
  const sampleOf = Int32Array.from({ length: records.length * views }, (_, r) => Math.floor(r / views));
  if (queue.numLabels > 0) return gatherLabelSets(s.train.labelSets!, Array.from(sampleOf, (b) => records[b]));
  return Int32Array.from(sampleOf, (b) => labels![b]);
}

/**
 * A contrastive step with gradient caching (config.chunkSize, src/train/grad_cache.ts): the same
 * views (the same draws of `rng`) as the plain step; returns the loss and the step's detached
 * rows [B, V, D] (for the queue).
 */
function chunkedStep(s: Session, records: Int32Array, batch: { images: tf.Tensor4D; labels: tf.Tensor1D }, rng: Rng): { value: number; features: Float32Array } {
  const { config, models, train } = s;
  const augment = s.augmentation.options;
  const x = tf.tidy(() => {
    const views = Array.from({ length: config.views }, () => augmentView(batch.images, rng, augment));
    return normalize(views.length === 1 ? views[0] : tf.concat(views, 0), train.normalization);
  });
  const contrast = s.queue?.contrastSet();
  let features = new Float32Array(0);
  try {
    const labels = lossLabels(s, records, batch.labels);
    const { value, grads } = chunkedGradients(models.trainModel, x, config.chunkSize, s.variables, (z) => {
      // [V B, D] view-major -> [B, V, D], the loss's layout (docs/loss.md).
      const f = tf.transpose(tf.reshape(z, [config.views, records.length, -1]), [1, 0, 2]);
      if (s.queue) features = (f.dataSync() as Float32Array).slice();
      const options = { temperature: config.temperature, variant: config.lossVariant, ...(contrast ? { contrast } : {}) };
      return supConLoss(f, labels, options) as tf.Scalar;
    });
    s.optimizer.applyGradients(grads);
    tf.dispose(Object.values(grads));
    return { value, features };
  } finally {
    tf.dispose([x, contrast?.features ?? []]);
  }
}

/** kNN accuracy of the encoder's features: test subset against a training-set bank. */
function knnMonitor(s: Session): number | undefined {
  const { config } = s;
  if (config.knnBank === 0 || config.knnQueries === 0) return undefined;
  s.callbacks.onPhase?.('knn');
  const bankSet = firstRecords(s.train, config.knnBank);
  const querySet = firstRecords(s.test, config.knnQueries);
  const bank = predictDataset(s.models.encoder, bankSet) as tf.Tensor2D;
  const queries = predictDataset(s.models.encoder, querySet) as tf.Tensor2D;
  try {
    return knnAccuracy(bank, bankSet.labels, queries, querySet.labels, {
      numClasses: s.train.numClasses,
      k: config.knnK,
      temperature: config.knnTemperature,
    });
  } finally {
    tf.dispose([bank, queries]);
  }
}

async function finalEvaluation(s: Session): Promise<ResultRecord> {
  const { config } = s;
  const time = () => new Date().toISOString();
  if (config.method === 'ce') {
    s.callbacks.onPhase?.('test');
    const accuracy = (set: ImageDataset) => {
      const logits = predictDataset(s.models.trainModel, set) as tf.Tensor2D;
      try {
        return accuracyOfLogits(logits, set.labels);
      } finally {
        logits.dispose();
      }
    };
    return {
      type: 'result',
      method: config.method,
      evaluation: 'classifier',
      testAccuracy: accuracy(s.test),
      trainAccuracy: accuracy(s.train),
      testCount: s.test.count,
      epochs: config.epochs,
      time: time(),
    };
  }
  s.callbacks.onPhase?.('linear-eval', `${config.linearEpochs} epochs`);
  const evaluation = linearEvaluation(s.models.encoder, s.train, s.test, {
    epochs: config.linearEpochs,
    learningRate: config.linearLr,
    seed: derivedSeed(config.seed, SEED_STREAMS.linear),
  });
  try {
    await saveModel(evaluation.classifier, join(s.outDir, RUN_FILES.linearClassifier));
  } finally {
    evaluation.classifier.dispose();
  }
  return {
    type: 'result',
    method: config.method,
    evaluation: 'linear',
    testAccuracy: evaluation.testAccuracy,
    trainAccuracy: evaluation.trainAccuracy,
    testCount: s.test.count,
    epochs: config.epochs,
    time: time(),
  };
}
