/**
 * Optimizers for pre-training, as tfjs `Optimizer` subclasses: SGD with momentum (PyTorch's
 * rule, decoupled from tfjs's own `MomentumOptimizer` so that weight decay and per-variable
 * exclusions live in one place) and LARS (You, Gitman & Ginsburg 2017, "Large Batch Training
 * of Convolutional Networks").
 *
 * Both keep one momentum slot per variable, keyed by the variable's name (tfjs's own
 * optimizers key slots by position, which breaks when the variable list changes), and set
 * their learning rate from outside every step (see `schedule.ts`). On tfjs's cpu backend with
 * the addon, a step is one native call over every variable (native/core/nn_optimizer.cpp)
 * instead of 4-8 tfjs ops per variable; elsewhere the same rule runs as tfjs ops.
 *
 * Biases and BatchNorm's gamma/beta (every variable of rank <= 1) get no weight decay and,
 * for LARS, no trust ratio, as is usual since Goyal et al. 2017 and in SimCLR.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import { type CpuBackend, float32Values, onCpuBackend } from '../kernels/cpu_backend';
import { outputPool } from '../kernels/output_pool';
import { callNative, loadNative, type NativeOptimizerArgs, type NativeOptimizerVariable } from '../native';

/** A tensor with its name, as `Optimizer.getWeights()` returns them. */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

/** Options shared by {@link SgdMomentum} and {@link Lars}. */
export interface MomentumOptimizerOptions {
  /** Initial learning rate (change it any time with `optimizer.learningRate = x`). */
  learningRate: number;
  /** Momentum factor (default 0.9). */
  momentum?: number;
  /** L2 weight decay coefficient added to the gradient: g + weightDecay * w (default 0). */
  weightDecay?: number;
  /**
   * Skip weight decay (and LARS's trust ratio) for variables of rank <= 1: biases and
   * BatchNorm scales/offsets (default true).
   */
  excludeBiasAndNorm?: boolean;
}

/** Options of {@link SgdMomentum}. */
export interface SgdOptions extends MomentumOptimizerOptions {
  /** Nesterov momentum (default false). */
  nesterov?: boolean;
}

/** Options of {@link Lars}. */
export interface LarsOptions extends MomentumOptimizerOptions {
  /** LARS coefficient eta of the trust ratio (default 0.001, as in the paper). */
  trustCoefficient?: number;
}

/** Suffix of the momentum slot names in `getWeights()`: `<variable name>/momentum`. */
export const MOMENTUM_SLOT_SUFFIX = '/momentum';

function resolveCommon(o: Partial<Record<string, unknown>>): Required<MomentumOptimizerOptions> {
  return {
    learningRate: validate.number('options.learningRate', o.learningRate, { ge: 0 }),
    momentum: o.momentum === undefined ? 0.9 : validate.number('options.momentum', o.momentum, { ge: 0, lt: 1 }),
    weightDecay: o.weightDecay === undefined ? 0 : validate.number('options.weightDecay', o.weightDecay, { ge: 0 }),
    excludeBiasAndNorm:
      o.excludeBiasAndNorm === undefined ? true : validate.boolean('options.excludeBiasAndNorm', o.excludeBiasAndNorm),
  };
}

/** Base of the momentum optimizers: slots, bookkeeping and (de)serialization of state. */
abstract class MomentumSlotOptimizer extends tf.Optimizer {
  private lr = 0;

  /** The learning rate of the next update; set it from a schedule before each step. */
  get learningRate(): number {
    return this.lr;
  }

  /** @throws InvalidArgumentError unless a finite number >= 0. */
  set learningRate(value: number) {
    this.lr = validate.number('learningRate', value, { ge: 0 });
  }
  readonly momentum: number;
  readonly weightDecay: number;
  readonly excludeBiasAndNorm: boolean;
  /** Momentum buffers by variable name. */
  private slots = new Map<string, tf.Variable>();

  protected constructor(options: Required<MomentumOptimizerOptions>) {
    super();
    this.learningRate = options.learningRate;
    this.momentum = options.momentum;
    this.weightDecay = options.weightDecay;
    this.excludeBiasAndNorm = options.excludeBiasAndNorm;
  }

  /** Whether `variable` is left out of weight decay (and trust-ratio scaling). */
  isExcluded(variable: tf.Variable): boolean {
    return this.excludeBiasAndNorm && variable.rank <= 1;
  }

  /** The new value of one variable and its momentum buffer (called inside a tidy). */
  protected abstract update(
    value: tf.Tensor,
    gradient: tf.Tensor,
    buffer: tf.Tensor,
    excluded: boolean,
  ): { value: tf.Tensor; buffer: tf.Tensor };

