/**
 * The models of a run, built from its config: the encoder (a ResNet from `src/models`, or a
 * caller-built one), and on top of it the projection head (contrastive methods) or the
 * classifier (cross-entropy). Seeds are derived from the run's seed, one stream per part.
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '../errors';
import { Rng } from '../data';
import { createClassifierModel, createEncoder, createSupConModel } from '../models';
import type { TrainConfig } from './config';

/** Builds an encoder images [B, H, W, C] -> features [B, D] for `config.arch === 'custom'`. */
export type EncoderBuilder = (config: TrainConfig, inputShape: [number, number, number], seed: number) => tf.LayersModel;

/** The models of a run. They share layers: training `trainModel` trains `encoder`. */
export interface RunModels {
  /** Images -> features. */
  encoder: tf.LayersModel;
  /** The model the pre-training loss is computed on: images -> projections or logits. */
  trainModel: tf.LayersModel;
  /** Features -> projections (contrastive methods). */
  head?: tf.LayersModel;
  /** Features -> logits (cross-entropy). */
  classifier?: tf.LayersModel;
}

/** Keys of the seed streams derived from the run's seed (see `Rng.derive`). */
export const SEED_STREAMS = Object.freeze({ encoder: 1, head: 2, classifier: 3, augmentation: 4, linear: 5, umap: 6 });

/** A uint32 seed for one part of the run. */
export function derivedSeed(seed: number, stream: number): number {
  return new Rng([seed, stream]).nextUint32();
}

/**
 * Builds the run's models for images of `inputShape` and `numClasses` classes.
 * @throws InvalidArgumentError when the arch is 'custom' and no builder is given.
 */
export function buildRunModels(
  config: TrainConfig,
  inputShape: [number, number, number],
  numClasses: number,
  buildEncoder?: EncoderBuilder,
): RunModels {
  const encoderSeed = derivedSeed(config.seed, SEED_STREAMS.encoder);
  let encoder: tf.LayersModel;
  if (config.arch === 'custom') {
    if (buildEncoder === undefined) {
      throw new InvalidArgumentError('buildEncoder', "an encoder builder (the config's arch is 'custom')", 'none');
    }
    encoder = buildEncoder(config, inputShape, encoderSeed);
  } else {
    encoder = createEncoder({
      arch: config.arch,
      widthMultiplier: config.width,
      inputShape,
      seed: encoderSeed,
      ...(config.stem === undefined ? {} : { stem: config.stem }),
    });
  }
  if (config.method === 'ce') {
    const built = createClassifierModel({ encoder, numClasses, seed: derivedSeed(config.seed, SEED_STREAMS.classifier) });
    return { encoder: built.encoder, classifier: built.classifier, trainModel: built.model };
  }
  const built = createSupConModel({
    encoder,
    head: { kind: config.projectionHead, outputDim: config.projectionDim, seed: derivedSeed(config.seed, SEED_STREAMS.head) },
  });
  return { encoder: built.encoder, head: built.head, trainModel: built.model };
}

/** Disposes the weights of every model of a run (they share layers, so once is enough). */
export function disposeRunModels(models: RunModels): void {
  models.trainModel.dispose();
}
