/**
 * The one argument validator of the package. Every public entry point checks its inputs
 * here, so messages are consistent: "Expected <what> for <argument> but received <what>".
 */
import { InvalidArgumentError } from './errors';

/** A short, human description of any value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') {
    return Number.isNaN(value) ? 'NaN' : `${value} of type number`;
  }
  if (typeof value === 'string') return `'${value.length > 40 ? value.slice(0, 40) + '...' : value}' of type string`;
  if (typeof value === 'boolean' || typeof value === 'bigint') return `${String(value)} of type ${typeof value}`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name} of length ${(value as unknown as { length?: number }).length ?? value.byteLength}`;
  }
  if (typeof value === 'function') return 'a function';
  const ctor = (value as object).constructor?.name;
  return ctor && ctor !== 'Object' ? `an instance of ${ctor}` : 'an object';
}

export function fail(argument: string, expected: string, value: unknown): never {
  throw new InvalidArgumentError(argument, expected, describe(value));
}

/** Throws unless `value` is a finite number (optionally in (min, max] style ranges). */
export function number(
  argument: string,
  value: unknown,
  range: { gt?: number; ge?: number; le?: number; lt?: number } = {},
): number {
  const parts: string[] = [];
  if (range.gt !== undefined) parts.push(`> ${range.gt}`);
  if (range.ge !== undefined) parts.push(`>= ${range.ge}`);
  if (range.lt !== undefined) parts.push(`< ${range.lt}`);
  if (range.le !== undefined) parts.push(`<= ${range.le}`);
  const expected = parts.length ? `finite number ${parts.join(' and ')}` : 'finite number';
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(argument, expected, value);
  if (
    (range.gt !== undefined && !(value > range.gt)) ||
    (range.ge !== undefined && !(value >= range.ge)) ||
    (range.lt !== undefined && !(value < range.lt)) ||
    (range.le !== undefined && !(value <= range.le))
  ) {
    fail(argument, expected, value);
  }
  return value;
}

/** Throws unless `value` is an integer in [min, max]. */
export function integer(argument: string, value: unknown, min = -Infinity, max = Infinity): number {
  const bounds =
    min > -Infinity && max < Infinity
      ? ` in [${min}, ${max}]`
      : min > -Infinity
        ? ` >= ${min}`
        : max < Infinity
          ? ` <= ${max}`
          : '';
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(argument, `integer${bounds}`, value);
  }
  return value;
}

export function boolean(argument: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(argument, 'boolean', value);
  return value;
}

export function string(argument: string, value: unknown): string {
  if (typeof value !== 'string') fail(argument, 'string', value);
  return value;
}

/**
 * Throws unless `value` is a pair `[lo, hi]` of finite numbers with `lo <= hi`, both inside
 * `bounds` (same range syntax as {@link number}). Used for ranges such as a crop scale `[0.2, 1]`.
 */
export function interval(
  argument: string,
  value: unknown,
  bounds: { gt?: number; ge?: number; le?: number; lt?: number } = {},
): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) fail(argument, 'a pair [lo, hi] of numbers', value);
  const lo = number(`${argument}[0]`, value[0], bounds);
  const hi = number(`${argument}[1]`, value[1], bounds);
  if (lo > hi) throw new InvalidArgumentError(argument, 'a pair [lo, hi] with lo <= hi', `[${lo}, ${hi}]`);
  return [lo, hi];
}

/** Throws unless `value` is one of `allowed`. */
export function oneOf<T extends string>(argument: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    fail(argument, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
  }
  return value as T;
}

/** Throws unless `value` is a plain object whose keys are all in `known`. */
export function options<K extends string>(
  argument: string,
  value: unknown,
  known: readonly K[],
): Partial<Record<K, unknown>> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value)) {
    fail(argument, 'an options object', value);
  }
  for (const key of Object.keys(value)) {
    if (!(known as readonly string[]).includes(key)) {
      throw new InvalidArgumentError(
        argument,
        `only the options ${known.map((k) => `'${k}'`).join(', ')}`,
        `unknown option '${key}'`,
      );
    }
  }
  return value as Partial<Record<K, unknown>>;
}

type TypedArrayCtor = Float32ArrayConstructor | Int32ArrayConstructor | Float64ArrayConstructor | Uint8ArrayConstructor;

