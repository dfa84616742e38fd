/**
 * A cross-batch memory for contrastive training (`--queue-size M`, `TrainConfig.queueSize`): the
 * last M projected rows of earlier steps and their labels, detached (constants to the step that
 * reads them, as MoCo's queue of keys; He et al., CVPR 2020), passed to the loss as its extra
 * contrast set (docs/loss.md, `contrast`). A batch of B samples and V views sees B V + M rows to
 * contrast against instead of B V.
 *
 * First in, first out: after a step, that step's B V rows (view-major within each sample's
 * label) are appended and the oldest rows beyond M are dropped. It draws no random numbers, so
 * its contents are a function of the run's seed and the steps taken; a checkpoint stores them
 * ({@link encodeQueue}) and a resumed run continues with exactly the same rows.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';

/** Label sets of queue rows: multi-hot bytes [rows, numLabels] (the loss's `LabelSets`). */
export interface QueueLabelSets {
  sets: Uint8Array;
  numLabels: number;
}

/** Contents of a queue, oldest row first. */
export interface QueueContents {
  /** [rows, dim] row-major. */
  features: Float32Array;
  /** [rows] class ids, label sets of the rows (a multi-label queue), or null (unlabeled, SimCLR). */
  labels: Int32Array | QueueLabelSets | null;
  rows: number;
  dim: number;
}

/**
 * A ring buffer of at most `size` rows of `dim` floats, and a label each when `labeled`: a class
 * id, or a label set of `numLabels` labels (multi-label data) when `numLabels` > 0.
 */
export class MemoryQueue {
  readonly size: number;
  readonly dim: number;
  readonly labeled: boolean;
  /** Labels per set of a multi-label queue; 0: class ids (or unlabeled). */
  readonly numLabels: number;
  private readonly rowsData: Float32Array;
  private readonly labelData: Int32Array;
  private readonly setData: Uint8Array;
  /** Next row to write. */
  private head = 0;
  private filled = 0;

  /**
   * @param size M >= 1 rows.
   * @param dim D >= 1 floats per row (the projection's length).
   * @param labeled Whether rows carry labels (SupCon) or not (SimCLR: the rows are negatives of every anchor).
   * @param numLabels With `labeled`: 0 (default) for class ids, else the label-set width.
   * @throws InvalidArgumentError for sizes that are not positive integers.
   */
  constructor(size: number, dim: number, labeled: boolean, numLabels = 0) {
    this.size = validate.integer('queue.size', size, 1, 2 ** 31 - 1);
    this.dim = validate.integer('queue.dim', dim, 1, 2 ** 31 - 1);
    if (this.size * this.dim > 2 ** 31 - 1) throw new InvalidArgumentError('queue.size', `at most ${2 ** 31 - 1} floats`, `${size} rows of ${dim}`);
    this.labeled = validate.boolean('queue.labeled', labeled);
    this.numLabels = validate.integer('queue.numLabels', numLabels, 0, labeled ? Math.floor((2 ** 31 - 1) / this.size) : 0);
    this.rowsData = new Float32Array(this.size * this.dim);
    this.labelData = new Int32Array(labeled && this.numLabels === 0 ? this.size : 0);
    this.setData = new Uint8Array(this.size * this.numLabels);
  }

  /** Rows held now (<= size). */
  get rows(): number {
    return this.filled;
  }

  /**
   * Appends rows (oldest first) and drops the oldest beyond `size`.
   * @param features [n, dim] row-major (copied).
   * @param labels [n] class ids, or label sets of n rows of `numLabels` (as the queue was made), or null for an unlabeled queue.
   * @throws InvalidArgumentError naming `features` or `labels` for lengths or kinds that do not fit.
   */
  push(features: Float32Array, labels: Int32Array | QueueLabelSets | null): void {
    validate.typedArray('features', features, Float32Array);
    if (features.length % this.dim !== 0) {
      throw new InvalidArgumentError('features', `rows of ${this.dim} floats`, `length ${features.length}`);
    }
    const n = features.length / this.dim;
    const L = this.numLabels;
    if (!this.labeled) {
      if (labels !== null) throw new InvalidArgumentError('labels', 'null (an unlabeled queue)', 'labels');
    } else if (L > 0) {
      if (labels === null || labels instanceof Int32Array || labels.numLabels !== L) {
        throw new InvalidArgumentError('labels', `label sets of ${L} labels (a multi-label queue)`, labels === null ? 'null' : labels instanceof Int32Array ? 'class ids' : `sets of ${labels.numLabels}`);
      }
      validate.typedArray('labels.sets', labels.sets, Uint8Array, n * L);
    } else {
      validate.typedArray('labels', labels, Int32Array, n);
    }
    // Only the last `size` of the new rows can survive.
    const first = Math.max(0, n - this.size);
    for (let r = first; r < n; r++) {
      this.rowsData.set(features.subarray(r * this.dim, (r + 1) * this.dim), this.head * this.dim);
      if (this.labeled && L === 0) this.labelData[this.head] = (labels as Int32Array)[r];
      if (L > 0) this.setData.set((labels as QueueLabelSets).sets.subarray(r * L, (r + 1) * L), this.head * L);
      this.head = (this.head + 1) % this.size;
    }
    this.filled = Math.min(this.size, this.filled + (n - first));
  }

