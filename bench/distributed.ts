/**
 * Data-parallel benchmark (docs/distributed.md): the trainer's SupCon step on a global batch
 * (ResNet-8, 28x28x1, two views, the loss over the whole global batch, SGD momentum) as
 *
 * - K = 1, 1 thread: one process, the whole batch;
 * - K = 1, 2 threads: one process, the whole batch, the native kernels on two threads;
 * - K = 2, 1 thread per rank: `mpirun -np 2`, each rank half the batch, the collectives between.
 *
 * Per step: the step's wall time (rank 0), the all-gather of features and labels, the reduce-
 * scatter that returns the contrast rows' gradients to their owners, and the one allreduce of
 * the gradients, each as measured inside the step (which includes waiting for the slower rank)
 * and alone (every rank entering together: the transfer itself). Also the loss's own cost
 * (forward and backward on fixed features): this rank's share against the whole batch, which
 * is what "recompute" (every rank taking every anchor's loss, no reduce-scatter) would pay.
 *   npx tsx bench/distributed.ts [--steps 10] [--batch 128] [--rounds 3]
 */
import { spawnSync } from 'node:child_process';
import { mpiInfo } from '../src/mpi';
import { MPI_LAUNCH_ENV } from '../test/helpers/mpi'; // root allowed, oversubscription, Open MPI's own transports
import { machine, median, printTable, writeJson } from './util';

/** What one process (rank) reported; times in ms, medians over the timed steps. */
export interface RankTimes {
  rank: number;
  size: number;
  threads: number;
  localBatch: number;
  stepMs: number;
  gatherMs: number;
  scatterMs: number;
  allreduceMs: number;
  allreduceAloneMs: number;
  gatherAloneMs: number;
  gradientFloats: number;
  shareLossMs: number;
  wholeLossMs: number;
}

export interface DistributedBenchRow {
  setup: string;
  processes: number;
  threadsPerProcess: number;
  globalBatch: number;
  /** Rank 0's step, and the slowest rank's collectives. */
  stepMs: number;
  imagesPerSecond: number;
  gatherMs: number;
  scatterMs: number;
  allreduceMs: number;
  allreduceAloneMs: number;
  gatherAloneMs: number;
  shareLossMs: number;
  wholeLossMs: number;
  /** Per rank, medians over the rounds. */
  ranks: RankTimes[];
  /** Every round's per-rank results. */
  rounds: RankTimes[][];
}

export interface DistributedBenchResult {
  machine: ReturnType<typeof machine>;
  mpi: string | null;
  /** Timed steps per run, and rounds. */
  steps: number;
  rounds: number;
  /** Why K = 2 was not measured, when it was not. */
  skipped?: string;
  rows: DistributedBenchRow[];
}


function runWorker(processes: number, threads: number, globalBatch: number, steps: number): RankTimes[] {
  const worker = ['--import', 'tsx', 'bench/distributed_worker.ts', '--batch', String(globalBatch), '--steps', String(steps)];
  const env = { ...process.env, ...MPI_LAUNCH_ENV, SUPCON_NUM_THREADS: String(threads) };
  const r =
    processes === 1
      ? spawnSync(process.execPath, worker, { encoding: 'utf8', env })
      : spawnSync('mpirun', ['-np', String(processes), '-x', 'SUPCON_NUM_THREADS', process.execPath, ...worker], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`the distributed benchmark worker failed (${processes} processes): ${(r.stderr ?? '').slice(-2000)}`);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('[')).pop()!;
  return JSON.parse(line) as RankTimes[];
}

/**
 * Each round runs every setup once, one after the other; a row's numbers are the medians over
 * the rounds of each run's medians (a shared host's load varies from second to second).
 */
export function runDistributedBench(options: { steps?: number; batch?: number; rounds?: number } = {}): DistributedBenchResult {
  const steps = options.steps ?? 10;
  const rounds = options.rounds ?? 3;
  const globalBatch = options.batch ?? 128;
  const info = mpiInfo();
  const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  const skipped = mpirun.status !== 0 ? 'mpirun is not on PATH' : !info.compiled ? `the addon has no MPI (${info.reason})` : undefined;
  const setups: Array<[string, number, number]> = [
    ['K=1, 1 thread', 1, 1],
    ['K=1, 2 threads', 1, 2],
    ...(skipped ? [] : ([['K=2, 1 thread per rank', 2, 1]] as Array<[string, number, number]>)),
  ];
  const runs: RankTimes[][][] = setups.map(() => []);
  for (let round = 0; round < rounds; round++) {
    setups.forEach(([setup, processes, threads], i) => {
      console.error(`distributed: round ${round + 1}/${rounds}, ${setup} ...`);
      runs[i].push(runWorker(processes, threads, globalBatch, steps));
    });
  }
  const rows = setups.map(([setup, processes, threads], i): DistributedBenchRow => {
    // Per rank and key, the median over rounds.
    const ranks = runs[i][0].map((first, r) =>
      Object.fromEntries(Object.keys(first).map((key) => [key, median(runs[i].map((run) => run[r][key as keyof RankTimes] as number))])) as unknown as RankTimes,
    );
    const slowest = (key: keyof RankTimes) => Math.max(...ranks.map((r) => r[key] as number));
    return {
      setup,
      processes,
      threadsPerProcess: threads,
      globalBatch,
      stepMs: ranks[0].stepMs,
      imagesPerSecond: (2 * globalBatch * 1000) / ranks[0].stepMs,
      gatherMs: slowest('gatherMs'),
      scatterMs: slowest('scatterMs'),
      allreduceMs: slowest('allreduceMs'),
      allreduceAloneMs: slowest('allreduceAloneMs'),
      gatherAloneMs: slowest('gatherAloneMs'),
      shareLossMs: slowest('shareLossMs'),
      wholeLossMs: slowest('wholeLossMs'),
      ranks,
      rounds: runs[i],
    };
  });
  return { machine: machine(), mpi: info.version ?? null, steps, rounds, ...(skipped ? { skipped } : {}), rows };
}

export function printDistributedTable(r: DistributedBenchResult): void {
  printTable(
    `Data-parallel SupCon step (ResNet-8, 28x28x1, global batch ${r.rows[0]?.globalBatch} x 2 views; ms, medians of ${r.steps} steps, median over ${r.rounds} rounds; collectives: slowest rank)`,
    ['setup', 'step', 'img/s', 'allgather', 'reduce-scatter', 'allreduce', 'allgather alone', 'allreduce alone', 'loss: share', 'loss: whole batch'],
    r.rows.map((x) => [
      x.setup,
      x.stepMs,
      x.imagesPerSecond,
      x.processes > 1 ? x.gatherMs : '-',
      x.processes > 1 ? x.scatterMs : '-',
      x.processes > 1 ? x.allreduceMs : '-',
      x.processes > 1 ? x.gatherAloneMs : '-',
      x.processes > 1 ? x.allreduceAloneMs : '-',
      x.processes > 1 ? x.shareLossMs : '-',
      x.wholeLossMs,
    ]),
  );
  if (r.skipped) console.log(`K=2 not measured: ${r.skipped}`);
}

if (require.main === module) {
  const arg = (name: string, fallback: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : fallback);
  const result = runDistributedBench({ steps: arg('--steps', 10), batch: arg('--batch', 128), rounds: arg('--rounds', 3) });
  printDistributedTable(result);
  writeJson('bench/results/distributed.json', result);
}
