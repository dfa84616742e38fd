/** Model builders: ResNet encoders, projection/classifier heads and their compositions. */
export {
  ENCODER_ARCHS,
  ENCODER_STEMS,
  RESNET_LAYOUTS,
  BOTTLENECK_EXPANSION,
  createEncoder,
  encoderFeatureDim,
  resolveEncoderOptions,
  scaleChannels,
  type EncoderArch,
  type EncoderStem,
  type EncoderOptions,
  type ResNetLayout,
  type ResolvedEncoderOptions,
} from './resnet';
export {
  L2Normalize,
  PROJECTION_HEAD_KINDS,
  createProjectionHead,
  createLinearClassifier,
  type L2NormalizeArgs,
  type ProjectionHeadKind,
  type ProjectionHeadOptions,
  type LinearClassifierOptions,
} from './heads';
export {
  createSupConModel,
  createClassifierModel,
  setTrainable,
  type SupConModel,
  type SupConModelOptions,
  type ClassifierModel,
  type ClassifierModelOptions,
} from './supcon_model';
export { summarize, type ModelSummary } from './summary';
export { heNormalFanOut, glorotUniform, LayerSeeds, mixSeed, MAX_SEED, TRUNCATED_NORMAL_VARIANCE_FACTOR } from './initializers';
