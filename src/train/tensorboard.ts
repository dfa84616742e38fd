/**
 * TensorBoard output of a run (`RUN/tensorboard/`): event files with the scalars of the run's
 * metrics records, and the embedding projector's files for the test set's final embeddings.
 *
 * An event file (`events.out.tfevents.<seconds>.<host>.<pid>.<n>`) is a sequence of TFRecord
 * frames, each
 *
 *     uint64 LE length | uint32 LE masked CRC32C of the length bytes | payload | uint32 LE masked CRC32C of the payload
 *
 * whose payloads are serialized `tensorboard.Event` protos: first one with `file_version =
 * "brain.Event:2"`, then one per record with a `Summary` of `simple_value` scalars (the form
 * TensorBoard's scalar dashboard reads without any plugin metadata). The protos are encoded by
 * protobufjs from the subset of TensorFlow's `event.proto` / `summary.proto` below (same field
 * numbers), the CRC32C comes from `@aws-crypto/crc32c`.
 */
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import * as protobuf from 'protobufjs';
import * as tf from '@tensorflow/tfjs';
import { SupConError } from '../errors';
import * as validate from '../validate';
import { subsetDataset, type ImageDataset } from '../data';
import { predictDataset } from './features';
import type { MetricsRecord, MetricsSink } from './metrics';

/**
 * The messages written, with TensorFlow's field numbers (tensorflow/core/util/event.proto,
 * tensorflow/core/framework/summary.proto); fields this package never writes are left out.
 */
const TENSORBOARD_PROTO = `
syntax = "proto3";
package tensorboard;

message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    Summary summary = 5;
  }
}

message Summary {
  message Value {
    string node_name = 7;
    string tag = 1;
    oneof value {
      float simple_value = 2;
    }
  }
  repeated Value value = 1;
}
`;

const protoRoot = protobuf.parse(TENSORBOARD_PROTO, { keepCase: true }).root;

/** The `tensorboard.Event` message type (protobufjs reflection), exported for tests and readers. */
export const EventProto: protobuf.Type = protoRoot.lookupType('tensorboard.Event');

/** The file version TensorBoard expects in the first event of a file. */
export const EVENT_FILE_VERSION = 'brain.Event:2';

/** Folder of a run that holds the TensorBoard files. */
export const TENSORBOARD_DIR = 'tensorboard';

/** TFRecord's masked CRC32C: rotate right by 15 bits, add 0xa282ead8 (mod 2^32). */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Inverse of the masking of {@link maskedCrc32c}. */
export function unmaskCrc32c(masked: number): number {
  const rotated = (masked - 0xa282ead8) >>> 0;
  return ((rotated >>> 17) | (rotated << 15)) >>> 0;
}

/** One TFRecord frame around `payload`. */
export function tfRecordFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(12 + payload.length + 4);
  frame.writeBigUInt64LE(BigInt(payload.length), 0);
  frame.writeUInt32LE(maskedCrc32c(frame.subarray(0, 8)), 8);
  frame.set(payload, 12);
  frame.writeUInt32LE(maskedCrc32c(payload), 12 + payload.length);
  return frame;
}

/**
 * The payloads of a TFRecord file's frames, with both CRCs checked.
 * @throws {@link SupConError} naming the frame that is truncated or fails its CRC.
 */
export function readTfRecords(data: Uint8Array, what = 'TFRecord data'): Uint8Array[] {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const records: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const fail = (problem: string) => {
      throw new SupConError(`Cannot read ${what}: record ${records.length} at byte ${at} ${problem}`, 'ERR_SUPCON_TFRECORD');
    };
    if (at + 12 > bytes.length) fail('is truncated (incomplete header)');
    if (bytes.readUInt32LE(at + 8) !== maskedCrc32c(bytes.subarray(at, at + 8))) fail('has a length that fails its CRC32C');
    const length = Number(bytes.readBigUInt64LE(at));
    if (at + 16 + length > bytes.length) fail(`is truncated (${length} bytes announced)`);
    const payload = bytes.subarray(at + 12, at + 12 + length);
    if (bytes.readUInt32LE(at + 12 + length) !== maskedCrc32c(payload)) fail('has a payload that fails its CRC32C');
    records.push(payload);
    at += 16 + length;
  }
  return records;
}

