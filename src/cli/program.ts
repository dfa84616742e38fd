/**
 * The `supcon` command line: `train`, `eval`, `embed`, `neighbors`, `export` and `plot`. Usage errors (unknown flags,
 * bad values, missing or unusable checkpoints and data) print one line to stderr and exit with
 * code 2; an interrupted training run exits with 130 after saving its checkpoint.
 */
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError, SupConError } from '../errors';
import { packageVersion } from '../paths';
import { DatasetError } from '../data/errors';
import { AUGMENT_PRESET_NAMES, CORRUPTIONS, DATASET_NAMES, SPLITS } from '../data';
import { ENCODER_ARCHS, ENCODER_STEMS, PROJECTION_HEAD_KINDS } from '../models';
import { DEFAULT_LR, DEFAULT_TRAIN_CONFIG, LOSS_VARIANTS, METHODS, type TrainConfig } from '../train/config';
import { CheckpointError } from '../train/errors';
import { OPTIMIZER_NAMES } from '../train/optimizers';
import { DecodeProgressDisplay, TrainingProgress } from '../train/progress';
import { TENSORBOARD_DIR } from '../train/tensorboard';
import { embedImages, exportCheckpoint, findNeighbors } from '../apps';
import type { DataHooks } from '../train/run_dataset';
import { readTrainingState } from '../train/run_state';
import { resumeRun, trainRun, type TrainRunResult } from '../train/trainer';
import { launcherWorld } from '../mpi';
import { EMBEDDING_KINDS, embedCheckpoint, evaluateCheckpoint, plotRun, writeEmbedding } from '../train/evaluate';
import { evaluateRobustness, formatRobustnessTable, writeRobustnessReport } from '../train/robustness';
import { choiceFlag, integerFlag, listFlag, numberFlag, pathFlag } from './flags';

/** Exit codes of the CLI. */

/**
 * The CLI trains on tfjs's cpu backend with the native kernels, so tfjs's first-use banner
 * suggesting tfjs-node is noise here: mark the backend as used before it prints.
 */
async function useCpuBackend(): Promise<void> {
  await tf.setBackend('cpu');
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
}

export const EXIT = Object.freeze({ ok: 0, failure: 1, usage: 2, interrupted: 130 });

/** Where the CLI writes; the process's streams by default. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Thrown to end a command with an exit code after it printed what it had to say. */
class ExitRequest extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

const d = DEFAULT_TRAIN_CONFIG;

/** Train flags that may accompany --resume: they do not change the run itself. */
const RESUME_COMPATIBLE = new Set(['resume', 'dataDir', 'plots', 'fastKernels', 'tensorboard']);

/** Flag name of a commander option key, for messages. */
const flagOf = (key: string) => '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

