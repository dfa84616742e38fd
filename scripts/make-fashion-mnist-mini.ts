/**
 * Builds data/fashion-mnist-mini: a class-balanced subset of Fashion-MNIST that ships with the
 * package, so training and tests run with no download.
 *
 *   npx tsx scripts/make-fashion-mnist-mini.ts [--source DIR] [--out DIR] [--train-per-class N] [--test-per-class N]
 *
 * Takes the first N records of each class in file order (1000 per class from train, 200 from
 * test), keeps them in file order, and writes gzipped IDX files (level 9). The output is
 * byte-for-byte reproducible: same source files, same result.
 * Source default: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  DEBIAN_FASHION_MNIST_DIR,
  embeddedDataDir,
  firstPerClass,
  loadDataset,
  subsetDataset,
  type Split,
} from '../src/data/datasets';
import { writeIdxFile } from '../src/data/idx';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      source: { type: 'string', default: DEBIAN_FASHION_MNIST_DIR },
      out: { type: 'string', default: embeddedDataDir() },
      'train-per-class': { type: 'string', default: '1000' },
      'test-per-class': { type: 'string', default: '200' },
    },
  });
  const outDir = resolve(values.out!);
  mkdirSync(outDir, { recursive: true });
  const perClass: Record<Split, number> = {
    train: Number(values['train-per-class']),
    test: Number(values['test-per-class']),
  };
  for (const split of ['train', 'test'] as const) {
    const full = await loadDataset('fashion-mnist', { dataDir: values.source, split });
    const subset = subsetDataset(full, firstPerClass(full.labels, full.numClasses, perClass[split]));
    const prefix = split === 'train' ? 'train' : 't10k';
    const imagesPath = join(outDir, `${prefix}-images-idx3-ubyte.gz`);
    const labelsPath = join(outDir, `${prefix}-labels-idx1-ubyte.gz`);
    await writeIdxFile(imagesPath, {
      dataType: 'uint8',
      shape: [subset.count, subset.height, subset.width],
      data: subset.images,
    });
    await writeIdxFile(labelsPath, { dataType: 'uint8', shape: [subset.count], data: Uint8Array.from(subset.labels) });
    for (const path of [imagesPath, labelsPath]) {
      const bytes = readFileSync(path);
      const digest = createHash('sha256').update(bytes).digest('hex');
      console.log(`${path}: ${bytes.length} bytes, sha256 ${digest}`);
    }
    console.log(`${split}: ${subset.count} of ${full.count} records, ${perClass[split]} per class`);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