/** A decoded event. */
export interface TensorBoardEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  /** The summary's scalar values, by tag. */
  scalars?: Record<string, number>;
}

/** Reads an event file back (frames, CRCs, protos). */
export async function readEventFile(path: string): Promise<TensorBoardEvent[]> {
  const data = await readFile(validate.string('path', path));
  return readTfRecords(data, path).map((payload) => {
    const event = EventProto.toObject(EventProto.decode(payload), { longs: Number, defaults: true, oneofs: true }) as {
      wall_time: number;
      step: number;
      file_version?: string;
      summary?: { value: Array<{ tag: string; simple_value?: number }> };
    };
    const out: TensorBoardEvent = { wallTime: event.wall_time, step: event.step };
    if (event.file_version !== undefined && event.file_version !== '') out.fileVersion = event.file_version;
    if (event.summary) out.scalars = Object.fromEntries(event.summary.value.map((v) => [v.tag, v.simple_value ?? NaN]));
    return out;
  });
}

let fileCounter = 0;

/** Writes one TensorBoard event file; every call appends whole frames, so readers can follow it live. */
export class EventFileWriter {
  /** The event file. */
  readonly path: string;
  private started: Promise<void> | undefined;

  /** @param logDir The folder of the file (created when missing). */
  constructor(readonly logDir: string) {
    validate.string('logDir', logDir);
    const seconds = Math.floor(Date.now() / 1000);
    this.path = join(logDir, `events.out.tfevents.${seconds}.${hostname()}.${process.pid}.${fileCounter++}`);
  }

  private start(): Promise<void> {
    this.started ??= (async () => {
      await mkdir(this.logDir, { recursive: true });
      await writeFile(this.path, this.frame({ wall_time: Date.now() / 1000, step: 0, file_version: EVENT_FILE_VERSION }));
    })();
    return this.started;
  }

  private frame(event: Record<string, unknown>): Buffer {
    const message = EventProto.fromObject(event);
    return tfRecordFrame(EventProto.encode(message).finish());
  }

  /**
   * Appends one event with scalar values at `step`.
   * @param scalars Tag -> value; non-finite values are skipped.
   * @param wallTime Seconds since the epoch (default now).
   */
  async addScalars(step: number, scalars: Record<string, number>, wallTime = Date.now() / 1000): Promise<void> {
    validate.integer('step', step, 0, Number.MAX_SAFE_INTEGER);
    validate.number('wallTime', wallTime, { ge: 0 });
    const value = Object.entries(scalars)
      .filter(([, v]) => typeof v === 'number' && Number.isFinite(v))
      .map(([tag, simple_value]) => ({ tag, simple_value }));
    await this.start();
    await appendFile(this.path, this.frame({ wall_time: wallTime, step, summary: { value } }));
  }
}

/** The scalars of one metrics record, by TensorBoard tag. */
export function scalarsOfRecord(record: MetricsRecord): Record<string, number> {
  if (record.type === 'epoch') {
    return {
      'train/loss': record.loss,
      'train/learning_rate': record.lr,
      'train/images_per_second': record.imagesPerSecond,
      'train/epoch': record.epoch,
      ...(record.knnAccuracy === undefined ? {} : { 'monitor/knn_accuracy': record.knnAccuracy }),
    };
  }
  const prefix = record.evaluation === 'linear' ? 'eval/linear' : 'eval/classifier';
  return { [`${prefix}_test_accuracy`]: record.testAccuracy, [`${prefix}_train_accuracy`]: record.trainAccuracy };
}

/** Metadata rows of the projector: one column, or several with a header. */
export interface ProjectorMetadata {
  /** Column names (one column: written without a header, as the projector expects). */
  columns: string[];
  /** One row per vector, one value per column. */
  rows: string[][];
}

