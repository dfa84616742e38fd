/**
 * Learning-rate schedules, as functions of the optimizer step (0 = the first update).
 */
import * as validate from '../validate';

/** A learning rate for every step. */
export type LearningRateSchedule = (step: number) => number;

/** Options of {@link cosineWithWarmup}. */
export interface CosineScheduleOptions {
  /** The peak learning rate, reached at the end of the warmup. */
  baseLr: number;
  /** Steps of the whole run; the cosine reaches `finalLr` here. */
  totalSteps: number;
  /** Steps of the linear warmup (default 0: start at `baseLr`). */
  warmupSteps?: number;
  /** Learning rate at step 0 when warming up (default 0). */
  warmupStartLr?: number;
  /** Learning rate at `totalSteps` and after (default 0). */
  finalLr?: number;
}

/**
 * Linear warmup from `warmupStartLr` (step 0) to `baseLr` (step `warmupSteps`), then a half
 * cosine from `baseLr` down to `finalLr` at step `totalSteps` (SGDR without restarts,
 * Loshchilov & Hutter 2017):
 *
 *     lr(s) = start + (base - start) * s / W                              for s < W
 *     lr(s) = final + (base - final) * (1 + cos(pi * (s - W) / (T - W))) / 2   for W <= s <= T
 *     lr(s) = final                                                       for s > T
 *
 * @throws InvalidArgumentError naming the bad option.
 */
export function cosineWithWarmup(options: CosineScheduleOptions): LearningRateSchedule {
  const o = validate.options('options', options, ['baseLr', 'totalSteps', 'warmupSteps', 'warmupStartLr', 'finalLr']);
  const baseLr = validate.number('options.baseLr', o.baseLr, { ge: 0 });
  const totalSteps = validate.integer('options.totalSteps', o.totalSteps, 1);
  const warmupSteps = o.warmupSteps === undefined ? 0 : validate.integer('options.warmupSteps', o.warmupSteps, 0, totalSteps);
  const warmupStartLr = o.warmupStartLr === undefined ? 0 : validate.number('options.warmupStartLr', o.warmupStartLr, { ge: 0 });
  const finalLr = o.finalLr === undefined ? 0 : validate.number('options.finalLr', o.finalLr, { ge: 0 });
  return (step: number): number => {
    validate.integer('step', step, 0);
    if (step < warmupSteps) return warmupStartLr + ((baseLr - warmupStartLr) * step) / warmupSteps;
    if (step >= totalSteps) return finalLr;
    const decaySteps = totalSteps - warmupSteps;
    const progress = (step - warmupSteps) / decaySteps;
    return finalLr + (baseLr - finalLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}
