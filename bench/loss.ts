/**
 * Fused SupCon forward+backward (native) for D = 128 over N, against the tfjs composed reference
 * (supConLossReference + tf.grad on the cpu backend) measured in the same run for small N.
 *   npx tsx bench/loss.ts [--sizes 1024,2048,...] [--reference-max 2048] [--reps 3]
 */
import * as tf from '@tensorflow/tfjs';
import { supcon, supConLossReference } from '../src';
import { machine, printTable, timeMs, writeJson } from './util';

export interface LossBenchRow {
  n: number;
  dim: number;
  nativeMs: number;
  gflops: number;
  /** Peak extra memory the native call allocated (its own tracked buffers), bytes. */
  nativeExtraBytes: number;
  /** Growth of the process's peak RSS during the native calls, bytes (upper bound of extra). */
  maxRssGrowthBytes: number;
  referenceMs: number | null;
  speedup: number | null;
}

export interface LossBenchOptions {
  sizes?: number[];
  dim?: number;
  referenceMax?: number;
  reps?: number;
}

function unitRows(n: number, dim: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296) - 0.5;
  const x = new Float32Array(n * dim);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let k = 0; k < dim; k++) {
      const v = rand();
      x[r * dim + k] = v;
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(ss);
    for (let k = 0; k < dim; k++) x[r * dim + k] *= inv;
  }
  return x;
}

export async function runLossBench(opts: LossBenchOptions = {}): Promise<LossBenchRow[]> {
  await tf.setBackend('cpu');
  const sizes = opts.sizes ?? [1024, 2048, 4096, 8192, 16384, 65536];
  const dim = opts.dim ?? 128;
  const referenceMax = opts.referenceMax ?? 2048;
  const rows: LossBenchRow[] = [];
  for (const n of sizes) {
    // Two views of n/2 samples in 100 classes: the usual SupCon batch layout.
    const batch = n / 2;
    const features = unitRows(n, dim, n);
    const labels = Int32Array.from({ length: batch }, (_, i) => (i * 7919) % 100);
    const input = { features, shape: [batch, 2, dim], labels, device: 'cpu' as const };
    const reps = n >= 65536 ? 1 : n >= 16384 ? 2 : (opts.reps ?? 5);
    let extra = 0;
    const rssBefore = process.resourceUsage().maxRSS * 1024;
    const nativeMs = await timeMs(
      () => {
        extra = Math.max(extra, supcon.forwardBackward(input).workspaceBytes);
      },
      reps,
      n >= 65536 ? 0 : 1,
    );
    const rssGrowth = process.resourceUsage().maxRSS * 1024 - rssBefore;
    let referenceMs: number | null = null;
    if (n <= referenceMax) {
      const x = tf.tensor3d(features, [batch, 2, dim]);
      const y = tf.tensor1d(labels, 'int32');
      const grad = tf.valueAndGrad((f: tf.Tensor) => supConLossReference(f, y) as tf.Scalar);
      referenceMs = await timeMs(
        () => {
          const { value, grad: g } = grad(x);
          g.dataSync();
          tf.dispose([value, g]);
        },
        1,
        0,
      );
      tf.dispose([x, y]);
    }
    rows.push({
      n,
      dim,
      nativeMs,
      gflops: (8 * n * n * dim) / (nativeMs * 1e6),
      nativeExtraBytes: extra,
      maxRssGrowthBytes: Math.max(0, rssGrowth),
      referenceMs,
      speedup: referenceMs === null ? null : referenceMs / nativeMs,
    });
    console.log(`loss N=${n}: native ${nativeMs.toFixed(1)} ms${referenceMs ? `, tfjs reference ${referenceMs.toFixed(0)} ms` : ''}`);
  }
  return rows;
}

export function printLossTable(rows: LossBenchRow[]): void {
  printTable(
    'Fused SupCon forward+backward (two views, 100 classes, L_out), median ms; tfjs reference = supConLossReference + tf.grad on the cpu backend, same run',
    ['N', 'D', 'native ms', 'GFLOP/s (8N^2D)', 'native extra MB', 'peak RSS growth MB', 'tfjs ref ms', 'speedup'],
    rows.map((r) => [
      r.n,
      r.dim,
      r.nativeMs,
      r.gflops,
      r.nativeExtraBytes / 1e6,
      r.maxRssGrowthBytes / 1e6,
      r.referenceMs ?? '-',
      r.speedup === null ? '-' : `${r.speedup.toFixed(0)}x`,
    ]),
  );
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (require.main === module) {
  (async () => {
    const rows = await runLossBench({
      sizes: arg('sizes')?.split(',').map(Number),
      referenceMax: arg('reference-max') ? Number(arg('reference-max')) : undefined,
      reps: arg('reps') ? Number(arg('reps')) : undefined,
    });
    printLossTable(rows);
    writeJson('bench/results/loss.json', { machine: machine(), rows });
  })();
}