const cell = (s: string) => s.replace(/[\t\r\n]+/g, ' ');

/**
 * Writes the embedding projector's files into `logDir`: `tensors.tsv` (one vector per line),
 * `metadata.tsv` and `projector_config.pbtxt` naming them.
 * @param vectors Row-major [count, dim].
 */
export async function writeProjectorFiles(
  logDir: string,
  vectors: Float32Array,
  dim: number,
  metadata: ProjectorMetadata,
  tensorName = 'embeddings',
): Promise<string[]> {
  validate.integer('dim', dim, 1);
  const count = metadata.rows.length;
  validate.typedArray('vectors', vectors, Float32Array, count * dim);
  if (!/^[\w./-]+$/.test(tensorName)) validate.fail('tensorName', 'a name of letters, digits, _ . / -', tensorName);
  await mkdir(logDir, { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(Array.from(vectors.subarray(i * dim, (i + 1) * dim), (v) => v.toPrecision(6)).join('\t'));
  const meta = metadata.columns.length > 1 ? [metadata.columns.map(cell).join('\t')] : [];
  for (const row of metadata.rows) meta.push(row.map(cell).join('\t'));
  const files = ['tensors.tsv', 'metadata.tsv', 'projector_config.pbtxt'].map((f) => join(logDir, f));
  await writeFile(files[0], lines.join('\n') + '\n');
  await writeFile(files[1], meta.join('\n') + '\n');
  await writeFile(
    files[2],
    `embeddings {\n  tensor_name: "${tensorName}"\n  tensor_path: "tensors.tsv"\n  metadata_path: "metadata.tsv"\n}\n`,
  );
  return files;
}

/** Most test images whose embeddings go to the projector. */
export const PROJECTOR_LIMIT = 2000;

/**
 * The TensorBoard sink of a run: every metrics record becomes an event of scalars at the
 * run's step, and {@link TensorBoardSink.projectEmbeddings} writes the projector's files.
 */
export class TensorBoardSink implements MetricsSink {
  readonly writer: EventFileWriter;
  private step: number;

  /**
   * @param logDir The run's `tensorboard/` folder.
   * @param step Steps the run has taken before this session (used for records without a step).
   */
  constructor(
    readonly logDir: string,
    step = 0,
  ) {
    this.writer = new EventFileWriter(logDir);
    this.step = validate.integer('step', step, 0);
  }

  async record(record: MetricsRecord): Promise<void> {
    if (record.type === 'epoch') this.step = record.step;
    const wallTime = Date.parse(record.time) / 1000;
    await this.writer.addScalars(this.step, scalarsOfRecord(record), Number.isFinite(wallTime) ? wallTime : Date.now() / 1000);
  }

  /**
   * Embeds up to `limit` images of `dataset` (class-balanced: its first records, which are
   * class-interleaved for image folders) with `encoder` and writes the projector's files,
   * labelled with the class name (and the file path for image folders).
   */
  async projectEmbeddings(encoder: tf.LayersModel, dataset: ImageDataset, limit = PROJECTOR_LIMIT): Promise<string[]> {
    const count = Math.min(validate.integer('limit', limit, 0), dataset.count);
    if (count === 0) return [];
    const subset = count < dataset.count ? subsetDataset(dataset, Int32Array.from({ length: count }, (_, i) => i)) : dataset;
    const output = predictDataset(encoder, subset) as tf.Tensor2D;
    const vectors = Float32Array.from(output.dataSync());
    const dim = output.shape[1];
    output.dispose();
    const paths = (dataset as ImageDataset & { paths?: readonly string[] }).paths;
    const rows = Array.from(subset.labels, (label, i) => {
      const name = subset.classNames[label] ?? String(label);
      return paths ? [name, paths[i]] : [name];
    });
    return writeProjectorFiles(this.logDir, vectors, dim, { columns: paths ? ['class', 'path'] : ['class'], rows }, 'encoder_features');
  }
}
