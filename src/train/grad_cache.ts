/**
 * Gradient caching for batches larger than memory (`--chunk-size C`, `TrainConfig.chunkSize`;
 * Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
 * RepL4NLP 2021). The contrastive loss couples every row of the batch, but its gradient with
 * respect to the projected rows Z, G = dL/dZ, is small ([rows, D]) and the fused loss computes it
 * in O(N D) memory. So one step is:
 *
 *   1. the model over the inputs in chunks of C rows, without recording gradients: Z;
 *   2. the loss and G = dL/dZ over all of Z at once (one call of the fused loss);
 *   3. each chunk again with gradients, back-propagating its slice of G: the parameters'
 *      gradient is the sum over chunks of the vector-Jacobian products G_c^T dZ_c/dθ.
 *
 * By the chain rule that sum is exactly dL/dθ of the unchunked batch when the model treats rows
 * independently (no batch norm in training mode): test/train/grad_cache.test.ts checks it. With
 * batch norm, every chunk is normalized with its own batch statistics (in both passes, so step 3
 * back-propagates through the same function step 1 evaluated): the loss is that of a model with
 * per-chunk statistics, as in data-parallel training without synchronized batch norm; the moving
 * averages are restored after step 1 and updated once per chunk in step 3. Peak memory is that of
 * one chunk's activations (forward and backward), the inputs, Z and G, and one accumulated copy of
 * the gradients, whatever the batch size.
 */
import * as tf from '@tensorflow/tfjs';
import * as validate from '../validate';

/** Result of {@link chunkedGradients}: the loss and dLoss/dθ per variable (owned by the caller). */
export interface ChunkedGradients {
  value: number;
  grads: tf.NamedTensorMap;
}

/**
 * dLoss/dθ of `loss(model(inputs))` computed in chunks of `chunkSize` rows (see the module note).
 * @param model Maps [rows, ...] inputs to [rows, D] projections; applied with `{ training: true }`.
 * @param inputs [rows, ...] the whole batch (e.g. both views of every image, view-major).
 * @param chunkSize Rows per chunk, an integer >= 1 (the last chunk may be shorter).
 * @param variables The trainable variables to differentiate (keys of `grads` are their names).
 * @param loss The scalar loss of all the projections [rows, D]; differentiated w.r.t. them only.
 * @throws InvalidArgumentError naming `chunkSize` when it is not a positive integer.
 */
export function chunkedGradients(
  model: tf.LayersModel,
  inputs: tf.Tensor,
  chunkSize: number,
  variables: tf.Variable[],
  loss: (z: tf.Tensor2D) => tf.Scalar,
): ChunkedGradients {
  validate.integer('chunkSize', chunkSize, 1);
  const rows = inputs.shape[0];
  const chunks: Array<[number, number]> = [];
  for (let start = 0; start < rows; start += chunkSize) chunks.push([start, Math.min(chunkSize, rows - start)]);
  const slice = (start: number, size: number) => tf.slice(inputs, start, size);

  // 1. Forward in chunks, no tape; the moving averages of batch norm are put back afterwards.
  const movingState = model.nonTrainableWeights.map((w) => w.read().clone());
  let z: tf.Tensor2D;
  try {
    const parts = chunks.map(([start, size]) => tf.tidy(() => model.apply(slice(start, size), { training: true }) as tf.Tensor2D));
    z = tf.tidy(() => tf.concat(parts, 0));
    tf.dispose(parts);
  } finally {
    model.nonTrainableWeights.forEach((w, i) => w.write(movingState[i]));
    tf.dispose(movingState);
  }

  // 2. The loss and its gradient with respect to every projection, at once.
  let value: number;
  let g: tf.Tensor2D;
  try {
    const r = tf.valueAndGrad((t: tf.Tensor) => loss(t as tf.Tensor2D))(z);
    value = r.value.dataSync()[0];
    r.value.dispose();
    g = r.grad as tf.Tensor2D;
  } finally {
    z.dispose();
  }

  // 3. Each chunk again with its tape, back-propagating its slice of G; the sum over chunks.
  const grads: tf.NamedTensorMap = {};
  try {
    for (const [start, size] of chunks) {
      const part = tf.variableGrads(
        // (variableGrads keeps the tape's tensors and frees the rest itself.)
        () => tf.sum(tf.mul(model.apply(slice(start, size), { training: true }) as tf.Tensor, tf.slice(g, start, size))) as tf.Scalar,
        variables,
      );
      part.value.dispose();
      for (const [name, grad] of Object.entries(part.grads)) {
        const before = grads[name];
        grads[name] = before ? tf.add(before, grad) : grad;
        if (before) tf.dispose([before, grad]);
      }
    }
  } catch (e) {
    tf.dispose(Object.values(grads));
    throw e;
  } finally {
    g.dispose();
  }
  return { value, grads };
}
