/**
 * The `supcon` command run as a child process from source (`node --import tsx src/cli/main.ts`),
 * as a user runs it: exit codes, one-line errors, help, and tiny end-to-end runs.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorLines, supcon } from '../helpers/cli';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'supcon-cli-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Flags of a tiny but real run: ResNet-8 at width 1/8 on 32 images. */
const TINY = ['--width', '0.125', '--limit-train', '32', '--limit-test', '32', '--batch-size', '16', '--knn-bank', '32', '--knn-queries', '32', '--linear-epochs', '3'];

describe.concurrent('usage errors: one line on stderr, exit code 2', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown flag', ['train', '--epoch', '3'], /^supcon train: unknown option '--epoch' \(Did you mean --epochs\?\)$/],
    ['non-numeric value', ['train', '--lr', 'fast'], /^supcon train: Expected finite number > 0 for --lr but received 'fast' of type string$/],
    ['out-of-range value', ['train', '--batch-size', '1'], /^supcon train: Expected integer >= 2 for --batch-size but received 1 of type number$/],
    ['unknown choice', ['train', '--method', 'byol'], /^supcon train: Expected one of 'supcon', 'simclr', 'ce' for --method but received 'byol'/],
    ['warmup longer than training', ['train', '--epochs', '2', '--warmup-epochs', '3'], /--warmup-epochs/],
    ['missing checkpoint', ['eval', '--checkpoint', '/nonexistent/run'], /^supcon eval: Cannot use checkpoint file \/nonexistent\/run: no such directory$/],
    ['missing required flag', ['embed', '--out', 'x.json'], /^supcon embed: required option '--checkpoint <dir>' not specified$/],
    ['bad output type', ['embed', '--checkpoint', 'runs/x', '--out', 'map.png'], /'\.json', '\.npy' or '\.tsv' for --out/],
    ['config flag with --resume', ['train', '--resume', 'runs/x', '--epochs', '3'], /^supcon train: Expected nothing when --resume is given .* for --epochs but received 3$/],
    ['negative queue size', ['train', '--queue-size', '-1'], /^supcon train: Expected integer in \[0, 2147483647\] for --queue-size but received -1 of type number$/],
    ['non-numeric chunk size', ['train', '--chunk-size', 'big'], /for --chunk-size but received 'big'/],
    ['queue with cross-entropy', ['train', '--method', 'ce', '--queue-size', '8'], /config\.queueSize/],
    ['labels CSV on a built-in dataset', ['train', '--labels-csv', 'labels.csv'], /only dataset 'image-folder' has labelsCsv\) for config\.labelsCsv/],
    ['unknown augmentation preset', ['train', '--augment', 'strong'], /^supcon train: Expected one of 'auto', 'paper', 'crop-flip', .* for --augment but received 'strong'/],
    ['severity out of range', ['robustness', '--checkpoint', 'runs/x', '--severities', '1,6'], /^supcon robustness: Expected integer in \[1, 5\] for --severities but received 6 of type number$/],
    ['unknown corruption', ['robustness', '--checkpoint', 'runs/x', '--corruptions', 'contrast,fog'], /^supcon robustness: Expected one of .* for --corruptions but received 'fog'/],
    ['unknown command', ['fit'], /^supcon: unknown command 'fit'/],
    ['no command', [], /^supcon: missing command/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const { code, stdout, stderr } = await supcon(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const lines = errorLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });
});

