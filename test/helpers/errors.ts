/** Shared assertion of the package's argument errors. */
import { expect } from 'vitest';
import { InvalidArgumentError } from '../../src/errors';

/** Expects `fn` to throw an InvalidArgumentError for `argument`, named in its message too; returns it. */
export function expectInvalidArgument(fn: () => unknown, argument: string): InvalidArgumentError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(InvalidArgumentError);
  expect((caught as InvalidArgumentError).argument).toBe(argument);
  expect((caught as Error).message).toContain(argument);
  return caught as InvalidArgumentError;
}
