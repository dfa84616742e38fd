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

/** Contents of a queue, oldest row first. */
export interface QueueContents {
  /** [rows, dim] row-major. */
  features: Float32Array;
  /** [rows] class ids, or null for an unlabeled (SimCLR) queue. */
  labels: Int32Array | null;
  rows: number;
  dim: number;
}

/** A ring buffer of at most `size` rows of `dim` floats (and a label each when `labeled`). */
export class MemoryQueue {
  readonly size: number;
  readonly dim: number;
  readonly labeled: boolean;
  private readonly rowsData: Float32Array;
  private readonly labelData: Int32Array;
  /** Next row to write. */
  private head = 0;
  private filled = 0;

  /**
   * @param size M >= 1 rows.
   * @param dim D >= 1 floats per row (the projection's length).
   * @param labeled Whether rows carry class ids (SupCon) or not (SimCLR: the rows are negatives of every anchor).
   * @throws InvalidArgumentError for sizes that are not positive integers.
   */
  constructor(size: number, dim: number, labeled: boolean) {
    this.size = validate.integer('queue.size', size, 1, 2 ** 31 - 1);
    this.dim = validate.integer('queue.dim', dim, 1, 2 ** 31 - 1);
    if (this.size * this.dim > 2 ** 31 - 1) throw new InvalidArgumentError('queue.size', `at most ${2 ** 31 - 1} floats`, `${size} rows of ${dim}`);
    this.labeled = validate.boolean('queue.labeled', labeled);
    this.rowsData = new Float32Array(this.size * this.dim);
    this.labelData = new Int32Array(labeled ? this.size : 0);
  }

  /** Rows held now (<= size). */
  get rows(): number {
    return this.filled;
  }

  /**
   * Appends rows (oldest first) and drops the oldest beyond `size`.
   * @param features [n, dim] row-major (copied).
   * @param labels [n] class ids when the queue is labeled, else null.
   * @throws InvalidArgumentError naming `features` or `labels` for lengths or kinds that do not fit.
   */
  push(features: Float32Array, labels: Int32Array | null): void {
    validate.typedArray('features', features, Float32Array);
    if (features.length % this.dim !== 0) {
      throw new InvalidArgumentError('features', `rows of ${this.dim} floats`, `length ${features.length}`);
    }
    const n = features.length / this.dim;
    if (this.labeled) {
      validate.typedArray('labels', labels, Int32Array, n);
    } else if (labels !== null) {
      throw new InvalidArgumentError('labels', 'null (an unlabeled queue)', 'class ids');
    }
    // Only the last `size` of the new rows can survive.
    const first = Math.max(0, n - this.size);
    for (let r = first; r < n; r++) {
      this.rowsData.set(features.subarray(r * this.dim, (r + 1) * this.dim), this.head * this.dim);
      if (this.labeled) this.labelData[this.head] = labels![r];
      this.head = (this.head + 1) % this.size;
    }
    this.filled = Math.min(this.size, this.filled + (n - first));
  }

  /** The rows held, oldest first (copies). */
  contents(): QueueContents {
    const rows = this.filled;
    const start = (this.head - rows + this.size) % this.size;
    const features = new Float32Array(rows * this.dim);
    const labels = this.labeled ? new Int32Array(rows) : null;
    for (let i = 0; i < rows; i++) {
      const r = (start + i) % this.size;
      features.set(this.rowsData.subarray(r * this.dim, (r + 1) * this.dim), i * this.dim);
      if (labels) labels[i] = this.labelData[r];
    }
    return { features, labels, rows, dim: this.dim };
  }

  /**
   * The loss's extra contrast set (oldest row first): `{ features: [rows, dim] tensor, labels }`,
   * or undefined while the queue is empty. The caller owns (disposes) the tensor.
   */
  contrastSet(): { features: tf.Tensor2D; labels: Int32Array | null } | undefined {
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
  rows: number;
}

/** File of a checkpoint holding the queue's rows: float32 [rows, dim], then int32 [rows] labels. */
export const QUEUE_FILE = 'queue.bin';

/** The queue's description and bytes for a checkpoint (rows oldest first, little-endian). */
export function encodeQueue(q: MemoryQueue): { info: SavedQueueInfo; data: Uint8Array } {
  const c = q.contents();
  const data = new Uint8Array(c.features.byteLength + (c.labels ? c.labels.byteLength : 0));
  data.set(new Uint8Array(c.features.buffer, c.features.byteOffset, c.features.byteLength), 0);
  if (c.labels) data.set(new Uint8Array(c.labels.buffer, c.labels.byteOffset, c.labels.byteLength), c.features.byteLength);
  return { info: { size: q.size, dim: q.dim, labeled: q.labeled, rows: c.rows }, data };
}

/**
 * Rebuilds a queue saved by {@link encodeQueue}.
 * @throws Error naming `what` (the file) when the bytes do not fit the description.
 */
export function decodeQueue(info: SavedQueueInfo, data: Uint8Array, what: string): MemoryQueue {
  const q = new MemoryQueue(info.size, info.dim, info.labeled);
  const rows = validate.integer(`${what} rows`, info.rows, 0, info.size);
  const featureBytes = rows * info.dim * 4;
  const expected = featureBytes + (info.labeled ? rows * 4 : 0);
  if (data.byteLength !== expected) throw new Error(`${what} holds ${data.byteLength} bytes, ${expected} expected for ${rows} rows`);
  const copy = data.slice(); // aligned
  const features = new Float32Array(copy.buffer, 0, rows * info.dim);
  const labels = info.labeled ? new Int32Array(copy.buffer, featureBytes, rows) : null;
  q.push(features, labels);
  return q;
}