/**
 * Throws unless `value` is a typed array of the given class, backed by an ordinary
 * (not shared, not detached) ArrayBuffer, of the given length when one is given.
 */
export function typedArray<C extends TypedArrayCtor>(
  argument: string,
  value: unknown,
  ctor: C,
  length?: number,
): InstanceType<C> {
  if (!(value instanceof ctor)) fail(argument, ctor.name, value);
  const arr = value as InstanceType<C>;
  if (typeof SharedArrayBuffer !== 'undefined' && arr.buffer instanceof SharedArrayBuffer) {
    throw new InvalidArgumentError(argument, `${ctor.name} over an ArrayBuffer`, `one over a SharedArrayBuffer`);
  }
  if ((arr.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new InvalidArgumentError(argument, `${ctor.name} over a live ArrayBuffer`, 'one over a detached ArrayBuffer');
  }
  if (length !== undefined && arr.length !== length) {
    throw new InvalidArgumentError(argument, `${ctor.name} of length ${length}`, `${ctor.name} of length ${arr.length}`);
  }
  return arr;
}

/** Throws unless `value` is an array of positive integers with a rank in `ranks`. */
export function shape(argument: string, value: unknown, ranks: readonly number[]): number[] {
  const expected = `shape of rank ${ranks.join(' or ')} with positive integer sizes`;
  if (!Array.isArray(value) || !ranks.includes(value.length)) {
    if (Array.isArray(value)) {
      throw new InvalidArgumentError(argument, `rank ${ranks.join(' or ')}`, `rank ${value.length} (shape [${value.join(', ')}])`);
    }
    fail(argument, expected, value);
  }
  for (const d of value) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) {
      throw new InvalidArgumentError(argument, expected, `shape [${value.join(', ')}]`);
    }
  }
  return value as number[];
}

/** Throws unless every element of a float array is finite; names the first bad index. */
export function finiteValues(argument: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      throw new InvalidArgumentError(argument, 'finite values', `${v} at index ${i}`);
    }
  }
}

/** Squared L2 norms of the rows of a matrix, in float64: the largest and the smallest. */
export interface RowNorms {
  maxSquared: number;
  minSquared: number;
}

/**
 * One pass over `values` as rows of `rowLength`: throws unless every element is finite (naming
 * the first bad index, as {@link finiteValues}) and returns the extreme squared row norms,
 * accumulated in float64 (so any finite float32 row has a finite norm).
 */
export function finiteRows(argument: string, values: ArrayLike<number>, rowLength: number): RowNorms {
  let maxSquared = 0;
  let minSquared = Infinity;
  for (let r = 0; r < values.length; r += rowLength) {
    let ss = 0;
    for (let k = r; k < r + rowLength; k++) ss += values[k] * values[k];
    if (!Number.isFinite(ss)) {
      for (let k = r; k < r + rowLength; k++) {
        if (!Number.isFinite(values[k])) throw new InvalidArgumentError(argument, 'finite values', `${values[k]} at index ${k}`);
      }
    }
    if (ss > maxSquared) maxSquared = ss;
    if (ss < minSquared) minSquared = ss;
  }
  return { maxSquared, minSquared };
}

/**
 * Throws unless `value` is a number > 0 whose float32 value (what native float32 code computes
 * with) is finite and nonzero; returns `value`. With `reciprocal`, 1/value in float32 must be
 * finite too (a temperature, whose reciprocal scales every score).
 */
export function positiveFloat32(argument: string, value: unknown, options: { reciprocal?: boolean } = {}): number {
  const x = number(argument, value, { gt: 0 });
  const f = Math.fround(x);
  const inverse = Math.fround(1 / f);
  if (!(f > 0) || !Number.isFinite(f) || (options.reciprocal && !Number.isFinite(inverse))) {
    const expected = options.reciprocal
      ? 'a positive number whose float32 value and reciprocal are finite and nonzero'
      : 'a positive number whose float32 value is finite and nonzero';
    throw new InvalidArgumentError(argument, expected, `${x} (float32 ${f}${options.reciprocal ? `, reciprocal ${inverse}` : ''})`);
  }
  return x;
}

/** Throws unless every element is an integer (for int32 labels stored in float arrays). */
export function integerValues(argument: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new InvalidArgumentError(argument, 'int32 values', `${v} at index ${i}`);
    }
  }
}
