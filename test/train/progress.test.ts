import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../../src/train/config';
import { formatEpochRecord, TrainingProgress } from '../../src/train/progress';
import type { EpochRecord } from '../../src/train/metrics';

function capture(tty: boolean): { stream: PassThrough & { isTTY?: boolean; columns?: number }; text: () => string } {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
  if (tty) {
    stream.isTTY = true;
    stream.columns = 120;
  }
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

const record: EpochRecord = {
  type: 'epoch',
  epoch: 2,
  epochs: 5,
  step: 78,
  loss: 5.43219,
  lr: 0.0520133,
  knnAccuracy: 0.7581,
  imagesPerSecond: 266.3,
  seconds: 75,
  time: '2026-01-01T00:00:00.000Z',
};

/** Feeds one epoch of `steps` steps through the display. */
function epoch(progress: TrainingProgress, steps: number): void {
  const config = resolveTrainConfig({ epochs: 5 });
  progress.onStart({ config, outDir: 'runs/x', resumed: false, epoch: 0, batch: 0, stepsPerEpoch: steps, trainCount: 10000, testCount: 2000, parameters: 90256, fastKernels: [], augmentation: 'crop-flip', worldSize: 1 });
  progress.onEpochStart(1, 0, steps);
  for (let b = 0; b < steps; b++) {
    progress.onStep({ epoch: 1, batch: b, stepsPerEpoch: steps, step: 39 + b + 1, loss: 5.5 - b / 100, lr: 0.05, imagesPerSecond: 250, seconds: 2 });
  }
  progress.onEpochEnd(record);
  progress.stop();
}

describe('TrainingProgress', () => {
  it('formats an epoch summary', () => {
    expect(formatEpochRecord(record)).toBe('epoch 2/5  loss 5.4322  lr 0.0520  kNN 75.8%  266 img/s  1m15s');
  });

  it('writes a few plain lines per epoch when the stream is not a terminal', () => {
    const { stream, text } = capture(false);
    epoch(new TrainingProgress({ stream, linesPerEpoch: 4 }), 39);
    const lines = text().trim().split('\n');
    expect(lines[0]).toMatch(/^run runs\/x: supcon resnet8 x1 \(90256 parameters\) on fashion-mnist-mini \(10000 train \/ 2000 test\), 5 epochs x 39 steps of 256/);
    expect(lines[0]).toContain('augmentation crop-flip');
    const stepLines = lines.filter((l) => l.includes(' step '));
    // Every ceil(39 / 4) = 10 steps, not at the last one: steps 10, 20, 30.
    expect(stepLines.map((l) => l.match(/step (\d+)\/39/)![1])).toEqual(['10', '20', '30']);
    expect(stepLines[0]).toBe('epoch 2/5 step 10/39  loss 5.4100  lr 0.0500  250 img/s  ETA 58s');
    expect(lines[lines.length - 1]).toBe(formatEpochRecord(record));
    expect(text()).not.toContain('\u001b['); // no terminal escapes in a log file
  });

  it('draws a progress bar with loss, lr, throughput and ETA on a terminal', () => {
    const { stream, text } = capture(true);
    epoch(new TrainingProgress({ stream }), 5);
    expect(text()).toMatch(/epoch 2\/5 \|[^|]+\| 5\/5 loss 5\.4600 lr 0\.0500 250 img\/s ETA/);
    expect(text()).toContain(formatEpochRecord(record));
  });
});
