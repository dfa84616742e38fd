import { mkdtemp, readFile, rm, truncate, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHECKPOINT_FILES,
  fileIOHandler,
  loadOptimizerState,
  loadWeightsInto,
  saveCheckpoint,
  saveModel,
} from '../../src/train/checkpoint';
import { CheckpointError } from '../../src/train/errors';
import { Lars, SgdMomentum, type TrainOptimizer } from '../../src/train/optimizers';
import { createSupConModel } from '../../src/models';
import '../../src/models'; // registers L2Normalize for tf.loadLayersModel

let root: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'supcon-ckpt-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A small ResNet-8 + projection head: real layer names, BatchNorm moving statistics, nested models. */
function smallModel(width = 0.25, seed = 3) {
  return createSupConModel({
    encoder: { arch: 'resnet8', widthMultiplier: width, inputShape: [8, 8, 1], seed },
    head: { outputDim: 8, seed: seed + 1 },
  });
}

/** A few optimizer steps so that weights, BN statistics and momentum all hold non-trivial values. */
function trainSteps(model: tf.LayersModel, optimizer: TrainOptimizer, steps = 2): void {
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  for (let i = 0; i < steps; i++) {
    tf.tidy(() => {
      const x = tf.randomUniform([4, 8, 8, 1], 0, 1, 'float32', 10 + i);
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(model.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar, variables);
      optimizer.applyGradients(grads);
    });
  }
}

const values = (model: tf.LayersModel) => Object.fromEntries(model.weights.map((w) => [w.originalName, Array.from(w.read().dataSync())]));

async function checkpointDir(name: string, optimizer: TrainOptimizer = new SgdMomentum({ learningRate: 0.05, weightDecay: 1e-3 })) {
  const dir = join(root, name);
  const { model } = smallModel();
  trainSteps(model, optimizer);
  await saveCheckpoint(dir, { model, optimizer, state: { epoch: 1, note: name } });
  return { dir, model, optimizer };
}

describe('checkpoint round trip', () => {
  it('restores weights (BatchNorm statistics included) and optimizer state into freshly built models', async () => {
    const { dir, model, optimizer } = await checkpointDir('roundtrip');
    const { model: fresh } = smallModel(0.25, 99); // other initial weights, other variable names
    const freshOptimizer = new SgdMomentum({ learningRate: 0.05, weightDecay: 1e-3 });
    await loadWeightsInto(fresh, dir);
    await loadOptimizerState(freshOptimizer, fresh, dir);
    expect(values(fresh)).toEqual(values(model));
    expect(model.weights.some((w) => w.originalName.endsWith('moving_mean'))).toBe(true);
    expect(freshOptimizer.iterations).toBe(optimizer.iterations);
    // Momentum buffers match weight by weight, although the variables have other names.
    const byName = new Map(fresh.weights.map((w) => [w.originalName, w.name]));
    for (const w of model.trainableWeights) {
      const original = optimizer.momentumOf(w.name)!;
      const restored = freshOptimizer.momentumOf(byName.get(w.originalName)!)!;
      expect(Array.from(restored.dataSync())).toEqual(Array.from(original.dataSync()));
    }
    // The next step is identical too.
    trainSteps(model, optimizer, 1);
    trainSteps(fresh, freshOptimizer, 1);
    expect(values(fresh)).toEqual(values(model));
    expect(JSON.parse(await readFile(join(dir, CHECKPOINT_FILES.state), 'utf8'))).toEqual({ epoch: 1, note: 'roundtrip' });
    model.dispose();
    fresh.dispose();
    optimizer.dispose();
    freshOptimizer.dispose();
  });

  it('writes model.json in the standard layers format that tf.loadLayersModel reads', async () => {
    const { dir, model, optimizer } = await checkpointDir('loadable');
    const json = JSON.parse(await readFile(join(dir, CHECKPOINT_FILES.model), 'utf8'));
    expect(json.format).toBe('layers-model');
    expect(json.weightsManifest[0].paths).toEqual([CHECKPOINT_FILES.weights]);
    const loaded = await tf.loadLayersModel(fileIOHandler(dir));
    const x = tf.randomUniform([3, 8, 8, 1], 0, 1, 'float32', 5);
    const expected = model.predict(x) as tf.Tensor;
    const actual = loaded.predict(x) as tf.Tensor;
    expect(Array.from(actual.dataSync())).toEqual(Array.from(expected.dataSync()));
    tf.dispose([x, expected, actual]);
    loaded.dispose();
    model.dispose();
    optimizer.dispose();
  });

  it('fileIOHandler saves through model.save and loads back', async () => {
    const dir = join(root, 'handler');
    const { encoder, model } = smallModel();
    await saveModel(encoder, dir);
    const back = await tf.loadLayersModel(fileIOHandler(dir));
    expect(back.weights.map((w) => w.originalName)).toEqual(encoder.weights.map((w) => w.originalName));
    expect(values(back)).toEqual(values(encoder));
    back.dispose();
    model.dispose();
  });
});

