/**
 * Native tfjs CPU kernels for training (src/kernels): about two orders of magnitude faster
 * convolutions than tfjs's pure-JavaScript cpu backend.
 */
import { useNativeKernels } from '../kernels';
import { onCpuBackend } from '../kernels/cpu_backend';

/**
 * Registers the native kernels when the active backend is tfjs's `cpu` (other backends, such as
 * tfjs-node's, have fast kernels of their own) and returns the names of the kernels now native:
 * `[]` when the addon is missing or another backend is active.
 */
export function enableFastKernels(): string[] {
  if (!onCpuBackend()) return [];
  return useNativeKernels();
}
