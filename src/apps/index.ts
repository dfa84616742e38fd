/**
 * What a trained encoder is for: embedding one's own images, nearest-neighbour search over an
 * embedding index, and export as a plain tfjs LayersModel.
 */
export { embedImages, type EmbedImagesOptions } from './embed';
export { findNeighbors, readEmbedding, type FindNeighborsOptions, type NeighborMatch, type NeighborsOfQuery } from './neighbors';
export {
  exportCheckpoint,
  PLAIN_TFJS_CLASSES,
  type ExportOptions,
  type ExportResult,
  type ExportMetadata,
  type ExportOutput,
} from './export';