describe.concurrent('help', () => {
  it.each([
    [[], 'Usage: supcon [options] [command]', ['train', 'eval', 'robustness', 'embed', 'neighbors', 'export', 'plot']],
    [['robustness'], 'Usage: supcon robustness [options]', ['--checkpoint <dir>', '--corruptions <list>', '--severities <list>', '--seed <n>']],
    [['train'], 'Usage: supcon train [options]', ['--method <name>', '--batch-size <n>', '(default: 256)', '--resume <dir>', '--optimizer <name>', '--queue-size <n>', '--chunk-size <n>', '--labels-csv <file>']],
    [['eval'], 'Usage: supcon eval [options]', ['--checkpoint <dir>', '--retrain']],
    [['embed'], 'Usage: supcon embed [options]', ['--out <file>', '--features <kind>', '--no-map']],
    [['plot'], 'Usage: supcon plot [options]', ['--run <dir>']],
  ])('%j --help', async (args, usage, words) => {
    const { code, stdout } = await supcon([...args, '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain(usage);
    for (const w of words) expect(stdout).toContain(w);
  });
});

describe('end to end', () => {
  it('trains, evaluates, embeds and plots a tiny run', async () => {
    const out = join(root, 'tiny');
    const trained = await supcon(['train', ...TINY, '--epochs', '1', '--out', out]);
    expect(errorLines(trained.stderr)).toEqual([]);
    expect(trained.code).toBe(0);
    const result = JSON.parse(await readFile(join(out, 'result.json'), 'utf8'));
    expect(trained.stdout).toContain(`test accuracy: ${(100 * result.testAccuracy).toFixed(2)}% (linear evaluation, 32 test images, supcon, 1 epochs)`);
    expect(trained.stdout).toMatch(/epoch 1\/1 +loss \d+\.\d{4} +lr [\d.e-]+ +kNN \d+\.\d% +\d+ img\/s/);
    for (const f of ['model.json', 'weights.bin', 'optimizer.json', 'optimizer.bin', 'state.json', 'metrics.jsonl', 'curves.svg', 'curves.png', 'linear/model.json']) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }

    const evaluated = await supcon(['eval', '--checkpoint', out, '--json']);
    expect(evaluated.code).toBe(0);
    expect(JSON.parse(evaluated.stdout)).toMatchObject({ testAccuracy: result.testAccuracy, classifier: 'saved-linear', testCount: 32 });

    const robust = await supcon(['robustness', '--checkpoint', out, '--corruptions', 'contrast,jpeg', '--severities', '1,5']);
    expect(errorLines(robust.stderr)).toEqual([]);
    expect(robust.code).toBe(0);
    const report = JSON.parse(await readFile(join(out, 'robustness.json'), 'utf8'));
    expect(report).toMatchObject({ cleanAccuracy: result.testAccuracy, testCount: 32, severities: [1, 5] });
    expect(robust.stdout).toContain('| corruption | severity 1 | severity 5 | mean |');
    expect(robust.stdout).toMatch(/\| contrast \| \d+\.\d\d% \| \d+\.\d\d% \| \d+\.\d\d% \|/);
    expect(robust.stdout).toContain(`mean corruption accuracy ${(100 * report.meanCorruptionAccuracy).toFixed(2)}%`);

    const embedded = await supcon(['embed', '--checkpoint', out, '--out', join(out, 'emb.json'), '--limit', '20', '--neighbors', '5']);
    expect(embedded.code).toBe(0);
    expect(embedded.stdout).toContain('embedded 20 test images into 8 dimensions');
    for (const f of ['emb.json', 'emb.umap.svg', 'emb.umap.png']) expect(existsSync(join(out, f)), f).toBe(true);

    const plotted = await supcon(['plot', '--run', out, '--out', join(out, 'again')]);
    expect(plotted.code).toBe(0);
    expect(existsSync(join(out, 'again.png'))).toBe(true);
  });

  it('trains with a memory queue and in chunks (--queue-size, --chunk-size) and saves the queue', async () => {
    const out = join(root, 'queue');
    const trained = await supcon(['train', ...TINY, '--knn-bank', '0', '--epochs', '1', '--views', '2', '--queue-size', '48', '--chunk-size', '12', '--out', out]);
    expect(errorLines(trained.stderr)).toEqual([]);
    expect(trained.code).toBe(0);
    const state = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
    expect(state.config).toMatchObject({ queueSize: 48, chunkSize: 12 });
    expect(state.queue).toEqual({ size: 48, dim: 128, labeled: true, rows: 48 });
    expect(existsSync(join(out, 'queue.bin'))).toBe(true);
  });

  it('saves a checkpoint on Ctrl-C (exit 130) and --resume finishes the run', async () => {
    const out = join(root, 'interrupted');
    let sent = false;
    const stopped = await supcon(['train', ...TINY, '--knn-bank', '0', '--epochs', '2', '--out', out], (text, child) => {
      if (!sent && /step 1\/2/.test(text)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(stopped.code).toBe(130);
    expect(stopped.stdout).toContain('SIGINT: saving a checkpoint after the current step');
    expect(stopped.stdout).toContain(`interrupted: checkpoint saved in ${out}`);
    const state = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(state.step).toBeLessThan(4);

    const resumed = await supcon(['train', '--resume', out]);
    expect(errorLines(resumed.stderr)).toEqual([]);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`resuming ${out} at epoch ${state.epoch + 1}, batch ${state.batch + 1}`);
    expect(resumed.stdout).toContain('test accuracy:');
    const finalState = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
    expect(finalState).toMatchObject({ epoch: 2, step: 4 });
  });
});