  /** The rows held, oldest first (copies). */
  contents(): QueueContents {
    const rows = this.filled;
    const L = this.numLabels;
    const start = (this.head - rows + this.size) % this.size;
    const features = new Float32Array(rows * this.dim);
    const ids = this.labeled && L === 0 ? new Int32Array(rows) : null;
    const sets = L > 0 ? new Uint8Array(rows * L) : null;
    for (let i = 0; i < rows; i++) {
      const r = (start + i) % this.size;
      features.set(this.rowsData.subarray(r * this.dim, (r + 1) * this.dim), i * this.dim);
      if (ids) ids[i] = this.labelData[r];
      if (sets) sets.set(this.setData.subarray(r * L, (r + 1) * L), i * L);
    }
    return { features, labels: sets ? { sets, numLabels: L } : ids, rows, dim: this.dim };
  }

  /**
   * The loss's extra contrast set (oldest row first): `{ features: [rows, dim] tensor, labels }`,
   * or undefined while the queue is empty. The caller owns (disposes) the tensor.
   */
  contrastSet(): { features: tf.Tensor2D; labels: Int32Array | QueueLabelSets | null } | undefined {
    if (this.filled === 0) return undefined;
    const c = this.contents();
    return { features: tf.tensor2d(c.features, [c.rows, c.dim]), labels: c.labels };
  }
}

/** Layout of a saved queue (in state.json); its bytes are in {@link QUEUE_FILE}. */
export interface SavedQueueInfo {
  size: number;
  dim: number;
  labeled: boolean;
  /** Label-set width of a multi-label queue (absent or 0: class ids). */
  numLabels?: number;
  rows: number;
}

/**
 * File of a checkpoint holding the queue's rows: float32 [rows, dim], then int32 [rows] class ids
 * or uint8 [rows, numLabels] label sets.
 */
export const QUEUE_FILE = 'queue.bin';

/** The queue's description and bytes for a checkpoint (rows oldest first, little-endian). */
export function encodeQueue(q: MemoryQueue): { info: SavedQueueInfo; data: Uint8Array } {
  const c = q.contents();
  const labelBytes = c.labels === null ? new Uint8Array(0) : c.labels instanceof Int32Array ? new Uint8Array(c.labels.buffer, c.labels.byteOffset, c.labels.byteLength) : c.labels.sets;
  const data = new Uint8Array(c.features.byteLength + labelBytes.byteLength);
  data.set(new Uint8Array(c.features.buffer, c.features.byteOffset, c.features.byteLength), 0);
  data.set(labelBytes, c.features.byteLength);
  const info: SavedQueueInfo = { size: q.size, dim: q.dim, labeled: q.labeled, rows: c.rows };
  if (q.numLabels > 0) info.numLabels = q.numLabels;
  return { info, data };
}

/**
 * Rebuilds a queue saved by {@link encodeQueue}.
 * @throws Error naming `what` (the file) when the bytes do not fit the description.
 */
export function decodeQueue(info: SavedQueueInfo, data: Uint8Array, what: string): MemoryQueue {
  const L = info.numLabels ?? 0;
  const q = new MemoryQueue(info.size, info.dim, info.labeled, L);
  const rows = validate.integer(`${what} rows`, info.rows, 0, info.size);
  const featureBytes = rows * info.dim * 4;
  const expected = featureBytes + (!info.labeled ? 0 : L > 0 ? rows * L : rows * 4);
  if (data.byteLength !== expected) throw new Error(`${what} holds ${data.byteLength} bytes, ${expected} expected for ${rows} rows`);
  const copy = data.slice(); // aligned
  const features = new Float32Array(copy.buffer, 0, rows * info.dim);
  const labels = !info.labeled ? null : L > 0 ? { sets: copy.subarray(featureBytes), numLabels: L } : new Int32Array(copy.buffer, featureBytes, rows);
  q.push(features, labels);
  return q;
}
