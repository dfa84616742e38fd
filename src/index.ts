/**
 * supcon-native: supervised contrastive learning for TypeScript.
 * - `supConLoss` / `supConLossFn`: the fused native loss as a tfjs op and a Keras-style loss.
 * - `supConLossReference`: the same math composed of tfjs ops (fallback and oracle).
 * - `supcon`: the loss on typed arrays, sync and async, plus build/device info.
 */
export { supConLoss, supConLossFn, supConTargets } from './loss/op';
export { supConLossReference } from './loss/reference';
export { supcon, type LossResult } from './loss/native_loss';
export type {
  SupConOptions,
  SupConVariant,
  ContrastMode,
  Reduction,
  Denominator,
  PositiveWeighting,
  LabelSets,
  LossDevice,
  LossPrecision,
  LossInput,
  ContrastSet,
} from './loss/options';
export type { SupConLossOptions, LabelsLike } from './loss/tensor_inputs';
export type { NativeInfo } from './native';
export { nativeAddonPath, prebuiltAddonPath } from './native';
export { SupConError, InvalidArgumentError, NativeError, MpiError } from './errors';
export {
  initMpi,
  launcherWorld,
  mpiInfo,
  Communicator,
  MPI_INSTALL_HINT,
  type MpiInfo,
  type LauncherWorld,
  type MpiNumbers,
  type MpiArray,
} from './mpi';

export * from './data';
export * from './models';
export * from './train';
export * from './apps';
export {
  useNativeKernels,
  restoreKernels,
  nativeKernelStatus,
  releaseNativeKernelMemory,
  nativeOutputPoolStats,
  NATIVE_KERNEL_NAMES,
  type UseNativeKernelsOptions,
  type NativeKernelStatus,
} from './kernels';
