/**
 * Runs an exported model the way a user of plain tfjs would: in a separate Node process whose
 * node_modules hold @tensorflow/tfjs and nothing of supcon-native, loading `model.json` over HTTP
 * from a local server with `tf.loadLayersModel(url)` (the browser's path), preprocessing as
 * `metadata.json` says.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repo = join(__dirname, '..', '..');

const SCRIPT = `
const tf = require('@tensorflow/tfjs');
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const [dir, inputFile] = process.argv.slice(2);
let supconLoadable = true;
try { require.resolve('supcon-native'); } catch { supconLoadable = false; }
const server = http.createServer((req, res) => {
  fs.readFile(path.join(dir, decodeURIComponent(req.url.slice(1))), (err, data) => {
    if (err) { res.statusCode = 404; res.end(); } else res.end(data);
  });
});
server.listen(0, '127.0.0.1', async () => {
  try {
    await tf.setBackend('cpu');
    const url = 'http://127.0.0.1:' + server.address().port + '/';
    const meta = await (await fetch(url + 'metadata.json')).json();
    const model = await tf.loadLayersModel(url + 'model.json');
    const { pixels } = JSON.parse(fs.readFileSync(inputFile, 'utf8'));
    const [, h, w, c] = meta.input.shape;
    const { mean, std } = meta.input.normalization;
    const x = tf.tidy(() => tf.tensor4d(pixels, [pixels.length / (h * w * c), h, w, c]).div(255).sub(tf.tensor1d(mean)).div(tf.tensor1d(std)));
    let ys = model.predict(x);
    if (!Array.isArray(ys)) ys = [ys];
    const out = { supconLoadable, classes: model.layers.map((l) => l.getClassName()) };
    for (const o of meta.outputs) {
      let y = ys[o.index];
      if (o.name === 'projection') y = tf.div(y, tf.norm(y, 'euclidean', 1, true));
      out[o.name] = Array.from(y.dataSync());
    }
    console.log(JSON.stringify(out));
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    process.exitCode = 1;
  } finally {
    server.close();
  }
});
`;

/** Outputs of the export in `dir` on uint8 NHWC `pixels`, by output name, computed with plain tfjs. */
export function runWithPlainTfjs(dir: string, pixels: ArrayLike<number>): Record<string, number[]> & { supconLoadable: boolean; classes: string[] } {
  const project = mkdtempSync(join(tmpdir(), 'plain-tfjs-'));
  mkdirSync(join(project, 'node_modules', '@tensorflow'), { recursive: true });
  for (const pkg of ['tfjs', 'tfjs-core', 'tfjs-layers', 'tfjs-converter', 'tfjs-data', 'tfjs-backend-cpu', 'tfjs-backend-webgl']) {
    symlinkSync(join(repo, 'node_modules', '@tensorflow', pkg), join(project, 'node_modules', '@tensorflow', pkg));
  }
  writeFileSync(join(project, 'run.cjs'), SCRIPT);
  writeFileSync(join(project, 'input.json'), JSON.stringify({ pixels: Array.from(pixels) }));
  const r = spawnSync(process.execPath, ['run.cjs', dir, join(project, 'input.json')], { cwd: project, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`plain tfjs failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}
