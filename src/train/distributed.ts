/**
 * Data-parallel training over MPI (docs/distributed.md): the one place that knows rank and size.
 * The trainer calls it through a few hooks; everything here is collective (every rank calls the
 * same functions in the same order).
 *
 * - Each global batch of `batchSize` records is split into contiguous shards, one per rank
 *   ({@link shardOf}); each rank augments and encodes its own shard.
 * - The loss sees the global batch ({@link DataParallel.supConLoss}): features and labels are
 *   all-gathered; this rank's rows are the anchors and the other ranks' rows the loss's extra
 *   contrast set, and the share is scaled so that the average over ranks of the gradients is the
 *   gradient of the single-process loss on the whole batch. The other ranks' rows get their
 *   gradient on the rank that owns them: the gather's backward reduce-scatters the contrast
 *   rows' gradients.
 * - Gradients are averaged with one allreduce of one flat buffer per step, which also carries
 *   the loss and the ranks' stop requests ({@link DataParallel.averageGradients}).
 * - Rank 0's initial (or restored) weights and optimizer state are broadcast; rank 0 alone
 *   writes checkpoints, metrics and the evaluation.
 * - Batch norm is per rank unless `syncBatchNorm`: then ConvBatchNorm layers use the whole
 *   batch's moments (src/kernels/conv_batch_norm.ts).
 */
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError, MpiError } from '../errors';
import { supcon } from '../loss/native_loss';
import { setBatchNormSync } from '../kernels/conv_batch_norm';
import { supConLoss } from '../loss/op';
import { initMpi, launcherWorld, mpiInfo, type Communicator } from '../mpi';
import type { LabelsLike, SupConLossOptions } from '../loss/tensor_inputs';
import type { NamedTensor, TrainOptimizer } from './optimizers';

/** Rank `rank`'s records of a global batch: contiguous shards, the first `length % size` one longer. */
export function shardOf(records: Int32Array, rank: number, size: number): Int32Array {
  const base = Math.floor(records.length / size);
  const extra = records.length % size;
  const begin = rank * base + Math.min(rank, extra);
  return records.subarray(begin, begin + base + (rank < extra ? 1 : 0));
}

/** The shard sizes of a global batch of `length` records over `size` ranks. */
export function shardSizes(length: number, size: number): number[] {
  return Array.from({ length: size }, (_, r) => Math.floor(length / size) + (r < length % size ? 1 : 0));
}

/** Per-rank timings of the collectives of the last step, in milliseconds (the benchmark reads them). */
export interface CommunicationTimes {
  /** Gathering features and labels for the loss. */
  gatherMs: number;
  /** Reduce-scattering the contrast rows' gradients back to their owners. */
  scatterMs: number;
  /** The one allreduce of the gradients (with loss and stop flag). */
  allreduceMs: number;
}

/** Options of {@link DataParallel.supConLoss}: the loss's, without a caller contrast set. */
export type DistributedLossOptions = Omit<SupConLossOptions, 'contrast'>;

/** A data-parallel run's view of the world. Create with {@link joinDataParallel}. */
export class DataParallel {
  readonly rank: number;
  readonly size: number;
  /** Timings of the last step's collectives. */
  readonly times: CommunicationTimes = { gatherMs: 0, scatterMs: 0, allreduceMs: 0 };
  private stopAgreed = false;

  constructor(readonly comm: Communicator) {
    this.rank = comm.rank;
    this.size = comm.size;
  }

  /** Rank 0 writes checkpoints, metrics and the evaluation. */
  get isRoot(): boolean {
    return this.rank === 0;
  }

  /** Whether some rank asked to stop, as agreed at the last step (the same on every rank). */
  get stopRequested(): boolean {
    return this.stopAgreed;
  }

  /** This rank's records of a global batch ({@link shardOf}). */
  shard(records: Int32Array): Int32Array {
    if (records.length < this.size) {
      throw new InvalidArgumentError('config.batchSize', `at least one record per process (${this.size} processes)`, `${records.length}`);
    }
    return shardOf(records, this.rank, this.size);
  }

  /** Synchronized batch norm in the ConvBatchNorm layers while `on` (off: per-rank statistics). */
  setSyncBatchNorm(on: boolean): void {
    setBatchNormSync(on ? this.comm : null);
  }

  /** Rank 0's value of a JSON-serializable thing, on every rank (others pass undefined). */
  broadcastJson<T>(value: T | undefined): T {
    const bytes = this.isRoot ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
    const length = this.comm.broadcast(new Int32Array([bytes.length]), 0)[0];
    const data = this.isRoot ? bytes : new Uint8Array(length);
    this.comm.broadcast(data, 0);
    return JSON.parse(new TextDecoder().decode(data)) as T;
  }

