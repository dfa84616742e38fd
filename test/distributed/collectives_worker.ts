/**
 * The collectives of src/mpi.ts on K ranks, run by mpi.test.ts:
 *   mpirun -np K node --import tsx test/distributed/collectives_worker.ts <outPrefix>
 * Each rank writes what it received to <outPrefix>.<rank>.json; the test computes the expected
 * values itself (they depend only on rank and size) and compares.
 */
import { writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../src/errors';
import { supcon } from '../../src/loss/native_loss';
import { initMpi } from '../../src/mpi';

/** The values every rank contributes: rank r's element i of a collective is r * 100 + i (+ a fraction for floats). */
const mine = (rank: number, n: number, fraction = 0.25) => Array.from({ length: n }, (_, i) => rank * 100 + i + fraction);

function argumentError(run: () => unknown): { argument: string; message: string } | null {
  try {
    run();
    return null;
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    return { argument: e.argument, message: e.message };
  }
}

function main(): void {
  const prefix = process.argv[2];
  const comm = initMpi();
  const { rank, size } = comm;
  const info = supcon.info().mpi;
  // Uneven counts, one rank contributing nothing: rank r sends (r * 2) % 3 elements.
  const counts = Array.from({ length: size }, (_, r) => (r * 2) % 3);
  const result = {
    rank,
    size,
    info: { compiled: info.compiled, initialized: info.initialized, rank: info.rank, size: info.size },
    allreduceF32: Array.from(comm.allreduceSum(Float32Array.from(mine(rank, 5)))),
    allreduceF64: Array.from(comm.allreduceSum(Float64Array.from(mine(rank, 3, 1e-12)))),
    allreduceI32: Array.from(comm.allreduceSum(Int32Array.from(mine(rank, 4, 0)))),
    allgather: Array.from(comm.allgather(Float32Array.from(mine(rank, 3)))),
    allgatherBytes: Array.from(comm.allgather(Uint8Array.from([rank, 255 - rank]))),
    allgatherv: Array.from(comm.allgatherv(Float64Array.from(mine(rank, counts[rank])), counts)),
    // Every rank sends sum(counts) elements: element j is rank * 1000 + j; rank r keeps its block of the sums.
    reduceScatter: Array.from(
      comm.reduceScatterSum(
        Float32Array.from({ length: counts.reduce((a, b) => a + b, 0) }, (_, j) => rank * 1000 + j),
        counts,
      ),
    ),
    broadcastFromLast: Array.from(comm.broadcast(Int32Array.from(mine(rank, 3, 0)), size - 1)),
    // Checked before any message is sent, so a bad call fails on its rank alone and never hangs.
    errors: {
      allgathervCounts: argumentError(() => comm.allgatherv(new Float32Array(1), [1])),
      allgathervLength: argumentError(() => comm.allgatherv(new Float32Array(counts[rank] + 1), counts)),
      reduceScatterLength: argumentError(() => comm.reduceScatterSum(new Float32Array(1), counts)),
      allreduceType: argumentError(() => comm.allreduceSum([1, 2] as unknown as Float32Array)),
      broadcastRoot: argumentError(() => comm.broadcast(new Int32Array(1), size)),
    },
  };
  comm.barrier();
  writeFileSync(`${prefix}.${rank}.json`, JSON.stringify(result));
  comm.close();
}

main();
