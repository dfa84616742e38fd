/**
 * MPI collectives on typed arrays, over the addon's optional MPI component (native/mpi): the
 * few that data-parallel training needs (docs/distributed.md). The training driver
 * (src/train/distributed.ts) is their one user in this package; they are public for custom loops.
 *
 * ```ts
 * const world = launcherWorld();          // { rank, size, launcher } from mpirun's / srun's environment
 * if (world && world.size > 1) {
 *   const comm = initMpi();               // MPI_Init once; comm.rank, comm.size
 *   comm.allreduceSum(grads);             // in place
 *   const all = comm.allgatherv(rows, counts);
 *   comm.close();                         // MPI_Finalize (collective)
 * }
 * ```
 *
 * Every collective is collective: every rank must call it, in the same order, with matching
 * sizes. They run synchronously on the calling thread and wait without spinning.
 */
import { InvalidArgumentError, MpiError } from './errors';
import { callNative, loadNative, nativeLoadError, type NativeAddon, type NativeMpiArray } from './native';
import * as v from './validate';

/** Typed arrays the reductions take. */
export type MpiNumbers = Float32Array | Float64Array | Int32Array;
/** Typed arrays the gathers and broadcasts take (bytes too: serialized state). */
export type MpiArray = NativeMpiArray;

/** What to run to get MPI, in every message that reports it missing. */
export const MPI_INSTALL_HINT =
  'install MPI (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin) and rebuild the addon from source ' +
  '(npm rebuild supcon-native --build-from-source; SUPCON_MPI=ON makes a build without MPI an error)';

/** This process's place in a job, as its launcher announced it in the environment. */
export interface LauncherWorld {
  rank: number;
  size: number;
  /** Which variables said so: 'Open MPI', 'PMI', 'MVAPICH' or 'Slurm'. */
  launcher: string;
}

