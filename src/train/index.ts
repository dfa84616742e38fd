/**
 * The training layer: SupCon / SimCLR / cross-entropy training with checkpoints and resume,
 * SGD-momentum and LARS, the cosine schedule, the kNN monitor, linear evaluation, metrics,
 * progress display, and charts.
 */
export { CheckpointError } from './errors';
export {
  SgdMomentum,
  Lars,
  createOptimizer,
  OPTIMIZER_NAMES,
  MOMENTUM_SLOT_SUFFIX,
  type OptimizerName,
  type TrainOptimizer,
  type MomentumOptimizerOptions,
  type SgdOptions,
  type LarsOptions,
  type NamedTensor,
} from './optimizers';
export { cosineWithWarmup, type CosineScheduleOptions, type LearningRateSchedule } from './schedule';
export { knnPredict, knnAccuracy, cosineNeighbors, type KnnOptions, type CosineNeighbors } from './knn';
export { predictDataset, firstRecords, accuracyOfLogits, type PredictOptions } from './features';
export {
  linearEvaluation,
  trainLinearClassifier,
  trainLinearOnEncoder,
  classifierAccuracy,
  type LinearEvalOptions,
  type LinearEvalResult,
} from './linear_eval';
export {
  fileIOHandler,
  saveModel,
  loadWeightsInto,
  readSavedWeights,
  assignNamedWeights,
  saveOptimizerState,
  loadOptimizerState,
  saveCheckpoint,
  hasCheckpoint,
  CHECKPOINT_FILES,
  type FileIOHandlerOptions,
} from './checkpoint';
export {
  resolveTrainConfig,
  DEFAULT_TRAIN_CONFIG,
  DEFAULT_LR,
  TRAIN_CONFIG_KEYS,
  METHODS,
  ARCHS,
  LOSS_VARIANTS,
  type LossVariant,
  type TrainConfig,
  type Method,
  type Arch,
} from './config';
export { appendMetrics, readMetrics, latestEpochs, type EpochRecord, type ResultRecord, type MetricsRecord } from './metrics';
export { buildRunModels, disposeRunModels, derivedSeed, SEED_STREAMS, type EncoderBuilder, type RunModels } from './run_models';
export { trainRun, resumeRun, loadRunDatasets, type TrainRunOptions, type TrainRunResult } from './trainer';
export {
  readTrainingState,
  RUN_FILES,
  STATE_FORMAT,
  type TrainingState,
  type TrainCallbacks,
  type StepInfo,
  type StartInfo,
} from './run_state';
export { TrainingProgress, DecodeProgressDisplay, formatEpochRecord, type TrainingProgressOptions, type DecodeProgressOptions } from './progress';
export { curvesSpec, embeddingMapSpec, renderSvg, svgToPng, writeChart, type VegaLiteSpec } from './plots';
export {
  openCheckpoint,
  evaluateCheckpoint,
  checkpointScorer,
  loadSplit,
  type CheckpointScorer,
  embedCheckpoint,
  writeEmbedding,
  plotRun,
  umap2d,
  EMBEDDING_KINDS,
  EMBEDDING_FILE_TYPES,
  npyMetadataFile,
  embeddingSource,
  checkEmbeddingKind,
  type EmbeddingSource,
  type OpenCheckpointOptions,
  type OpenedCheckpoint,
  type EvaluateOptions,
  type EvaluationResult,
  type EmbedOptions,
  type Embedding,
  type EmbeddingKind,
} from './evaluate';
export { enableFastKernels } from './fast_kernels';
export { MemoryQueue, encodeQueue, decodeQueue, QUEUE_FILE, type QueueContents, type SavedQueueInfo } from './queue';
export { chunkedGradients, type ChunkedGradients } from './grad_cache';
export {
  evaluateRobustness,
  formatRobustnessTable,
  writeRobustnessReport,
  type RobustnessOptions,
  type RobustnessReport,
  type CorruptionRow,
} from './robustness';
export { encodeNpy, decodeNpy } from './npy';
export {
  TensorBoardSink,
  EventFileWriter,
  EventProto,
  readEventFile,
  readTfRecords,
  tfRecordFrame,
  maskedCrc32c,
  unmaskCrc32c,
  writeProjectorFiles,
  scalarsOfRecord,
  EVENT_FILE_VERSION,
  TENSORBOARD_DIR,
  PROJECTOR_LIMIT,
  type TensorBoardEvent,
  type ProjectorMetadata,
} from './tensorboard';
export {
  loadConfigSplit,
  datasetOptions,
  describeRunDataset,
  writeRunDataset,
  readRunDataset,
  RUN_DATASET_FILE,
  type RunDatasetInfo,
  type DataHooks,
} from './run_dataset';
export { JsonlMetricsSink, type MetricsSink } from './metrics';
