/**
 * Parsers of command-line flag values. They check through the project's one validator
 * (`src/validate.ts`), so a bad value fails with the flag's name, what it expects and what
 * arrived: `Expected integer >= 1 for --epochs but received 'ten' of type string`.
 */
import * as validate from '../validate';

type Range = { gt?: number; ge?: number; lt?: number; le?: number };

/** The number a flag's text spells, or a failure naming the flag. */
function toNumber(flag: string, raw: string, expected: string): number {
  const text = raw.trim();
  // Number('') is 0 and Number('0x10') is 16: accept plain decimal notation only.
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text)) validate.fail(flag, expected, raw);
  return Number(text);
}

/** An integer flag in [min, max]. */
export function integerFlag(flag: string, min = -Infinity, max = Infinity): (raw: string) => number {
  const bounds = min > -Infinity && max < Infinity ? ` in [${min}, ${max}]` : min > -Infinity ? ` >= ${min}` : max < Infinity ? ` <= ${max}` : '';
  return (raw) => validate.integer(flag, toNumber(flag, raw, `integer${bounds}`), min, max);
}

/** A number flag in a range. */
export function numberFlag(flag: string, range: Range = {}): (raw: string) => number {
  return (raw) => {
    const parts: string[] = [];
    if (range.gt !== undefined) parts.push(`> ${range.gt}`);
    if (range.ge !== undefined) parts.push(`>= ${range.ge}`);
    if (range.lt !== undefined) parts.push(`< ${range.lt}`);
    if (range.le !== undefined) parts.push(`<= ${range.le}`);
    return validate.number(flag, toNumber(flag, raw, parts.length ? `finite number ${parts.join(' and ')}` : 'finite number'), range);
  };
}

/** A flag taking one of a fixed set of words. */
export function choiceFlag<T extends string>(flag: string, allowed: readonly T[]): (raw: string) => T {
  return (raw) => validate.oneOf(flag, raw, allowed);
}

/** A flag taking a non-empty path. */
export function pathFlag(flag: string): (raw: string) => string {
  return (raw) => {
    if (raw.trim() === '') validate.fail(flag, 'a non-empty path', raw);
    return raw;
  };
}

/** A comma-separated list flag, each item parsed by `item` (which names the flag in its errors). */
export function listFlag<T>(flag: string, item: (raw: string) => T): (raw: string) => T[] {
  return (raw) => {
    const parts = raw.split(',').map((p) => p.trim());
    if (parts.length === 0 || parts.some((p) => p === '')) validate.fail(flag, 'a comma-separated list without empty items', raw);
    return parts.map(item);
  };
}