/** [launcher, rank variable, size variable], most specific first. */
const LAUNCHER_VARIABLES: ReadonlyArray<readonly [string, string, string]> = [
  ['Open MPI', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'],
  ['PMI', 'PMI_RANK', 'PMI_SIZE'],
  ['MVAPICH', 'MV2_COMM_WORLD_RANK', 'MV2_COMM_WORLD_SIZE'],
  // Set by srun for each task of a step (not in the batch script itself, which is one process).
  ['Slurm', 'SLURM_PROCID', 'SLURM_STEP_NUM_TASKS'],
];

/**
 * Rank and size from the launcher's environment (mpirun, mpiexec, srun), before MPI starts;
 * null when the process was not started by one.
 * @throws InvalidArgumentError when a launcher's variables are present but malformed.
 */
export function launcherWorld(env: NodeJS.ProcessEnv = process.env): LauncherWorld | null {
  for (const [launcher, rankVar, sizeVar] of LAUNCHER_VARIABLES) {
    const r = env[rankVar];
    const s = env[sizeVar];
    if (r === undefined || s === undefined) continue;
    const size = Number(s);
    const rank = Number(r);
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError(sizeVar, 'a positive integer (the number of processes)', JSON.stringify(s));
    if (!Number.isInteger(rank) || rank < 0 || rank >= size) {
      throw new InvalidArgumentError(rankVar, `an integer in [0, ${size})`, JSON.stringify(r));
    }
    return { rank, size, launcher };
  }
  return null;
}

/** MPI in this build and this process, as `supcon.info().mpi` reports it. */
export interface MpiInfo {
  /** Whether the addon was built with MPI. */
  compiled: boolean;
  /** Why there is no MPI (with what to do), when there is none. */
  reason?: string;
  /** The MPI library's version line. */
  version?: string;
  /** Whether MPI is initialized in this process (by {@link initMpi}). */
  initialized: boolean;
  /** Rank and world size: MPI's once initialized, else the launcher's (0 and 1 without one). */
  rank: number;
  size: number;
  /** The launcher that started this process, or null. */
  launcher: string | null;
}

/** What this build and process offer for MPI. Never throws for a missing MPI. */
export function mpiInfo(): MpiInfo {
  const addon = loadNative();
  const world = safeLauncherWorld();
  const fromLauncher = { rank: world?.rank ?? 0, size: world?.size ?? 1, launcher: world?.launcher ?? null };
  if (!addon) return { compiled: false, reason: `${nativeLoadError()}; ${MPI_INSTALL_HINT}`, initialized: false, ...fromLauncher };
  const n = addon.mpiInfo();
  if (!n.compiled) return { compiled: false, reason: `${n.reason}; ${MPI_INSTALL_HINT}`, initialized: false, ...fromLauncher };
  const live = n.initialized && !n.finalized;
  return {
    compiled: true,
    ...(n.version ? { version: n.version } : {}),
    initialized: live,
    rank: live ? n.rank : fromLauncher.rank,
    size: live ? n.size : fromLauncher.size,
    launcher: fromLauncher.launcher,
  };
}

function safeLauncherWorld(): LauncherWorld | null {
  try {
    return launcherWorld();
  } catch {
    return null;
  }
}

/** The addon's MPI functions, or an {@link MpiError} (ERR_SUPCON_NO_MPI) saying how to get them. */
function requireMpi(what: string): Required<Pick<NativeAddon, MpiFunction>> {
  const addon = loadNative();
  if (!addon) throw new MpiError(`${what} needs MPI, but ${nativeLoadError()}; ${MPI_INSTALL_HINT}`, 'ERR_SUPCON_NO_MPI');
  if (typeof addon.mpiInit !== 'function') {
    throw new MpiError(`${what} needs MPI, but ${addon.mpiInfo().reason}; ${MPI_INSTALL_HINT}`, 'ERR_SUPCON_NO_MPI');
  }
  return addon as unknown as Required<Pick<NativeAddon, MpiFunction>>;
}

type MpiFunction =
  | 'mpiInit'
  | 'mpiInfo'
  | 'mpiAllreduceSum'
  | 'mpiAllgather'
  | 'mpiAllgatherv'
  | 'mpiReduceScatterSum'
  | 'mpiBroadcast'
  | 'mpiBarrier'
  | 'mpiAbort'
  | 'mpiFinalize';

function numbers(argument: string, data: unknown): MpiNumbers {
  if (data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array) {
    return v.typedArray(argument, data, data.constructor as Float32ArrayConstructor) as MpiNumbers;
  }
  return v.fail(argument, 'a Float32Array, Float64Array or Int32Array', data);
}

function array(argument: string, data: unknown): MpiArray {
  if (data instanceof Uint8Array) return v.typedArray(argument, data, Uint8Array);
  if (data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array) return numbers(argument, data);
  return v.fail(argument, 'a Float32Array, Float64Array, Int32Array or Uint8Array', data);
}

/** An empty array of data's type. */
function like<T extends MpiArray>(data: T, length: number): T {
  return new (data.constructor as new (n: number) => T)(length);
}

/**
 * MPI_COMM_WORLD of an initialized MPI, with the collectives on typed arrays. Arguments are
 * checked here (InvalidArgumentError); a failed MPI call throws {@link MpiError} with MPI's text.
 */
export class Communicator {
  /** This process's rank in [0, size). */
  readonly rank: number;
  /** The number of processes. */
  readonly size: number;
  private closed = false;

  /** @internal Use {@link initMpi}. */
  constructor(private readonly addon: Required<Pick<NativeAddon, MpiFunction>>) {
    const n = addon.mpiInfo();
    this.rank = n.rank;
    this.size = n.size;
  }

  private live(what: string): void {
    if (this.closed) throw new MpiError(`${what}: the communicator is closed (MPI was finalized)`, 'ERR_SUPCON_MPI');
  }

  /** Counts, one per rank, each an integer in [0, 2^31). */
  private counts(argument: string, counts: unknown): number[] {
    if (!Array.isArray(counts) || counts.length !== this.size) v.fail(argument, `an array of ${this.size} counts (one per rank)`, counts);
    return (counts as unknown[]).map((c, r) => v.integer(`${argument}[${r}]`, c, 0, 2 ** 31 - 1));
  }

  /** data = the elementwise sum of every rank's data (same length everywhere), in place; returns data. */
  allreduceSum<T extends MpiNumbers>(data: T): T {
    this.live('allreduceSum');
    numbers('data', data);
    callNative(() => this.addon.mpiAllreduceSum(data));
    return data;
  }

  /** Every rank's `data` (the same length on every rank), concatenated in rank order. */
  allgather<T extends MpiArray>(data: T): T {
    this.live('allgather');
    array('data', data);
    const out = like(data, data.length * this.size);
    callNative(() => this.addon.mpiAllgather(data, out));
    return out;
  }

  /**
   * Every rank's `data` concatenated in rank order, with `counts[r]` elements from rank r (the
   * same counts on every rank; `data.length` must be `counts[rank]`).
   */
  allgatherv<T extends MpiArray>(data: T, counts: readonly number[]): T {
    this.live('allgatherv');
    array('data', data);
    const c = this.counts('counts', counts);
    if (data.length !== c[this.rank]) throw new InvalidArgumentError('data', `${c[this.rank]} elements (counts[${this.rank}])`, `${data.length}`);
    const out = like(data, c.reduce((a, b) => a + b, 0));
    callNative(() => this.addon.mpiAllgatherv(data, out, c));
    return out;
  }

  /**
   * The elementwise sum over ranks of `data` (the same length, the sum of counts, everywhere),
   * of which this rank receives its own block: `counts[rank]` elements starting at the sum of
   * the counts before it (MPI_Reduce_scatter).
   */
  reduceScatterSum<T extends MpiNumbers>(data: T, counts: readonly number[]): T {
    this.live('reduceScatterSum');
    numbers('data', data);
    const c = this.counts('counts', counts);
    const total = c.reduce((a, b) => a + b, 0);
    if (data.length !== total) throw new InvalidArgumentError('data', `${total} elements (the sum of counts)`, `${data.length}`);
    const out = like(data, c[this.rank]);
    callNative(() => this.addon.mpiReduceScatterSum(data, out, c));
    return out;
  }

  /** data = root's data on every rank (the same length everywhere), in place; returns data. */
  broadcast<T extends MpiArray>(data: T, root = 0): T {
    this.live('broadcast');
    array('data', data);
    v.integer('root', root, 0, this.size - 1);
    callNative(() => this.addon.mpiBroadcast(data, root));
    return data;
  }

  /** Returns once every rank has called it. */
  barrier(): void {
    this.live('barrier');
    callNative(() => this.addon.mpiBarrier());
  }

  /** Ends every process of the job (MPI_Abort); the launcher reports it. Does not return normally. */
  abort(code = 1): void {
    this.addon.mpiAbort(v.integer('code', code, 0, 255));
  }

  /** MPI_Finalize: collective; nothing may be called afterwards. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    callNative(() => this.addon.mpiFinalize());
  }
}

let world: Communicator | null = null;

/**
 * Initializes MPI in this process (once; later calls return the same communicator).
 * @throws MpiError ERR_SUPCON_NO_MPI when this build has no MPI (the message says how to get it),
 * ERR_SUPCON_MPI when MPI_Init fails or MPI was already finalized.
 */
export function initMpi(): Communicator {
  if (world) return world;
  const addon = requireMpi('initMpi');
  callNative(() => addon.mpiInit());
  return (world = new Communicator(addon));
}