function timestamp(): string {
  const t = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${t.getFullYear()}${p(t.getMonth() + 1)}${p(t.getDate())}-${p(t.getHours())}${p(t.getMinutes())}${p(t.getSeconds())}`;
}

const percent = (x: number) => `${(100 * x).toFixed(2)}%`;

/** Decoding progress and warnings of image folders: progress on `progress`, warnings on stderr. */
function dataHooks(progress: NodeJS.WritableStream, stderr: NodeJS.WritableStream): DataHooks & { stop(): void } {
  const display = new DecodeProgressDisplay({ stream: progress });
  return {
    onDataProgress: (p) => display.update(p),
    onDataWarning: (m) => {
      display.stop();
      stderr.write(`warning: ${m}\n`);
    },
    stop: () => display.stop(),
  };
}

/** Throws when a flag that does not apply was given on the command line. */
function rejectFlags(cmd: Command, opts: Record<string, unknown>, keys: readonly string[], reason: string): void {
  for (const key of keys) {
    if (cmd.getOptionValueSource(key) === 'cli') throw new InvalidArgumentError(flagOf(key), `nothing ${reason}`, String(opts[key]));
  }
}


/** Builds the program; `io` receives all output. */
export function buildProgram(io: CliIo): Command {
  const out = (line: string) => io.stdout.write(line + '\n');
  const program = new Command('supcon')
    .description('Supervised contrastive learning (SupCon), SimCLR and cross-entropy training on tfjs with native kernels.')
    .version(packageVersion(), '-v, --version')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s), outputError: () => undefined })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .exitOverride();

  // ---------------------------------------------------------------------------------------- train
  const train = program
    .command('train')
    .description(
      'Pre-train an encoder with SupCon, SimCLR or cross-entropy, then score it: linear evaluation of the frozen ' +
        'encoder (supcon, simclr) or the classifier head (ce). Writes a checkpoint every epoch, metrics.jsonl, ' +
        'result.json and curves.svg/png into --out. Ctrl-C saves a checkpoint and exits; --resume continues. ' +
        'Under mpirun -np K (or srun) it trains data-parallel: --batch-size is the global batch, split across the K ' +
        'processes, and the loss sees all of it; rank 0 writes the run.',
    )
    .addOption(new Option('--method <name>', `training method: ${METHODS.join(', ')}`).default(d.method).argParser(choiceFlag('--method', METHODS)))
    .addOption(new Option('--model <arch>', `encoder: ${ENCODER_ARCHS.join(', ')}`).default(d.arch).argParser(choiceFlag('--model', ENCODER_ARCHS)))
    .addOption(new Option('--width <x>', 'channel width multiplier of the encoder').default(d.width).argParser(numberFlag('--width', { gt: 0 })))
    .addOption(new Option('--stem <kind>', `encoder stem: ${ENCODER_STEMS.join(', ')} (default: the model's own)`).argParser(choiceFlag('--stem', ENCODER_STEMS)))
    .addOption(new Option('--dataset <name>', `dataset: ${DATASET_NAMES.join(', ')}`).default(d.dataset).argParser(choiceFlag('--dataset', DATASET_NAMES)))
    .addOption(new Option('--data-dir <dir>', "folder of the dataset's files (default: its usual location)").argParser(pathFlag('--data-dir')))
    .addOption(new Option('--limit-train <n>', 'use only the first n training images').argParser(integerFlag('--limit-train', 2)))
    .addOption(new Option('--limit-test <n>', 'use only the first n test images').argParser(integerFlag('--limit-test', 1)))
    .addOption(new Option('--image-size <px>', 'image-folder: side of the square images (shorter side resized, center crop; default 32)').argParser(integerFlag('--image-size', 8, 4096)))
    .addOption(new Option('--channels <n>', 'image-folder: 1 (grayscale) or 3 (RGB; default)').argParser((raw: string) => Number(choiceFlag('--channels', ['1', '3'] as const)(raw))))
    .addOption(new Option('--val-split <fraction>', 'image-folder without a test/ folder: fraction of each class held out as the test split').argParser(numberFlag('--val-split', { gt: 0, lt: 1 })))
    .option('--strict', 'image-folder: an unreadable image is an error (default: skipped with a warning)')
    .addOption(new Option('--labels-csv <file>', "image-folder: label sets of the training images ('path,label1;label2' lines, paths relative to --data-dir): SupCon's positives share a label").argParser(pathFlag('--labels-csv')))
    .addOption(new Option('--epochs <n>', 'pre-training epochs').default(d.epochs).argParser(integerFlag('--epochs', 1)))
    .addOption(new Option('--batch-size <n>', 'images per step (each gives --views views in supcon/simclr)').default(d.batchSize).argParser(integerFlag('--batch-size', 2)))
    .addOption(new Option('--views <n>', 'augmented views per image in supcon/simclr (simclr needs 2 or more) (default: 1 for supcon, 2 for simclr)').argParser(integerFlag('--views', 1, 16)))
    .addOption(new Option('--optimizer <name>', `optimizer: ${OPTIMIZER_NAMES.join(', ')}`).default(d.optimizer).argParser(choiceFlag('--optimizer', OPTIMIZER_NAMES)))
    .addOption(new Option('--lr <x>', `peak learning rate (default: ${DEFAULT_LR.sgd} for sgd, ${DEFAULT_LR.lars} for lars)`).argParser(numberFlag('--lr', { gt: 0 })))
    .addOption(new Option('--momentum <x>', 'momentum').default(d.momentum).argParser(numberFlag('--momentum', { ge: 0, lt: 1 })))
    .addOption(new Option('--weight-decay <x>', 'L2 weight decay (not on biases and BatchNorm)').default(d.weightDecay).argParser(numberFlag('--weight-decay', { ge: 0 })))
    .addOption(new Option('--warmup-epochs <n>', 'epochs of linear learning-rate warmup before the cosine decay').default(d.warmupEpochs).argParser(integerFlag('--warmup-epochs', 0)))
    .addOption(new Option('--temperature <x>', 'temperature of the SupCon / NT-Xent loss').default(d.temperature).argParser(numberFlag('--temperature', { gt: 0 })))
    .addOption(new Option('--queue-size <n>', 'supcon/simclr: rows of the cross-batch memory queue (the last n projected rows of earlier steps join the contrast set; 0: none)').default(d.queueSize).argParser(integerFlag('--queue-size', 0, 2 ** 31 - 1)))
    .addOption(new Option('--chunk-size <n>', 'supcon/simclr: gradient caching, the model over the batch x views rows in chunks of n rows (peak memory follows the chunk; 0: no chunks)').default(d.chunkSize).argParser(integerFlag('--chunk-size', 0, 2 ** 31 - 1)))
    .addOption(new Option('--loss-variant <v>', `SupCon loss: ${LOSS_VARIANTS.join(', ')} (L_out or L_in of the paper)`).default(d.lossVariant).argParser(choiceFlag('--loss-variant', LOSS_VARIANTS)))
    .addOption(
      new Option('--augment <preset>', `augmentation: auto (by image kind: flip for small grayscale, paper for RGB), ${AUGMENT_PRESET_NAMES.join(', ')}`)
        .default(d.augment)
        .argParser(choiceFlag('--augment', ['auto', ...AUGMENT_PRESET_NAMES] as const)),
    )
    .addOption(new Option('--projection-dim <n>', 'output size of the projection head').default(d.projectionDim).argParser(integerFlag('--projection-dim', 1)))
    .addOption(new Option('--head <kind>', `projection head: ${PROJECTION_HEAD_KINDS.join(', ')}`).default(d.projectionHead).argParser(choiceFlag('--head', PROJECTION_HEAD_KINDS)))
    .addOption(new Option('--linear-epochs <n>', 'epochs of the linear classifier in linear evaluation').default(d.linearEpochs).argParser(integerFlag('--linear-epochs', 1)))
    .addOption(new Option('--linear-lr <x>', 'learning rate of the linear classifier').default(d.linearLr).argParser(numberFlag('--linear-lr', { gt: 0 })))
    .addOption(new Option('--knn-k <n>', 'neighbours of the per-epoch kNN monitor').default(d.knnK).argParser(integerFlag('--knn-k', 1)))
    .addOption(new Option('--knn-bank <n>', 'training images in the kNN bank (0: no kNN monitor)').default(d.knnBank).argParser(integerFlag('--knn-bank', 0)))
    .addOption(new Option('--knn-queries <n>', 'test images the kNN monitor classifies (0: no kNN monitor)').default(d.knnQueries).argParser(integerFlag('--knn-queries', 0)))
    .addOption(new Option('--seed <n>', 'seed of weights, shuffling and augmentation').default(d.seed).argParser(integerFlag('--seed', 0, 2 ** 32 - 1)))
    .option('--sync-bn', 'data-parallel runs: batch norm over the whole global batch (moments averaged across processes; needs MPI)')
    .addOption(new Option('--out <dir>', 'run directory (default: runs/<method>-<model>-<time>)').argParser(pathFlag('--out')))
    .addOption(new Option('--resume <dir>', "continue the run in <dir> from its checkpoint (its config is kept)").argParser(pathFlag('--resume')))
    .option('--no-plots', 'do not draw curves.svg/png at the end')
    .option('--no-tensorboard', `do not write TensorBoard files into <out>/${TENSORBOARD_DIR}`)
    .option('--no-fast-kernels', 'do not use the native tfjs kernels')
    .action(async (opts: Record<string, unknown>, cmd: Command) => {
      for (const key of Object.keys(opts)) {
        if (opts.resume !== undefined && !RESUME_COMPATIBLE.has(key) && cmd.getOptionValueSource(key) === 'cli') {
          throw new InvalidArgumentError(
            flagOf(key),
            'nothing when --resume is given (a resumed run keeps the config saved in its state.json)',
            String(opts[key]),
          );
        }
      }
      // Data-parallel: rank 0 shows progress and results; the other ranks report only errors.
      const world = launcherWorld();
      const quiet = world !== null && world.rank !== 0;
      const progress = new TrainingProgress({ stream: io.stdout, warningStream: io.stderr });
      const controller = new AbortController();
      let interrupts = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        interrupts += 1;
        if (interrupts > 1) {
          progress.stop();
          io.stderr.write(`supcon train: ${signal} again: exiting without saving\n`);
          process.exit(EXIT.interrupted);
        }
        if (quiet) io.stderr.write(`supcon train [rank ${world.rank} of ${world.size}]: ${signal}: every rank stops after the next step and rank 0 saves a checkpoint\n`);
        else progress.log(`${signal}: saving a checkpoint after the current step (press Ctrl-C again to quit without saving)`);
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const common = {
        signal: controller.signal,
        ...(quiet ? {} : { callbacks: progress }),
        fastKernels: opts.fastKernels !== false,
        tensorboard: opts.tensorboard !== false,
      };
      let run: TrainRunResult;
      try {
        await useCpuBackend();
        if (opts.resume !== undefined) {
          run = await resumeRun({ outDir: opts.resume as string, ...common }, opts.dataDir === undefined ? {} : { dataDir: opts.dataDir as string });
        } else {
          const config: Partial<TrainConfig> = {
            method: opts.method as TrainConfig['method'],
            arch: opts.model as TrainConfig['arch'],
            width: opts.width as number,
            dataset: opts.dataset as TrainConfig['dataset'],
            epochs: opts.epochs as number,
            batchSize: opts.batchSize as number,
            optimizer: opts.optimizer as TrainConfig['optimizer'],
            momentum: opts.momentum as number,
            weightDecay: opts.weightDecay as number,
            warmupEpochs: opts.warmupEpochs as number,
            temperature: opts.temperature as number,
            queueSize: opts.queueSize as number,
            chunkSize: opts.chunkSize as number,
            lossVariant: opts.lossVariant as TrainConfig['lossVariant'],
            augment: opts.augment as TrainConfig['augment'],
            projectionDim: opts.projectionDim as number,
            projectionHead: opts.head as TrainConfig['projectionHead'],
            linearEpochs: opts.linearEpochs as number,
            linearLr: opts.linearLr as number,
            knnK: opts.knnK as number,
            knnBank: opts.knnBank as number,
            knnQueries: opts.knnQueries as number,
            seed: opts.seed as number,
            syncBatchNorm: opts.syncBn === true,
          };
          for (const [key, flagKey] of [
            ['lr', 'lr'],
            ['views', 'views'],
            ['stem', 'stem'],
            ['dataDir', 'dataDir'],
            ['limitTrain', 'limitTrain'],
            ['limitTest', 'limitTest'],
            ['imageSize', 'imageSize'],
            ['channels', 'channels'],
            ['valSplit', 'valSplit'],
            ['strict', 'strict'],
            ['labelsCsv', 'labelsCsv'],
          ] as const) {
            if (opts[flagKey] !== undefined) (config as Record<string, unknown>)[key] = opts[flagKey];
          }
          if ((config.warmupEpochs ?? 0) > (config.epochs ?? 1)) {
            throw new InvalidArgumentError('--warmup-epochs', `an integer <= --epochs (${config.epochs})`, `${config.warmupEpochs}`);
          }
          const outDir = (opts.out as string | undefined) ?? join('runs', `${config.method}-${config.arch}-${timestamp()}`);
          run = await trainRun(config, { outDir, ...common });
        }
      } finally {
        progress.stop();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      if (run.rank !== 0) {
        if (run.status === 'interrupted') throw new ExitRequest(EXIT.interrupted);
        return;
      }
      if (run.status === 'interrupted') {
        const state = await readTrainingState(run.outDir);
        out(
          `interrupted: checkpoint saved in ${run.outDir} (epoch ${state.epoch + 1}, batch ${state.batch + 1}, step ${state.step}); ` +
            `resume with: ${run.worldSize > 1 ? `mpirun -np ${run.worldSize} ` : ''}supcon train --resume ${run.outDir}`,
        );
        throw new ExitRequest(EXIT.interrupted);
      }
      const r = run.result!;
      if (opts.plots !== false) {
        try {
          const [svg, png] = await plotRun(run.outDir);
          out(`curves: ${svg}, ${png}`);
        } catch (e) {
          io.stderr.write(`supcon train: could not draw the curves: ${(e as Error).message.split('\n')[0]}\n`);
        }
      }
      out(`results: ${join(run.outDir, 'result.json')}, ${join(run.outDir, 'metrics.jsonl')}`);
      if (opts.tensorboard !== false) out(`tensorboard: tensorboard --logdir ${join(run.outDir, TENSORBOARD_DIR)}`);
      out(
        `test accuracy: ${percent(r.testAccuracy)} (${r.evaluation === 'linear' ? 'linear evaluation' : 'classifier head'}, ` +
          `${r.testCount} test images, ${r.method}, ${r.epochs} epochs)`,
      );
    });

  // ----------------------------------------------------------------------------------------- eval
  program
    .command('eval')
    .description(
      "Test accuracy of a checkpoint: the run's saved linear classifier (supcon, simclr), a new linear " +
        'evaluation when it has none, or the classifier head (ce).',
    )
    .addOption(new Option('--checkpoint <dir>', 'run directory holding the checkpoint').makeOptionMandatory().argParser(pathFlag('--checkpoint')))
    .addOption(new Option('--data-dir <dir>', "folder of the dataset's files (default: the run's)").argParser(pathFlag('--data-dir')))
    .addOption(new Option('--limit-test <n>', "score only the first n test images (default: the run's limit)").argParser(integerFlag('--limit-test', 1)))
    .addOption(new Option('--linear-epochs <n>', "epochs of a newly trained linear classifier (default: the run's)").argParser(integerFlag('--linear-epochs', 1)))
    .option('--retrain', 'train a new linear classifier even if the run saved one')
    .option('--json', 'print the result as JSON')
    .option('--no-fast-kernels', 'do not use the native tfjs kernels')
    .action(async (opts: Record<string, unknown>) => {
      await useCpuBackend();
      const { stop, ...hooks } = dataHooks(opts.json === true ? io.stderr : io.stdout, io.stderr);
      const result = await evaluateCheckpoint(opts.checkpoint as string, {
        ...hooks,
        ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir as string }),
        ...(opts.limitTest === undefined ? {} : { limitTest: opts.limitTest as number }),
        ...(opts.linearEpochs === undefined ? {} : { linearEpochs: opts.linearEpochs as number }),
        retrain: opts.retrain === true,
        fastKernels: opts.fastKernels !== false,
      });
      stop();
      if (opts.json === true) {
        out(JSON.stringify(result));
        return;
      }
      const source = { 'ce-head': 'classifier head', 'saved-linear': 'saved linear classifier', 'trained-linear': 'new linear evaluation' }[
        result.classifier
      ];
      out(
        `test accuracy: ${percent(result.testAccuracy)} (${source}, ${result.testCount} test images, ${result.method}, ` +
          `${result.epochs} epochs)`,
      );
    });

  // ----------------------------------------------------------------------------------- robustness
  program
    .command('robustness')
    .description(
      "Test accuracy of a checkpoint under common corruptions (Hendrycks & Dietterich 2019, CIFAR-10-C's parameters), " +
        'each at severities 1-5 with seeded noise: prints a table with the mean corruption accuracy and its ratio to ' +
        'the clean accuracy, and writes JSON (default <checkpoint>/robustness.json).',
    )
    .addOption(new Option('--checkpoint <dir>', 'run directory holding the checkpoint').makeOptionMandatory().argParser(pathFlag('--checkpoint')))
    .addOption(new Option('--corruptions <list>', `comma-separated kinds (default all): ${CORRUPTIONS.join(', ')}`).argParser(listFlag('--corruptions', choiceFlag('--corruptions', CORRUPTIONS))))
    .addOption(new Option('--severities <list>', 'comma-separated severities, 1-5 (default all)').argParser(listFlag('--severities', integerFlag('--severities', 1, 5))))
    .addOption(new Option('--seed <n>', "seed of the corruptions' noise").default(0).argParser(integerFlag('--seed', 0, 2 ** 32 - 1)))
    .addOption(new Option('--limit-test <n>', "score only the first n test images (default: the run's limit)").argParser(integerFlag('--limit-test', 1)))
    .addOption(new Option('--data-dir <dir>', "folder of the dataset's files (default: the run's)").argParser(pathFlag('--data-dir')))
    .addOption(new Option('--out <file>', 'JSON report (default: <checkpoint>/robustness.json)').argParser(pathFlag('--out')))
    .option('--json', 'print the report as JSON instead of a table')
    .option('--no-fast-kernels', 'do not use the native tfjs kernels')
    .action(async (opts: Record<string, unknown>) => {
      await useCpuBackend();
      const report = await evaluateRobustness(opts.checkpoint as string, {
        ...(opts.corruptions === undefined ? {} : { corruptions: opts.corruptions as (typeof CORRUPTIONS)[number][] }),
        ...(opts.severities === undefined ? {} : { severities: opts.severities as number[] }),
        seed: opts.seed as number,
        ...(opts.limitTest === undefined ? {} : { limitTest: opts.limitTest as number }),
        ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir as string }),
        fastKernels: opts.fastKernels !== false,
      });
      const file = await writeRobustnessReport(report, ...(opts.out === undefined ? [] : [opts.out as string]));
      if (opts.json === true) {
        out(JSON.stringify(report));
        return;
      }
      out(formatRobustnessTable(report));
      out(`report: ${file}`);
    });

  // ---------------------------------------------------------------------------------------- embed
  program
    .command('embed')
    .description(
      "Embed images with a checkpoint: a split of the run's dataset, or any image file or folder (--images). " +
        'Writes the vectors with their classes (and file paths) as .json, .npy (+ <name>.meta.json) or .tsv ' +
        '(+ <name>.labels.tsv), plus a 2-D UMAP map colored by class as <out>.umap.svg and .png.',
    )
    .addOption(new Option('--checkpoint <dir>', 'run directory holding the checkpoint').makeOptionMandatory().argParser(pathFlag('--checkpoint')))
    .addOption(new Option('--out <file>', 'output file, .json, .npy or .tsv').makeOptionMandatory().argParser(pathFlag('--out')))
    .addOption(new Option('--images <path>', 'an image file or a folder of images (recursive; a subfolder name is the class) instead of a split').argParser(pathFlag('--images')))
    .addOption(new Option('--split <name>', `split: ${SPLITS.join(', ')}`).default('test').argParser(choiceFlag('--split', SPLITS)))
    .addOption(new Option('--limit <n>', 'images of the split to embed, class-balanced').default(2000).argParser(integerFlag('--limit', 1)))
    .addOption(new Option('--features <kind>', `vectors: ${EMBEDDING_KINDS.join(', ')}`).default('encoder').argParser(choiceFlag('--features', EMBEDDING_KINDS)))
    .option('--projection', 'the L2-normalized projection head output (same as --features projection)')
    .addOption(new Option('--neighbors <n>', 'UMAP neighbours').default(15).argParser(integerFlag('--neighbors', 2)))
    .addOption(new Option('--seed <n>', "seed of UMAP (default: derived from the run's)").argParser(integerFlag('--seed', 0, 2 ** 32 - 1)))
    .addOption(new Option('--data-dir <dir>', "folder of the dataset's files (default: the run's)").argParser(pathFlag('--data-dir')))
    .option('--strict', 'with --images: an unreadable image is an error (default: skipped with a warning)')
    .option('--no-map', 'skip the UMAP map')
    .option('--no-fast-kernels', 'do not use the native tfjs kernels')
    .action(async (opts: Record<string, unknown>, cmd: Command) => {
      const file = opts.out as string;
      if (!/\.(json|npy|tsv)$/i.test(file)) throw new InvalidArgumentError('--out', "a file name ending in '.json', '.npy' or '.tsv'", `'${file}'`);
      if (opts.projection === true && cmd.getOptionValueSource('features') === 'cli' && opts.features !== 'projection') {
        throw new InvalidArgumentError('--features', "'projection' or nothing when --projection is given", `'${opts.features}'`);
      }
      const kind = opts.projection === true ? 'projection' : (opts.features as 'encoder' | 'projection');
      await useCpuBackend();
      const { stop, ...hooks } = dataHooks(io.stdout, io.stderr);
      let embedding;
      if (opts.images !== undefined) {
        rejectFlags(cmd, opts, ['split', 'limit', 'dataDir'], 'with --images (it embeds every image found there)');
        embedding = await embedImages(opts.checkpoint as string, opts.images as string, {
          kind,
          strict: opts.strict === true,
          map: opts.map !== false,
          neighbors: opts.neighbors as number,
          ...(opts.seed === undefined ? {} : { seed: opts.seed as number }),
          fastKernels: opts.fastKernels !== false,
          ...hooks,
        });
      } else {
        rejectFlags(cmd, opts, ['strict'], 'without --images');
        embedding = await embedCheckpoint(opts.checkpoint as string, {
          split: opts.split as 'train' | 'test',
          limit: opts.limit as number,
          kind,
          map: opts.map !== false,
          neighbors: opts.neighbors as number,
          ...(opts.seed === undefined ? {} : { seed: opts.seed as number }),
          ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir as string }),
          fastKernels: opts.fastKernels !== false,
          ...hooks,
        });
      }
      stop();
      const written = await writeEmbedding(embedding, file);
      const what = embedding.split === null ? `images of ${embedding.dataset}` : `${embedding.split} images`;
      out(`embedded ${embedding.count} ${what} into ${embedding.dim} dimensions (${embedding.kind}): ${written.join(', ')}`);
    });

  // ------------------------------------------------------------------------------------ neighbors
  program
    .command('neighbors')
    .description(
      'Nearest neighbours of query images in an embedding index (written by supcon embed): exact cosine similarity ' +
        'on the vectors of the same checkpoint, printed as a table (rank, similarity, class, path) or JSON.',
    )
    .addOption(new Option('--checkpoint <dir>', 'run directory holding the checkpoint').makeOptionMandatory().argParser(pathFlag('--checkpoint')))
    .addOption(new Option('--index <file>', 'embedding index: a .json or .npy file of supcon embed').makeOptionMandatory().argParser(pathFlag('--index')))
    .addOption(new Option('--query <path>', 'an image file or a folder of images').makeOptionMandatory().argParser(pathFlag('--query')))
    .addOption(new Option('-k, --k <n>', 'neighbours per query').default(10).argParser(integerFlag('-k', 1)))
    .option('--json', 'print the result as JSON')
    .option('--strict', 'an unreadable query image is an error (default: skipped with a warning)')
    .option('--no-fast-kernels', 'do not use the native tfjs kernels')
    .action(async (opts: Record<string, unknown>) => {
      await useCpuBackend();
      // stdout is the result (a table or JSON): progress goes to stderr.
      const { stop, ...hooks } = dataHooks(io.stderr, io.stderr);
      const results = await findNeighbors(opts.checkpoint as string, opts.index as string, opts.query as string, {
        k: opts.k as number,
        strict: opts.strict === true,
        fastKernels: opts.fastKernels !== false,
        ...hooks,
      });
      stop();
      if (opts.json === true) {
        out(JSON.stringify(results));
        return;
      }
      for (const { query, neighbors } of results) {
        out(`query: ${query}`);
        const classWidth = Math.max(5, ...neighbors.map((n) => (n.className ?? '-').length));
        out(`  rank  similarity  ${'class'.padEnd(classWidth)}  path`);
        for (const n of neighbors) {
          out(`  ${String(n.rank).padStart(4)}  ${n.similarity.toFixed(4).padStart(10)}  ${(n.className ?? '-').padEnd(classWidth)}  ${n.path ?? `row ${n.index}`}`);
        }
      }
    });

  // --------------------------------------------------------------------------------------- export
  program
    .command('export')
    .description(
      'Export the encoder (and optionally the projection head and the linear classifier) as a plain tfjs ' +
        'LayersModel (model.json + weights.bin) that tf.loadLayersModel loads without this package, plus metadata.json ' +
        '(input size, channels, normalization, outputs, class names).',
    )
    .addOption(new Option('--checkpoint <dir>', 'run directory holding the checkpoint').makeOptionMandatory().argParser(pathFlag('--checkpoint')))
    .addOption(new Option('--out <dir>', 'output folder').makeOptionMandatory().argParser(pathFlag('--out')))
    .option('--projection', 'add the projection head output (before its L2 normalization)')
    .option('--classifier', 'add the class logits (the CE head, or the linear classifier of linear evaluation)')
    .action(async (opts: Record<string, unknown>) => {
      await useCpuBackend();
      const result = await exportCheckpoint(opts.checkpoint as string, opts.out as string, {
        projection: opts.projection === true,
        classifier: opts.classifier === true,
      });
      const outputs = result.metadata.outputs.map((o) => `${o.name} [${o.shape[1]}]`).join(', ');
      out(`exported ${opts.checkpoint as string} (${outputs}) to ${result.files.join(', ')}`);
      if (result.maxDifference !== undefined) {
        out(`outputs match the checkpoint's models within ${result.maxDifference.toExponential(1)} (relative)`);
      }
    });

  // ----------------------------------------------------------------------------------------- plot
  program
    .command('plot')
    .description("Draw a run's loss, kNN accuracy and learning-rate curves from its metrics.jsonl as SVG and PNG.")
    .addOption(new Option('--run <dir>', 'run directory').makeOptionMandatory().argParser(pathFlag('--run')))
    .addOption(new Option('--out <base>', 'output path without extension (default: <run>/curves)').argParser(pathFlag('--out')))
    .action(async (opts: Record<string, unknown>) => {
      const paths = await plotRun(opts.run as string, ...(opts.out === undefined ? [] : [opts.out as string]));
      out(`curves: ${paths.join(', ')}`);
    });

  for (const cmd of program.commands) {
    cmd
      .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s), outputError: () => undefined })
      .showSuggestionAfterError(true)
      .allowExcessArguments(false)
      .exitOverride();
  }
  return program;
}

