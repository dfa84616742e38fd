// Tile shapes of the SupCon kernels, kept apart from the kernel bodies (the FlashAttention
// habit): a new shape is a new line here, not a new kernel. docs/cuda.md explains the choice.
#pragma once
#include "portability.cuh"

namespace supcon {
namespace SUPCON_KERNEL_NS {

// Operand rows (features, contrast, anchors) are stored with a row stride that is a multiple of
// kOperandAlign floats and with the row count padded to a multiple of kOperandRowPad, filled
// with zeros: the tile loops then need no bounds checks and every row starts 128-byte aligned
// (float4 loads, wmma's 256-bit pointer rule).
constexpr int kOperandAlign = 32;
constexpr int kOperandRowPad = 128;
constexpr int kThreads = 256;

// kRows: rows of the pass a block owns (anchors in the forward); kCols: columns per tile;
// kDChunk: gradient columns a block accumulates (0 for the forward, which has no product).
template <int kRows_, int kCols_, int kDChunk_>
struct TileTraits {
  static constexpr int kRows = kRows_;
  static constexpr int kCols = kCols_;
  static constexpr int kDChunk = kDChunk_;
  // SIMT engine: 16 x 16 threads; each owns kThreadRows x kThreadCols scores and
  // kThreadRows x kThreadOutCols gradient entries. kStep floats of D per shared-memory stage.
  static constexpr int kStep = 32;
  static constexpr int kThreadRows = kRows / 16;
  static constexpr int kThreadCols = kCols / 16;
  static constexpr int kThreadOutCols = kDChunk / 16;
  // Tensor-core engine: 8 warps in a kWarpRows x kWarpCols grid of 16-row fragments.
  static constexpr int kWarpRows = kRows / 16;
  static constexpr int kWarpCols = 8 / kWarpRows;

  static_assert(kRows % 64 == 0 && kRows <= kOperandRowPad, "kRows: 64 or 128");
  static_assert(kCols % 64 == 0 && kCols <= kOperandRowPad, "kCols: a multiple of 64, at most the row padding");
  static_assert(kThreadRows % 4 == 0 && kThreadCols % 4 == 0, "float4 shared-memory reads");
  static_assert(kDChunk == 0 || (kDChunk % 64 == 0 && kThreadOutCols % 4 == 0), "kDChunk: a multiple of 64");
  static_assert(kWarpRows * kWarpCols == 8, "8 warps");
  static_assert((kCols / 16) % kWarpCols == 0 && (kDChunk / 16) % kWarpCols == 0, "fragments per warp");
  static_assert(kRows * (256 / kRows) == kThreads, "column groups of the tensor-core epilogue");
};

// Forward: 128 anchors x 64 contrast columns per tile.
using ForwardTile = TileTraits<128, 64, 0>;
// Backward passes, picked by D: the block's gradient accumulator is kRows x kDChunk, so wide
// D uses fewer rows per block to keep it in registers; D > 256 runs several chunks (each
// recomputes the scores).
using GradTileD64 = TileTraits<128, 64, 64>;
using GradTileD128 = TileTraits<128, 64, 128>;
using GradTileD256 = TileTraits<64, 64, 256>;

}  // namespace SUPCON_KERNEL_NS
}  // namespace supcon
