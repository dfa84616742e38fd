/**
 * Errors thrown by supcon-native. Every argument problem is an {@link InvalidArgumentError}
 * that names the argument, what was expected and what arrived.
 */

/** Base class of every error this package throws on purpose. */
export class SupConError extends Error {
  /** Stable machine-readable code, e.g. `ERR_SUPCON_INVALID_ARGUMENT`. */
  readonly code: string;
  constructor(message: string, code = 'ERR_SUPCON') {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A bad argument: wrong type, shape, range or an unknown option. */
export class InvalidArgumentError extends SupConError {
  /** The argument's name as the caller wrote it, e.g. `features` or `options.temperature`. */
  readonly argument: string;
  readonly expected: string;
  readonly received: string;
  constructor(argument: string, expected: string, received: string) {
    super(`Expected ${expected} for ${argument} but received ${received}`, 'ERR_SUPCON_INVALID_ARGUMENT');
    this.argument = argument;
    this.expected = expected;
    this.received = received;
  }
}

/** The native addon is missing or a native/CUDA call failed (out of memory, no device, ...). */
export class NativeError extends SupConError {
  constructor(message: string, code = 'ERR_SUPCON_NATIVE') {
    super(message, code);
  }
}

/**
 * MPI is missing or an MPI call failed. `code` is `ERR_SUPCON_NO_MPI` when this build of the
 * addon has no MPI (the message says how to install it and rebuild), `ERR_SUPCON_MPI` when a
 * collective failed (MPI's own error text).
 */
export class MpiError extends NativeError {
  constructor(message: string, code: 'ERR_SUPCON_NO_MPI' | 'ERR_SUPCON_MPI' = 'ERR_SUPCON_MPI') {
    super(message, code);
  }
}
