/**
 * Progress display of a training run: a `cli-progress` bar per epoch (loss, learning rate,
 * images/s, ETA) on a terminal, plain lines (a few per epoch) when the output is a file or a
 * pipe. Plug it in as the trainer's callbacks.
 */
import { SingleBar } from 'cli-progress';
import type { DecodeProgress } from '../data';
import type { EpochRecord } from './metrics';
import type { StartInfo, StepInfo, TrainCallbacks } from './run_state';

/** Options of {@link TrainingProgress}. */
export interface TrainingProgressOptions {
  /** Where to write (default process.stdout). */
  stream?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Draw a bar (default: when the stream is a TTY). */
  bar?: boolean;
  /** Plain mode: lines per epoch besides the summary (default 4). */
  linesPerEpoch?: number;
  /** Where warnings go, such as an unreadable image (default process.stderr). */
  warningStream?: NodeJS.WritableStream;
}

/** Options of {@link DecodeProgressDisplay}. */
export interface DecodeProgressOptions {
  /** Where to write (default process.stdout). */
  stream?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Draw a bar (default: when the stream is a TTY). */
  bar?: boolean;
}

/**
 * Progress of decoding images (an image folder's first load, or files to embed): a
 * `cli-progress` bar on a terminal, else one line when it starts and one with the rate when it ends.
 */
export class DecodeProgressDisplay {
  private readonly stream: NodeJS.WritableStream;
  private readonly useBar: boolean;
  private bar: SingleBar | undefined;
  private started = 0;

  constructor(options: DecodeProgressOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    this.useBar = options.bar ?? (this.stream as NodeJS.WriteStream).isTTY === true;
  }

  /** Takes one progress report (the `onProgress` of the image-folder loader). */
  update(p: DecodeProgress): void {
    if (p.total === 0) return;
    if (p.done === 0) {
      this.started = performance.now();
      if (this.useBar) {
        this.bar = new SingleBar({
          stream: this.stream as NodeJS.WriteStream,
          format: 'decoding images |{bar}| {value}/{total} ETA {eta_formatted}',
          barsize: 24,
          hideCursor: true,
          fps: 5,
        });
        this.bar.start(p.total, 0);
      } else {
        this.stream.write(`decoding ${p.total} images${p.source ? ` of ${p.source}` : ''}\n`);
      }
      return;
    }
    this.bar?.update(p.done);
    if (p.done === p.total) {
      this.stop();
      const seconds = (performance.now() - this.started) / 1000;
      this.stream.write(`decoded ${p.total} images in ${seconds.toFixed(1)} s (${(p.total / Math.max(seconds, 1e-9)).toFixed(0)} images/s)\n`);
    }
  }

  /** Removes the bar, if any. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(0)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - 60 * m);
  return m < 60 ? `${m}m${String(s).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** One line summarizing an epoch. */
export function formatEpochRecord(r: EpochRecord): string {
  const knn = r.knnAccuracy === undefined ? '' : `  kNN ${percent(r.knnAccuracy)}`;
  return (
    `epoch ${r.epoch}/${r.epochs}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toPrecision(3)}${knn}` +
    `  ${r.imagesPerSecond.toFixed(0)} img/s  ${formatSeconds(r.seconds)}`
  );
}

/** Progress display; pass it as `callbacks` to `trainRun` / `resumeRun`. */
export class TrainingProgress implements TrainCallbacks {
  private readonly stream: NodeJS.WritableStream;
  private readonly useBar: boolean;
  private readonly linesPerEpoch: number;
  private bar: SingleBar | undefined;
  private epochs = 0;
  private stepsPerEpoch = 0;
  private readonly decoding: DecodeProgressDisplay;
  private readonly warningStream: NodeJS.WritableStream;

