/** Errors of the data layer: a dataset file that is missing, truncated or not what it claims to be. */
import { SupConError } from '../errors';

/**
 * A dataset file could not be used. The message names the file, says what is wrong with it
 * and how to get a good copy, e.g.
 * `Cannot read dataset file /data/train-images-idx3-ubyte.gz: truncated: ... Fix: ...`.
 */
export class DatasetError extends SupConError {
  /** The file (or folder) the problem is about. */
  readonly path: string;
  /** What is wrong with it, without the path or the fix. */
  readonly problem: string;
  /** How to obtain a good copy of the data. */
  readonly hint: string;
  constructor(path: string, problem: string, hint: string) {
    super(`Cannot read dataset file ${path}: ${problem}. ${hint}`, 'ERR_SUPCON_DATASET');
    this.path = path;
    this.problem = problem;
    this.hint = hint;
  }
}

/** The fix suggested when no dataset-specific advice is known. */
export const GENERIC_DATA_HINT =
  'Fix: download the dataset again, or pass a different data directory (dataDir / --data-dir)';