  /** The native step's kind and settings (src/native.ts, native/core/nn_optimizer.cpp). */
  protected abstract nativeSettings(): Pick<NativeOptimizerArgs, 'kind' | 'nesterov' | 'trustCoefficient'>;

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const entries: Array<[string, tf.Tensor | null | undefined]> = Array.isArray(variableGradients)
      ? variableGradients.map((g) => [g.name, g.tensor])
      : Object.entries(variableGradients);
    const registered = tf.engine().registeredVariables;
    const updates: Array<{ name: string; variable: tf.Variable; gradient: tf.Tensor }> = [];
    for (const [name, gradient] of entries) {
      if (gradient == null) continue;
      const variable = registered[name];
      if (variable === undefined) {
        throw new InvalidArgumentError('variableGradients', 'gradients keyed by registered variable names', `unknown variable '${name}'`);
      }
      updates.push({ name, variable, gradient });
    }
    if (!this.applyNative(updates)) for (const u of updates) this.applyOne(u.name, u.variable, u.gradient);
    this.incrementIterations();
  }

  /**
   * One native call for every variable on tfjs's cpu backend (float32 data held as arrays);
   * false, doing nothing, anywhere else. New values go to new arrays that the variables are
   * assigned, as tfjs's own optimizers do, so no tensor that shares a variable's data changes.
   */
  private applyNative(updates: Array<{ name: string; variable: tf.Variable; gradient: tf.Tensor }>): boolean {
    const addon = loadNative();
    if (!addon || typeof addon.optimizerUpdate !== 'function' || !onCpuBackend() || updates.length === 0) return false;
    const backend = tf.backend() as unknown as CpuBackend;
    const variables: NativeOptimizerVariable[] = [];
    for (const { name, variable, gradient } of updates) {
      const value = float32Values(backend, variable);
      const grad = float32Values(backend, gradient);
      const slot = this.slots.get(name);
      const buffer = slot === undefined ? null : float32Values(backend, slot);
      if (!value || !grad || grad.length !== value.length || (slot !== undefined && !buffer)) return false;
      variables.push({
        value,
        grad,
        buffer,
        newValue: outputPool.acquire(value.length),
        newBuffer: outputPool.acquire(value.length),
        decay: !this.isExcluded(variable),
      });
    }
    callNative(() =>
      addon.optimizerUpdate({
        ...this.nativeSettings(),
        learningRate: this.learningRate,
        momentum: this.momentum,
        weightDecay: this.weightDecay,
        variables,
      }),
    );
    tf.tidy(() => {
      updates.forEach(({ name, variable }, i) => {
        variable.assign(tf.tensor(variables[i].newValue, variable.shape));
        const nextBuffer = tf.tensor(variables[i].newBuffer, variable.shape);
        const slot = this.slots.get(name);
        if (slot) slot.assign(nextBuffer);
        else this.slots.set(name, tf.keep(nextBuffer.variable(false)));
      });
    });
    return true;
  }

  /** The same update for one variable with tfjs ops (any backend). */
  private applyOne(name: string, variable: tf.Variable, gradient: tf.Tensor): void {
    let slot = this.slots.get(name);
    if (slot === undefined) {
      slot = tf.tidy(() => tf.zerosLike(variable).variable(false));
      this.slots.set(name, slot);
    }
    const buffer = slot;
    tf.tidy(() => {
      const next = this.update(variable, gradient, buffer, this.isExcluded(variable));
      buffer.assign(next.buffer);
      variable.assign(next.value);
    });
  }

  /** The momentum buffer of a variable (undefined before its first update). */
  momentumOf(variableName: string): tf.Variable | undefined {
    return this.slots.get(variableName);
  }

  /** `[iter, <variable>/momentum...]` in the order the variables were first updated. */
  override async getWeights(): Promise<NamedTensor[]> {
    const slots = [...this.slots].map(([name, tensor]) => ({ name: name + MOMENTUM_SLOT_SUFFIX, tensor }));
    return [await this.saveIterations(), ...slots];
  }

  /** Restores what {@link getWeights} returned (copies the tensors; the caller keeps them). */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    const next = new Map<string, tf.Variable>();
    for (const { name, tensor } of rest) {
      if (!name.endsWith(MOMENTUM_SLOT_SUFFIX)) {
        for (const v of next.values()) v.dispose();
        throw new InvalidArgumentError('weightValues', `names ending in '${MOMENTUM_SLOT_SUFFIX}'`, `'${name}'`);
      }
      next.set(name.slice(0, -MOMENTUM_SLOT_SUFFIX.length), tf.tidy(() => tf.clone(tensor).variable(false)));
    }
    for (const v of this.slots.values()) v.dispose();
    this.slots = next;
  }

  override dispose(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
  }

  protected commonConfig(): tf.serialization.ConfigDict {
    return {
      learningRate: this.learningRate,
      momentum: this.momentum,
      weightDecay: this.weightDecay,
      excludeBiasAndNorm: this.excludeBiasAndNorm,
    };
  }
}

/**
 * SGD with momentum as PyTorch defines it (dampening 0):
 *
 *     d = g + weightDecay * w          (no decay for excluded variables)
 *     b = momentum * b + d
 *     w = w - lr * (nesterov ? d + momentum * b : b)
 */
export class SgdMomentum extends MomentumSlotOptimizer {
  /** The name tfjs's serialization registry knows this class by. */
  static className = 'SupConSgdMomentum';
  readonly nesterov: boolean;

