/**
 * Multi-label training data (issue 12): label sets per image beside the one class id every
 * dataset has. SupCon then treats two images as positives when their sets share a label
 * (docs/loss.md, "Positives"); the class ids stay what the kNN monitor and linear evaluation score.
 *
 * A labels CSV (`--labels-csv FILE`, `TrainConfig.labelsCsv`) gives the sets of an image folder's
 * training images, one line per image:
 *
 *     train/cat/001.jpg,indoor;pet;cat
 *     train/dog/007.png,outdoor;pet
 *
 * the image's path relative to the data folder (no commas in it), a comma, then its labels
 * separated by ';' (any text without ';', surrounding spaces trimmed; empty: no label, so the
 * image has no positive). Blank lines and lines starting with '#' are skipped. Every training
 * image needs a line; lines naming no training image (test images, say) are ignored.
 */
import { readFile } from 'node:fs/promises';
import { relative, resolve as resolvePath, sep } from 'node:path';
import * as validate from '../validate';
import { InvalidArgumentError } from '../errors';
import type { ImageDataset } from './datasets';

/** Label sets of a dataset's records: multi-hot bytes [count, names.length], names sorted. */
export interface DatasetLabelSets {
  /** Row r (record r) holds 1 where the record has label names[c]. */
  readonly sets: Uint8Array;
  readonly numLabels: number;
  readonly names: readonly string[];
}

/**
 * A copy of `dataset` whose records carry label sets, from one list of label names per record.
 * @throws InvalidArgumentError naming `labels` when there is not one list per record.
 */
export function withLabelSets<D extends ImageDataset>(dataset: D, labels: ReadonlyArray<readonly string[]>): D {
  if (!Array.isArray(labels) || labels.length !== dataset.count) {
    throw new InvalidArgumentError('labels', `one list of label names per record (${dataset.count})`, Array.isArray(labels) ? `${labels.length} lists` : validate.describe(labels));
  }
  const names = [...new Set(labels.flat())].sort();
  const index = new Map(names.map((n, i) => [n, i]));
  const sets = new Uint8Array(dataset.count * names.length);
  labels.forEach((list, r) => {
    for (const name of list) sets[r * names.length + index.get(name)!] = 1;
  });
  return { ...dataset, labelSets: { sets, numLabels: names.length, names } };
}

/** The label sets of records `indices` (rows of `labelSets`), as the loss takes them. */
export function gatherLabelSets(labelSets: DatasetLabelSets, indices: ArrayLike<number>): { sets: Uint8Array; numLabels: number } {
  const L = labelSets.numLabels;
  const sets = new Uint8Array(indices.length * L);
  for (let i = 0; i < indices.length; i++) sets.set(labelSets.sets.subarray(indices[i] * L, (indices[i] + 1) * L), i * L);
  return { sets, numLabels: L };
}

/** Parses a labels CSV (see the module note) into label lists by absolute path. */
export function parseLabelsCsv(text: string, dataDir: string, file: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const comma = line.indexOf(',');
    if (comma <= 0) throw new InvalidArgumentError(`${file}:${i + 1}`, "'path,label1;label2;...'", JSON.stringify(raw));
    const path = resolvePath(dataDir, line.slice(0, comma).trim());
    const labels = line
      .slice(comma + 1)
      .split(';')
      .map((l) => l.trim())
      .filter((l) => l !== '');
    if (out.has(path)) throw new InvalidArgumentError(`${file}:${i + 1}`, 'one line per image', `a second line for ${line.slice(0, comma).trim()}`);
    out.set(path, labels);
  });
  return out;
}

/**
 * Reads a labels CSV and attaches its label sets to an image-folder split.
 * @param dataset A split with the absolute path of every record (`paths`, as image folders have).
 * @param dataDir The folder the CSV's paths are relative to (the dataset's `--data-dir`).
 * @throws InvalidArgumentError naming the file (and line) for a malformed line, or an image of the split without a line.
 */
export async function readLabelsCsv<D extends ImageDataset & { paths: readonly string[] }>(file: string, dataset: D, dataDir: string): Promise<D> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError('labelsCsv', 'a readable labels CSV file', `${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const byPath = parseLabelsCsv(text, dataDir, file);
  const missing: string[] = [];
  const lists = dataset.paths.map((p) => {
    const l = byPath.get(resolvePath(p));
    if (l === undefined) missing.push(relative(dataDir, p).split(sep).join('/'));
    return l ?? [];
  });
  if (missing.length > 0) {
    throw new InvalidArgumentError(
      file,
      `a line for every ${dataset.split} image`,
      `none for ${missing.length} of them, e.g. ${missing.slice(0, 3).join(', ')}`,
    );
  }
  return withLabelSets(dataset, lists);
}
