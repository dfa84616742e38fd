/**
 * `npm run bench`: every benchmark of the package, each comparing against its alternative in the
 * same run. Prints tables and writes bench/results/<name>.json.
 *   npm run bench -- [--only loss|kernels|training|distributed] [--quick]
 * The full run times tfjs's JS kernels once per ResNet-18 layer (about 40 minutes on a 2-core
 * machine); --quick skips the JS side of the kernel table and the largest loss sizes (minutes).
 */
import { supcon } from '../src';
import { printDistributedTable, runDistributedBench } from './distributed';
import { formatKernelBench, runKernelBench } from './kernels';
import { printLossTable, runLossBench } from './loss';
import { printTrainingTable, runTrainingBench } from './training';
import { machine, writeJson } from './util';

async function main(): Promise<void> {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
  const quick = process.argv.includes('--quick');
  if (!supcon.isAvailable()) {
    console.error(`supcon-native: the addon is not available (${supcon.info().reason}); nothing to benchmark.`);
    process.exit(1);
  }
  const m = machine();
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, node ${m.node}, simd ${m.simd}, ${m.threads} threads`);
  if (!only || only === 'loss') {
    const { rows, torch } = await runLossBench(quick ? { sizes: [1024, 2048, 8192], reps: 3 } : {});
    printLossTable(rows, torch);
    writeJson('bench/results/loss.json', { machine: m, torch, rows });
  }
  if (!only || only === 'training') {
    const result = await runTrainingBench(quick ? { steps: 5 } : {});
    printTrainingTable(result);
    writeJson('bench/results/training.json', result);
  }
  if (!only || only === 'distributed') {
    // K = 1 and K = 2 (mpirun -np 2, when MPI is here) on the same global batch.
    const result = runDistributedBench(quick ? { steps: 5, rounds: 1 } : {});
    printDistributedTable(result);
    writeJson('bench/results/distributed.json', result);
  }
  if (!only || only === 'kernels') {
    const result = await runKernelBench({ js: !quick, log: (line) => console.error(line) });
    console.log('\n' + formatKernelBench(result));
    writeJson('bench/results/kernels.json', result);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
