/**
 * A float64 reference of the momentum optimizers' rules (src/train/optimizers.ts) and a check
 * that many variables over several steps follow it: shared by the native path's suite and the
 * tfjs-ops path's (run without the addon).
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { Lars, SgdMomentum, type TrainOptimizer } from '../../src/train/optimizers';

interface RefState {
  w: Float64Array;
  b: Float64Array;
}

function referenceStep(
  kind: 'sgd' | 'lars',
  s: RefState,
  g: Float32Array,
  o: { lr: number; momentum: number; wd: number; nesterov: boolean; eta: number; decay: boolean },
): void {
  const wd = o.decay ? o.wd : 0;
  let scale = o.lr;
  if (kind === 'lars' && o.decay) {
    let w2 = 0;
    let g2 = 0;
    for (let i = 0; i < g.length; i++) {
      w2 += s.w[i] * s.w[i];
      g2 += g[i] * g[i];
    }
    const wn = Math.sqrt(w2);
    const gn = Math.sqrt(g2);
    scale = o.lr * (wn > 0 && gn > 0 ? (o.eta * wn) / (gn + o.wd * wn) : 1);
  }
  for (let i = 0; i < g.length; i++) {
    const d = g[i] + wd * s.w[i];
    if (kind === 'sgd') {
      s.b[i] = o.momentum * s.b[i] + d;
      s.w[i] -= o.lr * (o.nesterov ? d + o.momentum * s.b[i] : s.b[i]);
    } else {
      s.b[i] = o.momentum * s.b[i] + scale * d;
      s.w[i] -= s.b[i];
    }
  }
}

/**
 * Runs `steps` steps of SGD (with and without Nesterov) and LARS on variables of several shapes
 * (a 70,000-element one spans the native kernel's chunks; rank-1 ones are excluded from decay)
 * and compares every value with the float64 reference: |w - ref| <= 1e-5 (1 + |ref|).
 */
export function checkAgainstReference(steps = 4): void {
  const shapes = [[70000], [3, 3, 4, 8], [16], [5, 7]];
  for (const kind of ['sgd', 'sgd-nesterov', 'lars'] as const) {
    const o = { lr: 0.05, momentum: 0.9, wd: 1e-3, nesterov: kind === 'sgd-nesterov', eta: 0.02 };
    const optimizer: TrainOptimizer =
      kind === 'lars'
        ? new Lars({ learningRate: o.lr, momentum: o.momentum, weightDecay: o.wd, trustCoefficient: o.eta })
        : new SgdMomentum({ learningRate: o.lr, momentum: o.momentum, weightDecay: o.wd, nesterov: o.nesterov });
    const variables = shapes.map((shape, i) => tf.variable(tf.randomNormal(shape, 0, 1, 'float32', 10 + i)));
    const refs: RefState[] = variables.map((v) => ({ w: Float64Array.from(v.dataSync()), b: new Float64Array(v.size) }));
    for (let step = 0; step < steps; step++) {
      const grads = variables.map((v, i) => tf.randomNormal(v.shape, 0, 1, 'float32', 100 * step + i));
      optimizer.applyGradients(Object.fromEntries(variables.map((v, i) => [v.name, grads[i]])));
      variables.forEach((v, i) => {
        referenceStep(kind === 'lars' ? 'lars' : 'sgd', refs[i], grads[i].dataSync() as Float32Array, {
          ...o,
          decay: v.rank > 1,
        });
        const got = v.dataSync();
        let worst = 0;
        for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j] - refs[i].w[j]) / (1 + Math.abs(refs[i].w[j])));
        expect(worst, `${kind} step ${step} variable [${v.shape.join(', ')}]`).toBeLessThan(1e-5);
      });
      tf.dispose(grads);
    }
    optimizer.dispose();
    tf.dispose(variables);
  }
}