describe('corrupt or mismatched checkpoints', () => {
  it('names a truncated weights file and says it is truncated', async () => {
    const { dir, model, optimizer } = await checkpointDir('truncated');
    const path = join(dir, CHECKPOINT_FILES.weights);
    const size = (await readFile(path)).length;
    await truncate(path, size - 100);
    const { model: target } = smallModel();
    const error = await loadWeightsInto(target, dir).catch((e) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.path).toBe(path);
    expect(error.message).toContain(`holds ${size - 100} bytes`);
    expect(error.message).toContain(`${size} bytes`);
    expect(error.message).toContain('truncated');
    await expect(tf.loadLayersModel(fileIOHandler(dir))).rejects.toThrow(/weights\.bin.*truncated/);
    [model, target].forEach((m) => m.dispose());
    optimizer.dispose();
  });

  it('names a missing file', async () => {
    const { dir, model, optimizer } = await checkpointDir('missing');
    await unlink(join(dir, CHECKPOINT_FILES.optimizerWeights));
    const fresh = new SgdMomentum({ learningRate: 0.05 });
    await expect(loadOptimizerState(fresh, model, dir)).rejects.toThrow(
      `Cannot use checkpoint file ${join(dir, CHECKPOINT_FILES.optimizerWeights)}: no such file (listed in optimizer.json)`,
    );
    await expect(loadWeightsInto(model, join(root, 'nowhere'))).rejects.toThrow(/nowhere\/model\.json: no such file/);
    model.dispose();
    optimizer.dispose();
    fresh.dispose();
  });

  it('rejects JSON that does not parse', async () => {
    const { dir, model, optimizer } = await checkpointDir('badjson');
    await writeFile(join(dir, CHECKPOINT_FILES.model), '{"modelTopology": ');
    await expect(loadWeightsInto(model, dir)).rejects.toThrow(/model\.json: not valid JSON/);
    model.dispose();
    optimizer.dispose();
  });

  it('names the weight whose shape differs when the architecture differs', async () => {
    const { dir, model, optimizer } = await checkpointDir('arch');
    const { model: wider } = smallModel(0.5);
    const error = await loadWeightsInto(wider, dir).catch((e) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.message).toMatch(/weight 'stem_conv\/kernel' has shape \[3, 3, 1, 4\] in the checkpoint but \[3, 3, 1, 8\] in the model/);
    // A model with fewer weights: the checkpoint holds extra ones.
    const deeper = createSupConModel({ encoder: { arch: 'resnet20', widthMultiplier: 0.25, inputShape: [8, 8, 1] }, head: { outputDim: 8 } });
    await expect(loadWeightsInto(deeper.model, dir)).rejects.toThrow(/has no weight 'stage1_block2_conv1\/kernel'/);
    const head = createSupConModel({ encoder: { arch: 'resnet8', widthMultiplier: 0.25, inputShape: [8, 8, 1] }, head: { kind: 'linear', outputDim: 8 } });
    await expect(loadWeightsInto(head.model, dir)).rejects.toThrow(/has no weight 'head_dense\/kernel'/);
    [model, wider, deeper.model, head.model].forEach((m) => m.dispose());
    optimizer.dispose();
  });

  it('rejects optimizer state of another optimizer class', async () => {
    const { dir, model, optimizer } = await checkpointDir('optclass');
    const lars = new Lars({ learningRate: 1 });
    await expect(loadOptimizerState(lars, model, dir)).rejects.toThrow(
      /optimizer\.json: holds the state of optimizer "SupConSgdMomentum" but the run uses 'SupConLars'/,
    );
    model.dispose();
    optimizer.dispose();
    lars.dispose();
  });

  it('rejects optimizer state for weights the model does not have', async () => {
    const { dir, model, optimizer } = await checkpointDir('optweights');
    const other = createSupConModel({ encoder: { arch: 'resnet8', widthMultiplier: 0.25, inputShape: [8, 8, 1] }, head: { kind: 'linear', outputDim: 8 } });
    const fresh = new SgdMomentum({ learningRate: 0.05 });
    await expect(loadOptimizerState(fresh, other.model, dir)).rejects.toThrow(/holds momentum for weight 'head_dense1\/kernel'/);
    [model, other.model].forEach((m) => m.dispose());
    optimizer.dispose();
    fresh.dispose();
  });
});

describe('checkpoint memory', () => {
  it('saving and loading leak no tensors', async () => {
    const { dir, model, optimizer } = await checkpointDir('leaks');
    const before = tf.memory().numTensors;
    await saveCheckpoint(dir, { model, optimizer, state: {} });
    await loadWeightsInto(model, dir);
    await loadOptimizerState(optimizer, model, dir);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    optimizer.dispose();
  });
});
