/**
 * Jobs of the data-parallel tests: `mpirun -np K` over this repository's sources, and why such
 * tests skip where they cannot run (no mpirun on PATH, or an addon built without MPI).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { mpiInfo } from '../../src/mpi';
import type { Outcome } from './cli';

const repo = resolve(__dirname, '..', '..');

/** Why an `mpirun` job cannot run here, or null when it can. */
export function mpiSkipReason(): string | null {
  const probe = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return 'mpirun is not on PATH (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev, then rebuild the addon)';
  const info = mpiInfo();
  if (!info.compiled) return `the addon has no MPI: ${info.reason}`;
  return null;
}

/**
 * What every `mpirun` here needs (Open MPI; other MPIs ignore it): root is refused without the
 * two ALLOW variables (CI containers run as root); a machine with fewer cores than ranks may be
 * oversubscribed; no cross-memory attach (containers often forbid the ptrace it needs). The
 * benchmark launches with this and Open MPI's own choice of transports.
 */
export const MPI_LAUNCH_ENV: Readonly<Record<string, string>> = Object.freeze({
  OMPI_ALLOW_RUN_AS_ROOT: '1',
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  OMPI_MCA_rmaps_base_oversubscribe: '1',
  OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
});

/**
 * The tests' jobs: {@link MPI_LAUNCH_ENV}, one machine's shared memory only (pml ob1, btl self +
 * vader: no probing of network fabrics, whose warnings would fill stderr in containers), and
 * no SUPCON_DEBUG.
 */
export const MPI_ENV: Readonly<Record<string, string>> = Object.freeze({
  ...MPI_LAUNCH_ENV,
  OMPI_MCA_pml: 'ob1',
  OMPI_MCA_btl: 'self,vader',
  SUPCON_DEBUG: '',
});

/** Options of {@link mpirun}. */
export interface MpirunOptions {
  /** Sees the job's output so far; may signal mpirun. */
  onStdout?: (text: string, child: ChildProcess) => void;
  /** mpirun's own flags before the program (e.g. ['--mca', 'odls_base_sigkill_timeout', '30']). */
  mpiArgs?: string[];
}

/** The CLI's entry point, relative to the repository root, for {@link mpirun}. */
export const CLI_SCRIPT = join('src', 'cli', 'main.ts');

/** Runs `mpirun -np <ranks> node --import tsx <script> ...args` from the repository root (script relative to it). */
export function mpirun(ranks: number, script: string, args: string[], options: MpirunOptions = {}): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const argv = ['-np', String(ranks), ...(options.mpiArgs ?? []), process.execPath, '--import', 'tsx', join(repo, script), ...args];
    const child = spawn('mpirun', argv, { cwd: repo, env: { ...process.env, ...MPI_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      options.onStdout?.(stdout, child);
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Text without terminal control sequences (Open MPI gives the ranks a pty, so progress bars draw). */
export const plain = (text: string) => text.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');