  /** Rank 0's values of every weight of the model (trainable or not: moving statistics too). */
  broadcastWeights(model: tf.LayersModel): void {
    const variables = model.weights.map((w) => w.read());
    const flat = packTensors(variables);
    this.comm.broadcast(flat, 0);
    if (this.isRoot) return;
    unpackTensors(flat, variables).forEach((t, i) => {
      model.weights[i].write(t); // the variable keeps its own reference to the values
      t.dispose();
    });
  }

  /** Rank 0's optimizer state (iterations and momentum slots) on every rank. */
  async broadcastOptimizer(optimizer: TrainOptimizer): Promise<void> {
    const named = this.isRoot ? await optimizer.getWeights() : [];
    const layout = this.broadcastJson(this.isRoot ? named.map((w) => ({ name: w.name, shape: w.tensor.shape, dtype: w.tensor.dtype })) : undefined);
    if (layout.length === 0) return;
    const sizes = layout.map((w) => w.shape.reduce((a, b) => a * b, 1));
    const flat = this.isRoot ? packTensors(named.map((w) => w.tensor)) : new Float32Array(sizes.reduce((a, b) => a + b, 0));
    this.comm.broadcast(flat, 0);
    if (this.isRoot) return;
    let offset = 0;
    const restored: NamedTensor[] = layout.map((w, i) => {
      const values = flat.subarray(offset, offset + sizes[i]);
      offset += sizes[i];
      return { name: w.name, tensor: w.dtype === 'int32' ? tf.tensor(Int32Array.from(values), w.shape, 'int32') : tf.tensor(values.slice(), w.shape) };
    });
    try {
      await optimizer.setWeights(restored);
    } finally {
      tf.dispose(restored.map((w) => w.tensor));
    }
  }

  /**
   * This rank's share of the SupCon loss of the global batch: features [B_k, V, D] (or [N_k, D])
   * and labels [B_k] (null: SimCLR) of this rank's shard. The value is K / V_g times the sum of
   * the local anchors' losses (V_g: the global batch's anchors with a positive; reduction 'sum':
   * K times the sum), so the mean over ranks of the values is the global loss and the mean of
   * the gradients its gradient.
   * @throws InvalidArgumentError for reduction 'none', or shards of different views or dims.
   */
  supConLoss(features: tf.Tensor, labels: LabelsLike | null, options: DistributedLossOptions = {}): tf.Scalar {
    if (options.reduction === 'none') {
      throw new InvalidArgumentError('options.reduction', "'mean' or 'sum' for a data-parallel loss", "'none'");
    }
    if (features.rank !== 2 && features.rank !== 3) {
      throw new InvalidArgumentError('features', 'a tensor of rank 2 or 3', `shape [${features.shape.join(', ')}]`);
    }
    const rank3 = features.rank === 3;
    const batch = features.shape[0];
    const views = rank3 ? features.shape[1]! : 1;
    const dim = features.shape[features.rank - 1]!;
    const localLabels = labels === null ? null : labelsOf(labels, batch);
    const started = performance.now();
    // Shard sizes and geometry of every rank: [batch, views, dim] each.
    const geometry = this.comm.allgather(new Int32Array([batch, views, dim]));
    const batches: number[] = [];
    for (let r = 0; r < this.size; r++) {
      if (geometry[3 * r + 1] !== views || geometry[3 * r + 2] !== dim) {
        throw new InvalidArgumentError('features', `[B, ${views}, ${dim}] on every rank`, `[${geometry[3 * r]}, ${geometry[3 * r + 1]}, ${geometry[3 * r + 2]}] on rank ${r}`);
      }
      batches.push(geometry[3 * r]);
    }
    const globalLabels = localLabels ? this.comm.allgatherv(localLabels, batches) : null;
    this.times.gatherMs = performance.now() - started;
    const rowsPerRank = batches.map((b) => b * views);
    const others = gatherOthers(this, features, rowsPerRank, dim);
    // Contrast labels: one per row of the other ranks (a sample's label repeated over its views).
    let otherLabels: Int32Array | null = null;
    if (globalLabels) {
      otherLabels = new Int32Array(others.shape[0]);
      let row = 0;
      let sample = 0;
      for (let r = 0; r < this.size; r++) {
        for (let b = 0; b < batches[r]; b++, sample++) {
          if (r === this.rank) continue;
          for (let v = 0; v < views; v++) otherLabels[row++] = globalLabels[sample];
        }
      }
    }
    const scale = options.reduction === 'sum' ? this.size : this.size / Math.max(1, validAnchors(globalLabels, batches, views, options.contrastMode ?? 'all'));
    const noContrast = others.shape[0] === 0;
    const share = supConLoss(features, labels, {
      ...options,
      reduction: 'sum',
      ...(noContrast ? {} : { contrast: { features: others, labels: otherLabels, gradient: true } }),
    });
    return tf.mul(share, scale) as tf.Scalar;
  }