/** Errors that mean "the user asked for something unusable": exit code 2. */
function isUsageError(e: unknown): boolean {
  return e instanceof InvalidArgumentError || e instanceof CheckpointError || e instanceof DatasetError;
}

const oneLine = (s: string) => s.replace(/^error: /, '').replace(/\s*\n+\s*/g, ' ').trim();

/**
 * Runs the CLI on `argv` (without node and the script) and resolves to the exit code. Never
 * throws: every failure becomes one line on stderr.
 */
export async function runCli(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const program = buildProgram(io);
  const command = program.commands.find((c) => c.name() === argv[0])?.name();
  const prefix = command ? `supcon ${command}` : 'supcon';
  if (argv.length === 0) {
    io.stderr.write(`supcon: missing command (one of ${program.commands.map((c) => c.name()).join(', ')}); see supcon --help\n`);
    return EXIT.usage;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof ExitRequest) return e.exitCode;
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return EXIT.ok; // --help, --version
      io.stderr.write(`${prefix}: ${oneLine(e.message)}\n`);
      return EXIT.usage;
    }
    if (isUsageError(e)) {
      io.stderr.write(`${prefix}: ${oneLine((e as Error).message)}\n`);
      return EXIT.usage;
    }
    const err = e as Error;
    const detail = process.env.SUPCON_DEBUG === '1' && err.stack ? `\n${err.stack}` : '';
    const kind = e instanceof SupConError ? '' : 'unexpected error: ';
    io.stderr.write(`${prefix}: ${kind}${oneLine(err.message ?? String(e))}${detail}\n`);
    return EXIT.failure;
  }
}
