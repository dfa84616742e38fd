/** Errors of the training layer: a checkpoint that cannot be used. */
import { SupConError } from '../errors';

/**
 * A checkpoint file is missing, corrupt, or does not fit the model or run it is loaded into.
 * The message names the file and says what is wrong, e.g.
 * `Cannot use checkpoint file runs/a/weights.bin: holds 1200 bytes but model.json lists 4096`.
 */
export class CheckpointError extends SupConError {
  /** The file (or folder) the problem is about. */
  readonly path: string;
  /** What is wrong with it, without the path. */
  readonly problem: string;
  constructor(path: string, problem: string) {
    super(`Cannot use checkpoint file ${path}: ${problem}`, 'ERR_SUPCON_CHECKPOINT');
    this.path = path;
    this.problem = problem;
  }
}
