/**
 * Fused SupCon forward+backward (native, CPU) for D = 128 over N, against, in the same run:
 *  - PyTorch's widely used formulation (the N x N logits matrix, masks, log-softmax, mean over
 *    positives: bench/torch_loss.py) on the same inputs, when `python3 -c 'import torch'` works;
 *  - the tfjs composed reference (supConLossReference + tf.grad, cpu backend) for small N.
 *   npx tsx bench/loss.ts [--sizes 1024,2048,...] [--classes 10] [--torch-max 16384]
 *                         [--reference-max 2048] [--reps 5] [--no-torch]
 */
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { supcon, supConLossReference } from '../src';
import { machine, printTable, timeMs, writeJson } from './util';

export interface LossBenchRow {
  n: number;
  dim: number;
  classes: number;
  nativeMs: number;
  /** Effective GFLOP/s: the 8 N^2 D flops of the unfused algorithm over the time. */
  gflops: number;
  /** Peak bytes of every buffer the native call allocated (its own workspace accounting). */
  nativeExtraBytes: number;
  /** Growth of the process's peak RSS during the native calls, bytes (upper bound of extra). */
  maxRssGrowthBytes: number;
  nativeLoss: number;
  torchMs: number | null;
  torchLoss: number | null;
  /** PyTorch time over ours (> 1: ours faster). */
  torchRatio: number | null;
  referenceMs: number | null;
  speedup: number | null;
}

export interface LossBenchOptions {
  sizes?: number[];
  dim?: number;
  classes?: number;
  referenceMax?: number;
  torchMax?: number;
  torch?: boolean;
  reps?: number;
}

