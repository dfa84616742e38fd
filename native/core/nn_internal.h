// Pieces shared by the nn_*.cpp kernels (not part of the public API).
#pragma once
#include <cstdint>
#include <functional>

#include "supcon/nn.h"

namespace supcon {
namespace nn {
namespace detail {

// Checks a product of non-negative sizes stays below 2^31 (the binding's typed-array limit).
bool productFits(std::initializer_list<int64_t> sizes);

// y = act(y + bias) on rows x cols with row stride ld, on the calling thread.
void epilogueRows(const Epilogue& e, int64_t rows, int64_t cols, float* y, int64_t ld);

// Splits [0, rows) into pieces whose starts are multiples of `align` and runs fn(begin, end) on
// the thread pool; inline when the work (flops) is too small to be worth waking threads.
void forEachRowPiece(int64_t rows, int64_t align, double flops,
                     const std::function<void(int64_t begin, int64_t end)>& fn);

// Scratch memory of the calling thread, grown on demand and kept between calls (nn_scratch.cpp).
// Slots are independent buffers for uses that overlap in one call.
constexpr int kScratchSlots = 4;
enum ScratchSlot { kScratchFilter = 0, kScratchPartial = 1, kScratchColumns = 2, kScratchGradient = 3 };

// Rows [begin, end) of y = P(x) W, the convolution's GEMM on the calling thread (nn_conv.cpp).
void convForwardRows(const Conv2DGeometry& g, const float* x, const float* filter, int64_t begin, int64_t end,
                     float* y);

// Splits [0, rows) into at most maxPieces contiguous pieces whose starts are multiples of
// `align`; returns the piece length (the last piece may be shorter). pieces = ceil(rows / length).
int64_t pieceLength(int64_t rows, int64_t align, int64_t maxPieces);
float* scratch(int slot, size_t count);

}  // namespace detail
}  // namespace nn
}  // namespace supcon