  /**
   * This rank's share of a mean over the global batch of `globalCount` items, given the mean of
   * its `localCount` items: K localCount / globalCount times it (the mean over ranks of the shares
   * is the global mean, and so is the mean of their gradients).
   */
  meanShare(localMean: tf.Scalar, localCount: number, globalCount: number): tf.Scalar {
    return tf.mul(localMean, (this.size * localCount) / globalCount) as tf.Scalar;
  }

  /**
   * Averages gradients over the ranks with one allreduce of one flat buffer, which also carries
   * `scalars` (averaged: the loss) and this rank's stop request (any rank's request is agreed by
   * all, see {@link stopRequested}). Returns new tensors (the inputs are disposed) in the same order.
   */
  averageGradients(grads: tf.NamedTensorMap, scalars: number[], stop: boolean): { grads: tf.NamedTensorMap; scalars: number[] } {
    const names = Object.keys(grads);
    const tensors = names.map((n) => grads[n]);
    const flat = packTensors(tensors, scalars.length + 1);
    const tail = flat.length - scalars.length - 1;
    scalars.forEach((v, i) => (flat[tail + i] = v));
    flat[flat.length - 1] = stop ? 1 : 0;
    const started = performance.now();
    this.comm.allreduceSum(flat);
    this.times.allreduceMs = performance.now() - started;
    this.stopAgreed = flat[flat.length - 1] > 0;
    const inv = 1 / this.size;
    for (let i = 0; i < tail + scalars.length; i++) flat[i] *= inv;
    const averaged = unpackTensors(flat, tensors);
    tf.dispose(tensors);
    const out: tf.NamedTensorMap = {};
    names.forEach((n, i) => (out[n] = averaged[i]));
    return { grads: out, scalars: Array.from(flat.subarray(tail, tail + scalars.length)) };
  }

  /** Waits for every rank (rank 0 may be evaluating), then finalizes MPI. */
  close(): void {
    setBatchNormSync(null);
    this.comm.barrier();
    this.comm.close();
  }

  /** Ends every rank of the job at once (after an error on this one): MPI_Abort. */
  abort(code = 1): void {
    this.comm.abort(code);
  }
}

/** The number of anchors with a positive in the global batch (the divisor of 'mean'). */
function validAnchors(labels: Int32Array | null, batches: number[], views: number, mode: 'all' | 'one'): number {
  const samples = batches.reduce((a, b) => a + b, 0);
  const anchorsPerSample = mode === 'one' ? 1 : views;
  if (labels === null) return views >= 2 ? samples * anchorsPerSample : 0; // SimCLR: the other views
  const count = new Map<number, number>();
  for (const y of labels) count.set(y, (count.get(y) ?? 0) + views);
  let valid = 0;
  for (const y of labels) if ((count.get(y) ?? 0) >= 2) valid += anchorsPerSample;
  return valid;
}

function labelsOf(labels: LabelsLike, batch: number): Int32Array {
  if (labels instanceof tf.Tensor) return Int32Array.from(labels.dataSync());
  if (labels instanceof Int32Array) return labels;
  if (Array.isArray(labels)) return Int32Array.from(labels);
  throw new InvalidArgumentError('labels', `a tensor, Int32Array or array of ${batch} labels`, typeof labels);
}

/**
 * The rows [M, D] of every other rank (in rank order, row-major: sample-major, views inner), as
 * a differentiable op of this rank's features: its backward places the incoming gradient of the
 * other ranks' rows in a zero buffer of the global rows and reduce-scatters it, so this rank
 * receives the sum over ranks of the gradients of its own rows.
 */
