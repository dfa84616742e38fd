/**
 * Native tfjs CPU kernels for training (branch `kernels`, `src/kernels`): about two orders of
 * magnitude faster convolutions than tfjs's pure-JavaScript cpu backend.
 */

/**
 * INTEGRATION POINT: registers the native tfjs kernels (`useNativeKernels()` from
 * `src/kernels`) and returns the names of the kernels now native. The trainer calls this
 * once per run unless `fastKernels: false`.
 *
 * It returns `[]` (no kernels) until the `kernels` branch is merged; the integrator replaces the
 * body with:
 *
 *     import { useNativeKernels } from '../kernels';
 *     return useNativeKernels();
 */
export function enableFastKernels(): string[] {
  return [];
}