export interface TorchInfo {
  available: boolean;
  version?: string;
  threads?: number;
  reason?: string;
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

const TEMPERATURE = 0.1;

function repsFor(n: number, reps: number): number {
  return n >= 65536 ? 1 : n >= 16384 ? 2 : reps;
}

/** Whether PyTorch can run here (`python3 -c 'import torch'`). */
export function torchInfo(): TorchInfo {
  const r = spawnSync('python3', ['-c', 'import torch, json; print(json.dumps([torch.__version__, torch.get_num_threads()]))'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) return { available: false, reason: (r.stderr || String(r.error ?? 'python3 not found')).trim().split('\n').pop() };
  const [version, threads] = JSON.parse(r.stdout.trim()) as [string, number];
  return { available: true, version, threads };
}

interface Problem {
  n: number;
  batch: number;
  features: Float32Array;
  labels: Int32Array;
}

/** Runs bench/torch_loss.py on the same problems; ms and loss per N. */
function runTorch(problems: Problem[], dim: number, reps: number): Map<number, { ms: number; loss: number } | { error: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'supcon-bench-'));
  try {
    const entries = problems.map((p) => {
      writeFileSync(join(dir, `N${p.n}_features.f32`), Buffer.from(p.features.buffer, p.features.byteOffset, p.features.byteLength));
      writeFileSync(join(dir, `N${p.n}_labels.i32`), Buffer.from(p.labels.buffer, p.labels.byteOffset, p.labels.byteLength));
      return {
        n: p.n,
        batch: p.batch,
        views: 2,
        dim,
        temperature: TEMPERATURE,
        reps: repsFor(p.n, reps),
        features: `N${p.n}_features.f32`,
        labels: `N${p.n}_labels.i32`,
      };
    });
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ entries }));
    const r = spawnSync('python3', [join(__dirname, 'torch_loss.py'), '--io', dir], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (r.status !== 0) throw new Error(`bench/torch_loss.py failed (status ${r.status})`);
    const report = JSON.parse(r.stdout) as { results: Array<{ n: number; ms?: number; loss?: number; error?: string }> };
    return new Map(
      report.results.map((x) => [x.n, x.error !== undefined ? { error: x.error } : { ms: x.ms!, loss: x.loss! }] as const),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runLossBench(opts: LossBenchOptions = {}): Promise<{ rows: LossBenchRow[]; torch: TorchInfo }> {
  await tf.setBackend('cpu');
  const sizes = opts.sizes ?? [1024, 2048, 4096, 8192, 16384, 65536];
  const dim = opts.dim ?? 128;
  const classes = opts.classes ?? 10;
  const referenceMax = opts.referenceMax ?? 2048;
  const torchMax = opts.torchMax ?? 16384;
  const reps = opts.reps ?? 5;
  const torch: TorchInfo = opts.torch === false ? { available: false, reason: 'disabled (--no-torch)' } : torchInfo();
  const rows: LossBenchRow[] = [];
  const problems: Problem[] = [];
  for (const n of sizes) {
    // Two views of n/2 samples: the usual SupCon batch layout.
    const batch = n / 2;
    const features = unitRows(n, dim, n);
    const labels = Int32Array.from({ length: batch }, (_, i) => (i * 7919) % classes);
    const input = { features, shape: [batch, 2, dim], labels, temperature: TEMPERATURE, device: 'cpu' as const };
    let extra = 0;
    let nativeLoss = NaN;
    const rssBefore = process.resourceUsage().maxRSS * 1024;
    const nativeMs = await timeMs(
      () => {
        const r = supcon.forwardBackward(input);
        extra = Math.max(extra, r.workspaceBytes);
        nativeLoss = r.loss;
      },
      repsFor(n, reps),
      n >= 65536 ? 0 : 1,
    );
    const rssGrowth = process.resourceUsage().maxRSS * 1024 - rssBefore;
    let referenceMs: number | null = null;
    if (n <= referenceMax) {
      const x = tf.tensor3d(features, [batch, 2, dim]);
      const y = tf.tensor1d(labels, 'int32');
      const grad = tf.valueAndGrad((f: tf.Tensor) => supConLossReference(f, y, { temperature: TEMPERATURE }) as tf.Scalar);
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
    if (torch.available && n <= torchMax) problems.push({ n, batch, features, labels });
    rows.push({
      n,
      dim,
      classes,
      nativeMs,
      gflops: (8 * n * n * dim) / (nativeMs * 1e6),
      nativeExtraBytes: extra,
      maxRssGrowthBytes: Math.max(0, rssGrowth),
      nativeLoss,
      torchMs: null,
      torchLoss: null,
      torchRatio: null,
      referenceMs,
      speedup: referenceMs === null ? null : referenceMs / nativeMs,
    });
    console.log(`loss N=${n}: native ${nativeMs.toFixed(1)} ms${referenceMs ? `, tfjs reference ${referenceMs.toFixed(0)} ms` : ''}`);
  }
  if (problems.length) {
    // After the native runs, so that the two never compete for the cores.
    const results = runTorch(problems, dim, reps);
    for (const row of rows) {
      const t = results.get(row.n);
      if (!t || 'error' in t) continue;
      row.torchMs = t.ms;
      row.torchLoss = t.loss;
      row.torchRatio = t.ms / row.nativeMs;
      // The same loss on the same inputs (float32 both; docs/loss.md's tolerance).
      const rel = Math.abs(t.loss - row.nativeLoss) / Math.max(1, Math.abs(t.loss));
      if (rel > 1e-5) throw new Error(`PyTorch and native losses disagree at N=${row.n}: ${t.loss} vs ${row.nativeLoss}`);
      console.log(`loss N=${row.n}: PyTorch ${t.ms.toFixed(0)} ms (${row.torchRatio.toFixed(1)}x native)`);
    }
  }
  return { rows, torch };
}

export function printLossTable(rows: LossBenchRow[], torch: TorchInfo): void {
  const classes = rows[0]?.classes ?? 0;
  printTable(
    `Fused SupCon forward+backward (two views, ${classes} classes, L_out, tau ${TEMPERATURE}), median ms; ` +
      `PyTorch ${torch.available ? `${torch.version} (${torch.threads} threads)` : `not run: ${torch.reason}`} = the dense formulation ` +
      '(bench/torch_loss.py); tfjs reference = supConLossReference + tf.grad on the cpu backend; all in the same run',
    ['N', 'D', 'native ms', 'GFLOP/s (8N^2D)', 'native extra MB', 'peak RSS growth MB', 'PyTorch ms', 'PyTorch / native', 'tfjs ref ms', 'tfjs / native'],
    rows.map((r) => [
      r.n,
      r.dim,
      r.nativeMs,
      r.gflops,
      r.nativeExtraBytes / 1e6,
      r.maxRssGrowthBytes / 1e6,
      r.torchMs ?? '-',
      r.torchRatio === null ? '-' : `${r.torchRatio.toFixed(1)}x`,
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
    const { rows, torch } = await runLossBench({
      sizes: arg('sizes')?.split(',').map(Number),
      classes: arg('classes') ? Number(arg('classes')) : undefined,
      referenceMax: arg('reference-max') ? Number(arg('reference-max')) : undefined,
      torchMax: arg('torch-max') ? Number(arg('torch-max')) : undefined,
      torch: !process.argv.includes('--no-torch'),
      reps: arg('reps') ? Number(arg('reps')) : undefined,
    });
    printLossTable(rows, torch);
    writeJson('bench/results/loss.json', { machine: machine(), torch, rows });
  })();
}
