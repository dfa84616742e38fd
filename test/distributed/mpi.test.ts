/**
 * Data-parallel training over MPI (docs/distributed.md), run as users run it: `mpirun -np K`
 * jobs of worker scripts and of the CLI. These skip, saying why, where mpirun or an addon with
 * MPI is missing (CI installs Open MPI, so there they run). The checks without MPI always run.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorLines, supcon } from '../helpers/cli';
import { CLI_SCRIPT, mpiSkipReason, mpirun, plain } from '../helpers/mpi';
import { InvalidArgumentError } from '../../src/errors';
import { supcon as native } from '../../src/loss/native_loss';
import { launcherWorld, mpiInfo } from '../../src/mpi';
import { shardOf, shardSizes, shareCores } from '../../src/train/distributed';
import { readTrainingState } from '../../src/train/run_state';
import { trainRun } from '../../src/train/trainer';
import { smallSplits, tinyConfig, tinyEncoder } from '../train/helpers';

const skipReason = mpiSkipReason();
if (skipReason) process.stderr.write(`test/distributed/mpi.test.ts: skipping the mpirun jobs: ${skipReason}\n`);

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'supcon-mpi-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A tiny real run: ResNet-8 at width 1/8, 64 training images in global batches of 16 (4 steps an epoch). */
const TINY = ['--width', '0.125', '--limit-train', '64', '--limit-test', '32', '--batch-size', '16', '--knn-bank', '32', '--knn-queries', '32', '--linear-epochs', '3'];

describe('shards of a global batch', () => {
  it('are contiguous, disjoint, cover the batch in order, and differ in size by at most one', () => {
    for (const [length, size] of [[16, 2], [13, 2], [10, 3], [5, 5], [7, 4]]) {
      const batch = Int32Array.from({ length }, (_, i) => 100 + 3 * i);
      const shards = Array.from({ length: size }, (_, r) => Array.from(shardOf(batch, r, size)));
      expect(shards.flat()).toEqual(Array.from(batch));
      expect(shards.map((s) => s.length)).toEqual(shardSizes(length, size));
      expect(Math.max(...shards.map((s) => s.length)) - Math.min(...shards.map((s) => s.length))).toBeLessThanOrEqual(1);
    }
  });
});