  constructor(options: TrainingProgressOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    this.useBar = options.bar ?? (this.stream as NodeJS.WriteStream).isTTY === true;
    this.linesPerEpoch = options.linesPerEpoch ?? 4;
    this.decoding = new DecodeProgressDisplay({ stream: this.stream, bar: this.useBar });
    this.warningStream = options.warningStream ?? process.stderr;
  }

  onDataProgress(progress: DecodeProgress): void {
    this.decoding.update(progress);
  }

  onDataWarning(message: string): void {
    this.decoding.stop();
    this.warningStream.write(`warning: ${message}\n`);
  }

  /** Writes a line (above the bar, if one is drawn). */
  log(line: string): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
    this.stream.write(line + '\n');
  }

  onStart(info: StartInfo): void {
    this.epochs = info.config.epochs;
    const c = info.config;
    const where = info.resumed ? `resuming ${info.outDir} at epoch ${info.epoch + 1}, batch ${info.batch + 1}` : `run ${info.outDir}`;
    this.log(
      `${where}: ${c.method} ${c.arch}${c.arch === 'custom' ? '' : ` x${c.width}`} (${info.parameters} parameters) on ${c.dataset} ` +
        `(${info.trainCount} train / ${info.testCount} test), ${c.epochs} epochs x ${info.stepsPerEpoch} steps of ${Math.min(
          c.batchSize,
          info.trainCount,
        )}${info.worldSize > 1 ? ` over ${info.worldSize} processes` : ''}, ${c.optimizer} lr ${c.lr}, augmentation ${info.augmentation}, ` +
        `native kernels: ${info.fastKernels.length ? info.fastKernels.length : 'off'}`,
    );
  }

  onEpochStart(epoch: number, firstBatch: number, stepsPerEpoch: number): void {
    this.stepsPerEpoch = stepsPerEpoch;
    if (!this.useBar) return;
    this.bar = new SingleBar({
      stream: this.stream as NodeJS.WriteStream,
      format: `epoch {epochLabel} |{bar}| {value}/{total} loss {loss} lr {lr} {ips} img/s ETA {eta_formatted}`,
      barsize: 24,
      hideCursor: true,
      etaBuffer: 20,
      fps: 5,
    });
    this.bar.start(stepsPerEpoch, firstBatch, { epochLabel: `${epoch + 1}/${this.epochs}`, loss: '-', lr: '-', ips: '-' });
  }

  onStep(info: StepInfo): void {
    const payload = { loss: info.loss.toFixed(4), lr: info.lr.toPrecision(3), ips: info.imagesPerSecond.toFixed(0) };
    if (this.bar) {
      this.bar.update(info.batch + 1, payload);
      return;
    }
    // Plain mode: a line at evenly spaced steps of the epoch, not every step.
    const every = Math.max(1, Math.ceil(this.stepsPerEpoch / this.linesPerEpoch));
    const done = info.batch + 1;
    if (done % every === 0 && done < this.stepsPerEpoch) {
      const remaining = (this.stepsPerEpoch - done) * info.seconds;
      this.stream.write(
        `epoch ${info.epoch + 1}/${this.epochs} step ${done}/${info.stepsPerEpoch}  loss ${payload.loss}  lr ${payload.lr}  ` +
          `${payload.ips} img/s  ETA ${formatSeconds(remaining)}\n`,
      );
    }
  }

  onEpochEnd(record: EpochRecord): void {
    this.log(formatEpochRecord(record));
  }

  onPhase(phase: 'knn' | 'checkpoint' | 'linear-eval' | 'test', detail?: string): void {
    if (phase === 'linear-eval') this.log(`linear evaluation of the frozen encoder (${detail ?? ''})`);
    else if (phase === 'test') this.log('evaluating the classifier on the test set');
    else if (phase === 'knn' && this.bar) this.bar.update({ ips: 'kNN...' });
  }

  /** Removes the bar, if any. */
  stop(): void {
    this.decoding.stop();
    this.bar?.stop();
    this.bar = undefined;
  }
}
