/**
 * The metrics file of a run: JSON Lines, one record per epoch and one final result, appended
 * as training goes (a resumed run appends to the same file).
 */
import { appendFile, readFile } from 'node:fs/promises';
import type { Method } from './config';
import { CheckpointError } from './errors';

/** One finished pre-training epoch. */
export interface EpochRecord {
  type: 'epoch';
  /** 1-based epoch number. */
  epoch: number;
  /** Total epochs of the run. */
  epochs: number;
  /** Optimizer steps taken so far. */
  step: number;
  /** Mean training loss over the epoch's steps. */
  loss: number;
  /** Learning rate of the epoch's last step. */
  lr: number;
  /** kNN monitor accuracy on the test subset after the epoch (absent when turned off). */
  knnAccuracy?: number;
  /** Training throughput in images per second (two views count as two images). */
  imagesPerSecond: number;
  /** Seconds spent in training steps this epoch. */
  seconds: number;
  /** ISO time the epoch ended. */
  time: string;
}

/** The final evaluation of a run. */
export interface ResultRecord {
  type: 'result';
  method: Method;
  /** 'linear': linear evaluation of the frozen encoder; 'classifier': the cross-entropy head. */
  evaluation: 'linear' | 'classifier';
  /** Test accuracy: the run's score. */
  testAccuracy: number;
  /** Accuracy on the (un-augmented) training images. */
  trainAccuracy: number;
  /** Test images evaluated. */
  testCount: number;
  /** Epochs of pre-training behind the result. */
  epochs: number;
  /** ISO time of the evaluation. */
  time: string;
}

export type MetricsRecord = EpochRecord | ResultRecord;

/** Appends one record as a line. */
export async function appendMetrics(path: string, record: MetricsRecord): Promise<void> {
  await appendFile(path, JSON.stringify(record) + '\n');
}

/**
 * Reads a metrics file. A torn last line (a crash while appending) is skipped; any other
 * unparseable line is an error naming the line.
 */
export async function readMetrics(path: string): Promise<MetricsRecord[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CheckpointError(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
  }
  const lines = text.split('\n');
  const records: MetricsRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const record = JSON.parse(line) as MetricsRecord;
      if (record.type === 'epoch' || record.type === 'result') records.push(record);
    } catch {
      const isLast = lines.slice(i + 1).every((l) => l.trim() === '');
      if (!isLast) throw new CheckpointError(path, `line ${i + 1} is not valid JSON`);
    }
  });
  return records;
}

/**
 * The epoch records of the run as it stands: for an epoch recorded twice (a run resumed from an
 * older checkpoint), the later record wins.
 */
export function latestEpochs(records: readonly MetricsRecord[]): EpochRecord[] {
  const byEpoch = new Map<number, EpochRecord>();
  for (const r of records) if (r.type === 'epoch') byEpoch.set(r.epoch, r);
  return [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
}

/** A destination of a run's records: metrics.jsonl, TensorBoard. Every sink gets the same records. */
export interface MetricsSink {
  /** Takes one record, in the order the run produces them. */
  record(record: MetricsRecord): Promise<void>;
}

/** The metrics.jsonl sink: one JSON line per record ({@link appendMetrics}). */
export class JsonlMetricsSink implements MetricsSink {
  constructor(readonly path: string) {}
  async record(record: MetricsRecord): Promise<void> {
    await appendMetrics(this.path, record);
  }
}