describe('the launcher\'s environment', () => {
  it('gives rank and size (Open MPI first, then PMI, MVAPICH, Slurm), null without a launcher', () => {
    expect(launcherWorld({})).toBeNull();
    expect(launcherWorld({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4', PMI_RANK: '0', PMI_SIZE: '2' })).toEqual({ rank: 1, size: 4, launcher: 'Open MPI' });
    expect(launcherWorld({ PMI_RANK: '0', PMI_SIZE: '2' })).toEqual({ rank: 0, size: 2, launcher: 'PMI' });
    expect(launcherWorld({ SLURM_PROCID: '3', SLURM_STEP_NUM_TASKS: '8' })).toEqual({ rank: 3, size: 8, launcher: 'Slurm' });
    expect(launcherWorld({ SLURM_PROCID: '0' })).toBeNull(); // a batch script, not a task of srun
  });

  it('malformed variables are an InvalidArgumentError naming the variable', () => {
    const error = (env: NodeJS.ProcessEnv) => {
      try {
        launcherWorld(env);
      } catch (e) {
        return e;
      }
      return null;
    };
    expect(error({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '2' })).toMatchObject({ argument: 'OMPI_COMM_WORLD_RANK', received: '"2"' });
    expect(error({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: 'two' })).toBeInstanceOf(InvalidArgumentError);
    expect(error({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: 'two' })).toMatchObject({ argument: 'OMPI_COMM_WORLD_SIZE' });
  });
});

describe.skipIf(!native.isAvailable())('ranks sharing a machine', () => {
  it('split its cores between their thread pools unless SUPCON_NUM_THREADS is set', () => {
    const before = native.info().cpu.threads;
    try {
      expect(shareCores({ OMPI_COMM_WORLD_LOCAL_SIZE: '2' })).toBe(Math.max(1, Math.floor(availableParallelism() / 2)));
      expect(native.info().cpu.threads).toBe(Math.max(1, Math.floor(availableParallelism() / 2)));
      expect(shareCores({ MPI_LOCALNRANKS: String(4 * availableParallelism()) })).toBe(1);
      expect(native.info().cpu.threads).toBe(1);
      expect(shareCores({ OMPI_COMM_WORLD_LOCAL_SIZE: '2', SUPCON_NUM_THREADS: '3' })).toBeNull();
      expect(shareCores({ OMPI_COMM_WORLD_LOCAL_SIZE: '1' })).toBeNull();
      expect(shareCores({})).toBeNull();
    } finally {
      native.setNumThreads(before);
    }
  });
});

describe.skipIf(!mpiInfo().compiled)('--sync-bn in one process', () => {
  it('refuses an encoder whose batch norm it cannot reach (tfjs BatchNormalization layers), naming them', async () => {
    const run = trainRun(tinyConfig({ syncBatchNorm: true, epochs: 1 }), {
      outDir: join(root, 'plain-bn'),
      datasets: await smallSplits(32, 16),
      buildEncoder: tinyEncoder,
      fastKernels: false,
    });
    await expect(run).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(run).rejects.toMatchObject({ argument: 'config.syncBatchNorm' });
    await expect(run).rejects.toThrow(/tfjs BatchNormalization layers \(tiny_bn1, tiny_bn2\)/);
  });
});

describe('without MPI', () => {
  const noAddon = { SUPCON_DISABLE_NATIVE: '1' };
  it('a process launched as one of several refuses to train alone, saying how to get MPI', async () => {
    const { code, stderr } = await supcon(['train', ...TINY, '--epochs', '1', '--out', join(root, 'never')], undefined, {
      ...noAddon,
      OMPI_COMM_WORLD_RANK: '0',
      OMPI_COMM_WORLD_SIZE: '2',
    });
    expect(code).not.toBe(0);
    const lines = errorLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^supcon train: This process was started by Open MPI as rank 0 of 2, but data-parallel training needs MPI/);
    expect(lines[0]).toContain('apt-get install libopenmpi-dev openmpi-bin');
  });

  it('--sync-bn is refused with the same advice', async () => {
    const { code, stderr } = await supcon(['train', ...TINY, '--epochs', '1', '--sync-bn', '--out', join(root, 'never2')], undefined, noAddon);
    expect(code).not.toBe(0);
    const lines = errorLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^supcon train: config\.syncBatchNorm \(--sync-bn\) averages batch statistics across MPI processes and needs MPI/);
    expect(lines[0]).toContain('apt-get install libopenmpi-dev openmpi-bin');
  });
});

describe.skipIf(skipReason !== null)(`under mpirun${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('supcon.info().mpi: compiled, with its version; not initialized in a process no launcher started', () => {
    expect(native.info().mpi).toMatchObject({ compiled: true, initialized: false, rank: 0, size: 1, launcher: null });
    expect(native.info().mpi.version).toMatch(/MPI/);
  });

  it('collectives: allreduce, allgather(v), reduce-scatter and broadcast on 3 ranks; bad arguments fail before any message', async () => {
    const prefix = join(root, 'collectives');
    const job = await mpirun(3, 'test/distributed/collectives_worker.ts', [prefix]);
    expect(job.code, job.stderr).toBe(0);
    const size = 3;
    const mine = (rank: number, n: number, fraction = 0.25) => Array.from({ length: n }, (_, i) => rank * 100 + i + fraction);
    const sum = (n: number, fraction: number) => Array.from({ length: n }, (_, i) => [0, 1, 2].reduce((a, r) => a + mine(r, n, fraction)[i], 0));
    const counts = [0, 2, 1];
    for (let rank = 0; rank < size; rank++) {
      const r = JSON.parse(readFileSync(`${prefix}.${rank}.json`, 'utf8'));
      expect(r).toMatchObject({ rank, size, info: { compiled: true, initialized: true, rank, size } });
      expect(r.allreduceF32).toEqual(sum(5, 0.25));
      r.allreduceF64.forEach((x: number, i: number) => expect(x).toBeCloseTo(sum(3, 1e-12)[i], 12));
      expect(r.allreduceI32).toEqual(sum(4, 0));
      expect(r.allgather).toEqual([0, 1, 2].flatMap((q) => mine(q, 3)));
      expect(r.allgatherBytes).toEqual([0, 255, 1, 254, 2, 253]);
      expect(r.allgatherv).toEqual([0, 1, 2].flatMap((q) => mine(q, counts[q])));
      const begin = counts.slice(0, rank).reduce((a, b) => a + b, 0);
      expect(r.reduceScatter).toEqual(Array.from({ length: counts[rank] }, (_, i) => 3 * (begin + i) + 1000 * (0 + 1 + 2)));
      expect(r.broadcastFromLast).toEqual(mine(size - 1, 3, 0));
      expect(r.errors.allgathervCounts).toMatchObject({ argument: 'counts' });
      expect(r.errors.allgathervCounts.message).toMatch(/an array of 3 counts \(one per rank\)/);
      expect(r.errors.allgathervLength).toMatchObject({ argument: 'data' });
      expect(r.errors.allgathervLength.message).toContain(`${counts[rank]} elements (counts[${rank}])`);
      expect(r.errors.reduceScatterLength).toMatchObject({ argument: 'data' });
      expect(r.errors.allreduceType).toMatchObject({ argument: 'data' });
      expect(r.errors.broadcastRoot).toMatchObject({ argument: 'root' });
    }
  });

  it('one data-parallel step on 2 ranks equals one process on the concatenated global batch (loss, every gradient, batch-norm statistics)', async () => {
    const out = join(root, 'step.json');
    const job = await mpirun(2, 'test/distributed/step_worker.ts', [out]);
    expect(job.code, job.stderr).toBe(0);
    const { size, results, optimizerStates } = JSON.parse(await readFile(out, 'utf8'));
    expect(size).toBe(2);
    // Max |difference| relative to the largest |value| of the single-process gradients.
    const relative = (a: number[][], b: number[][]) => {
      let worst = 0;
      let scale = 1e-30;
      a.forEach((row, i) => row.forEach((x, j) => ((worst = Math.max(worst, Math.abs(x - b[i][j]))), (scale = Math.max(scale, Math.abs(b[i][j]))))));
      return worst / scale;
    };
    const names: string[] = [];
    for (const c of results) {
      names.push(c.name);
      // Every rank used rank 0's weights (they started from others).
      expect(c.checksums[1], c.name).toBe(c.checksums[0]);
      expect(c.leaked, `${c.name}: tensors left per rank`).toEqual([0, 0]);
      const exact = !/per-rank/.test(c.name);
      const { distributed: d, single: s } = c;
      expect(d.grads.length, c.name).toBe(s.grads.length);
      if (exact) {
        expect(Math.abs(d.loss - s.loss) / Math.abs(s.loss), c.name).toBeLessThan(1e-6);
        expect(relative(d.grads, s.grads), c.name).toBeLessThan(1e-5);
        expect(relative(c.movingDistributed, s.moving), c.name).toBeLessThan(1e-5);
      } else {
        // Per-rank batch norm normalizes each shard by its own moments: a different computation
        // (this is what --sync-bn is for), which the comparison must be able to see.
        expect(relative(d.grads, s.grads), c.name).toBeGreaterThan(1e-3);
      }
    }
    expect(names).toEqual(expect.arrayContaining([expect.stringMatching(/^supcon all/), expect.stringMatching(/^supcon one/), expect.stringMatching(/^simclr all/), expect.stringMatching(/^simclr one/), expect.stringMatching(/^cross-entropy/), expect.stringMatching(/1 view/), expect.stringMatching(/L_in variant/)]));
    expect(optimizerStates[0].length).toBeGreaterThan(1);
    expect(optimizerStates[1]).toEqual(optimizerStates[0]);
  });

  it('a 2-rank run finishes with rank 0 writing it; the checkpoint loads in one process; resume needs the same K', async () => {
    const out = join(root, 'run');
    const job = await mpirun(2, CLI_SCRIPT, ['train', ...TINY, '--epochs', '2', '--sync-bn', '--out', out]);
    const stdout = plain(job.stdout);
    expect(errorLines(job.stderr)).toEqual([]);
    expect(job.code).toBe(0);
    expect(stdout).toContain('2 epochs x 4 steps of 16 over 2 processes');
    expect(stdout.match(/test accuracy:/g)).toHaveLength(1); // rank 0 alone reports
    const result = JSON.parse(await readFile(join(out, 'result.json'), 'utf8'));
    const state = await readTrainingState(out);
    expect(state).toMatchObject({ epoch: 2, step: 8, worldSize: 2, config: { syncBatchNorm: true, batchSize: 16 } });
    expect(readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // A state.json whose worldSize is not a count of processes is refused when read.
    const bad = join(root, 'bad-world');
    await mkdir(bad);
    await writeFile(join(bad, 'state.json'), JSON.stringify({ ...state, worldSize: 0 }));
    await expect(readTrainingState(bad)).rejects.toThrow(/'worldSize' is not a positive integer/);
    const metrics = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.filter((m) => m.type === 'epoch')).toHaveLength(2); // written once, by rank 0

    const evaluated = await supcon(['eval', '--checkpoint', out, '--json']);
    expect(evaluated.code).toBe(0);
    expect(JSON.parse(evaluated.stdout)).toMatchObject({ testAccuracy: result.testAccuracy, classifier: 'saved-linear', testCount: 32 });

    const alone = await supcon(['train', '--resume', out]);
    expect(alone.code).not.toBe(0);
    expect(errorLines(alone.stderr).join('\n')).toMatch(/was saved by a run of 2 process\(es\) but this one has 1: resume it with as many \(mpirun -np 2\)/);

    // An error on the ranks ends the job (MPI_Abort) with the rank's message, not a hang.
    const three = await mpirun(3, CLI_SCRIPT, ['train', '--resume', out]);
    expect(three.code).not.toBe(0);
    expect(three.stderr).toMatch(/supcon train \[rank \d of 3\]: .*was saved by a run of 2 process\(es\) but this one has 3.*; stopping every rank/);
    expect(await readTrainingState(out)).toMatchObject({ epoch: 2, step: 8, worldSize: 2 }); // untouched
  });

  it.skipIf(process.platform !== 'linux')('SIGTERM to one rank stops every rank at the same step, rank 0 saves a checkpoint; --resume on 2 ranks finishes the run', async () => {
    // What scancel sends every task, and Open MPI's mpirun the ranks after Ctrl-C (see docs/distributed.md).
    const out = join(root, 'interrupted');
    let sent = false;
    const stopped = await mpirun(2, CLI_SCRIPT, ['train', ...TINY, '--knn-bank', '0', '--epochs', '3', '--out', out], {
      onStdout: (text, child) => {
        if (!sent && text.includes(`run ${out}:`)) {
          sent = true;
          process.kill(rankPid(child.pid!, 1), 'SIGTERM');
        }
      },
    });
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toContain('supcon train [rank 1 of 2]: SIGTERM: every rank stops after the next step and rank 0 saves a checkpoint');
    const stdout = plain(stopped.stdout);
    expect(stdout).toContain(`interrupted: checkpoint saved in ${out}`);
    expect(stdout).toContain(`resume with: mpirun -np 2 supcon train --resume ${out}`);
    const state = await readTrainingState(out);
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(state.step).toBeLessThan(12);

    const resumed = await mpirun(2, CLI_SCRIPT, ['train', '--resume', out]);
    expect(errorLines(resumed.stderr)).toEqual([]);
    expect(resumed.code).toBe(0);
    expect(plain(resumed.stdout)).toContain(`resuming ${out} at epoch ${state.epoch + 1}, batch ${state.batch + 1}`);
    expect(await readTrainingState(out)).toMatchObject({ epoch: 3, step: 12, worldSize: 2 });
  });

  it('Ctrl-C on mpirun (Open MPI: SIGTERM to the ranks a second later, SIGKILL a second after) leaves a checkpoint that loads', async () => {
    const out = join(root, 'ctrl-c');
    let sent = false;
    const job = await mpirun(2, CLI_SCRIPT, ['train', ...TINY, '--knn-bank', '0', '--epochs', '30', '--out', out], {
      onStdout: (text, child) => {
        if (!sent && text.includes(`run ${out}:`)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    });
    expect(sent).toBe(true);
    expect(job.code).not.toBe(0);
    // Rank 0 saves as soon as its SIGTERM arrives (before the ranks agree to stop): whether the
    // launcher's SIGKILL came first or not, a whole checkpoint is there.
    const state = await readTrainingState(out);
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(state.step).toBeLessThan(120);
  });

  it.skipIf(process.platform !== 'linux')('a dead rank stops the job with a message naming it; the last checkpoint stays intact', async () => {
    const out = join(root, 'dead');
    let killed = false;
    const job = await mpirun(2, CLI_SCRIPT, ['train', ...TINY, '--knn-bank', '0', '--epochs', '50', '--out', out], {
      onStdout: (text, child) => {
        if (killed || !/epoch 1\/50 +loss/.test(plain(text))) return;
        killed = true;
        process.kill(rankPid(child.pid!, 1), 'SIGKILL');
      },
    });
    expect(killed).toBe(true);
    expect(job.code).not.toBe(0);
    expect(job.stderr + job.stdout).toMatch(/process rank 1 .* exited on signal 9/s);
    const state = await readTrainingState(out); // parses, and its files are all there
    expect(state.epoch).toBeGreaterThanOrEqual(1);
    expect(state.epoch).toBeLessThan(50);
    const evaluated = await supcon(['eval', '--checkpoint', out, '--json', '--linear-epochs', '1']);
    expect(evaluated.code, evaluated.stderr).toBe(0);
  });
});

/** The pid of rank `rank` among mpirun's children (Linux: read from their environment). */
function rankPid(mpirunPid: number, rank: number): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent !== mpirunPid) continue;
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (env.includes(`OMPI_COMM_WORLD_RANK=${rank}`)) return Number(entry);
    } catch {
      // a process that ended meanwhile
    }
  }
  throw new Error(`no child of mpirun ${mpirunPid} is rank ${rank}`);
}