function gatherOthers(dp: DataParallel, features: tf.Tensor, rowsPerRank: number[], dim: number): tf.Tensor2D {
  const counts = rowsPerRank.map((r) => r * dim);
  const offset = counts.slice(0, dp.rank).reduce((a, b) => a + b, 0);
  const mine = counts[dp.rank];
  const op = tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = inputs[0] as tf.Tensor;
    const started = performance.now();
    const all = dp.comm.allgatherv(Float32Array.from(x.dataSync()), counts);
    dp.times.gatherMs += performance.now() - started;
    const rest = new Float32Array(all.length - mine);
    rest.set(all.subarray(0, offset));
    rest.set(all.subarray(offset + mine), offset);
    return {
      value: tf.tensor2d(rest, [rest.length / dim, dim]),
      gradFunc: (dy: tf.Tensor) => {
        const t0 = performance.now();
        const g = dy.dataSync();
        const full = new Float32Array(all.length);
        full.set(g.subarray(0, offset));
        full.set(g.subarray(offset), offset + mine);
        const back = dp.comm.reduceScatterSum(full, counts);
        dp.times.scatterMs = performance.now() - t0;
        return tf.tensor(back, x.shape, 'float32');
      },
    };
  });
  return op(features) as tf.Tensor2D;
}

/** The values of float32/int32 tensors in one Float32Array, with `extra` free slots at the end. */
function packTensors(tensors: tf.Tensor[], extra = 0): Float32Array {
  const total = tensors.reduce((a, t) => a + t.size, 0);
  const flat = new Float32Array(total + extra);
  let offset = 0;
  for (const t of tensors) {
    flat.set(t.dataSync() as ArrayLike<number>, offset);
    offset += t.size;
  }
  return flat;
}

/** New tensors shaped like `like`, with the values of flat (in order). */
function unpackTensors(flat: Float32Array, like: tf.Tensor[]): tf.Tensor[] {
  let offset = 0;
  return like.map((t) => {
    const values = flat.slice(offset, offset + t.size);
    offset += t.size;
    return t.dtype === 'int32' ? tf.tensor(Int32Array.from(values), t.shape, 'int32') : tf.tensor(values, t.shape, 'float32');
  });
}

/**
 * Joins the data-parallel job this process was launched in: null when it was not launched by an
 * MPI launcher with more than one process (single-process training, unchanged).
 * @throws MpiError (ERR_SUPCON_NO_MPI) when launched as one of several processes by a build
 * without MPI, saying how to install it and rebuild; InvalidArgumentError for malformed launcher
 * variables.
 */
export function joinDataParallel(): DataParallel | null {
  const world = launcherWorld();
  if (world === null || world.size === 1) return null;
  const info = mpiInfo();
  if (!info.compiled) {
    throw new MpiError(
      `This process was started by ${world.launcher} as rank ${world.rank} of ${world.size}, but data-parallel training needs MPI and ${info.reason}. ` +
        'Run a single process instead, or get MPI as said.',
      'ERR_SUPCON_NO_MPI',
    );
  }
  const comm = initMpi();
  if (comm.size !== world.size || comm.rank !== world.rank) {
    throw new MpiError(
      `MPI reports rank ${comm.rank} of ${comm.size} but the launcher (${world.launcher}) announced rank ${world.rank} of ${world.size}: ` +
        'the addon was built against another MPI than the one that launched it (rebuild it with the same MPI).',
      'ERR_SUPCON_MPI',
    );
  }
  shareCores(process.env);
  return new DataParallel(comm);
}

/**
 * Ranks on one machine share its cores: unless SUPCON_NUM_THREADS says otherwise, each rank's
 * native thread pool gets cores / (ranks on this machine), at least 1, when the launcher says
 * how many ranks share the machine (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's
 * MPI_LOCALNRANKS). Returns the pool size it set, or null when it left the pool alone.
 */
export function shareCores(env: NodeJS.ProcessEnv): number | null {
  if (env.SUPCON_NUM_THREADS !== undefined && env.SUPCON_NUM_THREADS !== '') return null;
  const local = Number(env.OMPI_COMM_WORLD_LOCAL_SIZE ?? env.MPI_LOCALNRANKS ?? 1);
  if (!Number.isInteger(local) || local <= 1) return null;
  const threads = Math.max(1, Math.floor(availableParallelism() / local));
  supcon.setNumThreads(threads);
  return threads;
}

/**
 * Checks that synchronized batch norm can be asked for: it needs MPI compiled in (with one
 * process it equals per-process batch norm).
 * @throws MpiError ERR_SUPCON_NO_MPI otherwise, with what to install.
 */
export function checkSyncBatchNormAvailable(argument = 'config.syncBatchNorm'): void {
  const info = mpiInfo();
  if (!info.compiled) {
    throw new MpiError(`${argument} (--sync-bn) averages batch statistics across MPI processes and needs MPI, but ${info.reason}`, 'ERR_SUPCON_NO_MPI');
  }
}