  constructor(options: SgdOptions) {
    const o = validate.options('options', options, ['learningRate', 'momentum', 'weightDecay', 'excludeBiasAndNorm', 'nesterov']);
    super(resolveCommon(o));
    this.nesterov = o.nesterov === undefined ? false : validate.boolean('options.nesterov', o.nesterov);
  }

  protected override nativeSettings(): Pick<NativeOptimizerArgs, 'kind' | 'nesterov' | 'trustCoefficient'> {
    return { kind: 'sgd', nesterov: this.nesterov, trustCoefficient: 1 };
  }

  protected override update(
    value: tf.Tensor,
    gradient: tf.Tensor,
    buffer: tf.Tensor,
    excluded: boolean,
  ): { value: tf.Tensor; buffer: tf.Tensor } {
    const d = excluded || this.weightDecay === 0 ? gradient : tf.add(gradient, tf.mul(value, this.weightDecay));
    const nextBuffer = tf.add(tf.mul(buffer, this.momentum), d);
    const direction = this.nesterov ? tf.add(d, tf.mul(nextBuffer, this.momentum)) : nextBuffer;
    return { value: tf.sub(value, tf.mul(direction, this.learningRate)), buffer: nextBuffer };
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...this.commonConfig(), nesterov: this.nesterov };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    return new cls(config as unknown as SgdOptions);
  }
}

/**
 * LARS, Algorithm 1 of You et al. 2017, per variable (a "layer" in the paper):
 *
 *     trust = eta * ||w|| / (||g|| + weightDecay * ||w||)   (1 when ||w|| or ||g|| is 0)
 *     b = momentum * b + lr * trust * (g + weightDecay * w)
 *     w = w - b
 *
 * Excluded variables (biases, BatchNorm) take a plain momentum step: b = momentum * b + lr * g.
 * Note the learning rate sits inside the buffer, as in the paper.
 */
export class Lars extends MomentumSlotOptimizer {
  /** The name tfjs's serialization registry knows this class by. */
  static className = 'SupConLars';
  readonly trustCoefficient: number;

  constructor(options: LarsOptions) {
    const o = validate.options('options', options, [
      'learningRate',
      'momentum',
      'weightDecay',
      'excludeBiasAndNorm',
      'trustCoefficient',
    ]);
    super(resolveCommon(o));
    this.trustCoefficient =
      o.trustCoefficient === undefined ? 0.001 : validate.number('options.trustCoefficient', o.trustCoefficient, { gt: 0 });
  }

  /**
   * The trust ratio of one variable, as a scalar tensor (the caller disposes it):
   * `eta * ||w|| / (||g|| + weightDecay * ||w||)`, or 1 when either norm is 0.
   */
  trustRatio(value: tf.Tensor, gradient: tf.Tensor): tf.Scalar {
    return tf.tidy(() => {
      const weightNorm = tf.norm(value);
      const gradNorm = tf.norm(gradient);
      const ratio = tf.div(tf.mul(weightNorm, this.trustCoefficient), tf.add(gradNorm, tf.mul(weightNorm, this.weightDecay)));
      const bothPositive = tf.logicalAnd(tf.greater(weightNorm, 0), tf.greater(gradNorm, 0));
      return tf.where(bothPositive, ratio, tf.onesLike(ratio)) as tf.Scalar;
    });
  }

  protected override nativeSettings(): Pick<NativeOptimizerArgs, 'kind' | 'nesterov' | 'trustCoefficient'> {
    return { kind: 'lars', nesterov: false, trustCoefficient: this.trustCoefficient };
  }

  protected override update(
    value: tf.Tensor,
    gradient: tf.Tensor,
    buffer: tf.Tensor,
    excluded: boolean,
  ): { value: tf.Tensor; buffer: tf.Tensor } {
    let step: tf.Tensor;
    if (excluded) {
      step = tf.mul(gradient, this.learningRate);
    } else {
      const d = this.weightDecay === 0 ? gradient : tf.add(gradient, tf.mul(value, this.weightDecay));
      step = tf.mul(d, tf.mul(this.trustRatio(value, gradient), this.learningRate));
    }
    const nextBuffer = tf.add(tf.mul(buffer, this.momentum), step);
    return { value: tf.sub(value, nextBuffer), buffer: nextBuffer };
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...this.commonConfig(), trustCoefficient: this.trustCoefficient };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    return new cls(config as unknown as LarsOptions);
  }
}

tf.serialization.registerClass(SgdMomentum);
tf.serialization.registerClass(Lars);

/** Names of the pre-training optimizers. */
export const OPTIMIZER_NAMES = ['sgd', 'lars'] as const;
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

/** Either pre-training optimizer. */
export type TrainOptimizer = SgdMomentum | Lars;

/** Builds an optimizer by name ('sgd' or 'lars'). */
export function createOptimizer(name: OptimizerName, options: MomentumOptimizerOptions): TrainOptimizer {
  const checked = validate.oneOf('name', name, OPTIMIZER_NAMES);
  return checked === 'sgd' ? new SgdMomentum(options) : new Lars(options);
}
