/** Shared helpers for the model tests: an in-memory save/load round trip and seeded inputs. */
import * as tf from '@tensorflow/tfjs';

/** Saves `model` through tfjs's own serialization into memory and loads it back. */
export async function roundTrip(model: tf.LayersModel): Promise<{ loaded: tf.LayersModel; artifacts: tf.io.ModelArtifacts }> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (saved === undefined) throw new Error('the save handler was not called');
  const loaded = await tf.loadLayersModel(
    tf.io.fromMemory({ modelTopology: saved.modelTopology, weightSpecs: saved.weightSpecs, weightData: saved.weightData }),
  );
  return { loaded, artifacts: saved };
}

/** Deterministic pseudo-random floats in [-1, 1) (an LCG), independent of tfjs's RNG. */
export function seededValues(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

/** A seeded random tensor of the given shape. */
export function seededTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(seededValues(shape.reduce((a, b) => a * b, 1), seed), shape);
}

/** Every weight of a model as plain arrays, keyed by the weight's name as saved. */
export function weightsByName(model: tf.LayersModel): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const w of model.weights) out.set(w.originalName, w.read().dataSync() as Float32Array);
  return out;
}
