// Pieces shared by the nn_*.cpp kernels (not part of the public API).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "supcon/nn.h"

namespace supcon {
namespace nn {
namespace detail {

// Checks a product of non-negative sizes stays below 2^31 (the binding's typed-array limit).
bool productFits(std::initializer_list<int64_t> sizes);

// y = act(y + bias) on rows x cols with row stride ld, on the calling thread.
void epilogueRows(const Epilogue& e, int64_t rows, int64_t cols, float* y, int64_t ld);

// Splits [0, rows) into pieces whose starts are multiples of `align` (at most maxPieces, default
// four per thread) and runs fn(begin, end) on the thread pool; inline when the work (flops) is
// too small to be worth waking threads.
void forEachRowPiece(int64_t rows, int64_t align, double flops,
                     const std::function<void(int64_t begin, int64_t end)>& fn, int64_t maxPieces = 0);

// Scratch memory of the calling thread, grown on demand and kept between calls (nn_scratch.cpp).
// Slots are independent buffers for uses that overlap in one call.
constexpr int kScratchSlots = 5;
enum ScratchSlot {
  kScratchFilter = 0,
  kScratchPartial = 1,
  kScratchColumns = 2,
  kScratchGradient = 3,
  kScratchPadded = 4,
};

// Whether the direct kernels take this geometry (unit dilation, non-negative pads, outC within
// the kernels' register block for the forward; channels up to 64 for the filter gradient).
bool directForwardFits(const Conv2DGeometry& g);
bool directFilterGradFits(const Conv2DGeometry& g);

// The forward convolution y = P(x) W [pixels, outC], prepared once per call and then computed
// in pieces of rows on any thread: the direct kernel for narrow outputs (nn_conv_direct.cpp),
// else the implicit-im2col GEMM (nn_conv.cpp). g may have negative pads (the direct input
// gradient shifts by them) only on the GEMM path.
class ConvForwardRows {
 public:
  // direct: use the direct kernel (the caller checked directForwardFits), else the GEMM.
  ConvForwardRows(const Conv2DGeometry& g, const float* x, const float* filter, bool direct);
  ConvForwardRows(const Conv2DGeometry& g, const float* x, const float* filter)
      : ConvForwardRows(g, x, filter, directForwardFits(g)) {}
  // Rows [begin, end) of y.
  void operator()(int64_t begin, int64_t end, float* y) const;
  bool direct() const { return direct_; }
  // How many row pieces to split y into: four per thread for the direct kernel; for the GEMM,
  // which packs the whole filter for every piece, no more than one per ~512 rows (at least one
  // per thread), so that packing stays a few percent of the arithmetic.
  int64_t maxPieces() const;

 private:
  Conv2DGeometry g_;
  const float* x_;
  const float* filter_;
  bool direct_ = false;
  // Direct path: the (padded) input [batch, hp, wp, inC], the filter with rows padded to ldw
  // columns, and the runs (one filter row each) of a pixel.
  const float* src_ = nullptr;
  int64_t hp_ = 0, wp_ = 0, ldw_ = 0, runLen_ = 0;
  std::vector<float> w_;
  std::vector<int64_t> runOff_;
};

// Rows [begin, end) of y by the implicit-im2col GEMM, on the calling thread (nn_conv.cpp).
void gemmForwardRows(const Conv2DGeometry& g, const float* x, const float* filter, int64_t begin, int64_t end,
                     float* y);


// The input gradient of a strided convolution by the direct kernel, phase by phase
// (directStridedInputGradFits(g): unit dilation, inC <= 4 SIMD vectors).
bool directStridedInputGradFits(const Conv2DGeometry& g);
void directStridedInputGradient(const Conv2DGeometry& g, const float* dy, const float* filter, float* dx);

// dW [fH, fW, inC, outC] = P(x)^T dY by the direct kernel (directFilterGradFits(g) must hold).
void directFilterGradient(const Conv2DGeometry& g, const float* x, const float* dy, float* dw);

// Splits [0, rows) into at most maxPieces contiguous pieces whose starts are multiples of
// `align`; returns the piece length (the last piece may be shorter). pieces = ceil(rows / length).
int64_t pieceLength(int64_t rows, int64_t align, int64_t maxPieces);
float* scratch(int slot, size_t count);

}  // namespace detail
}  // namespace nn
}  // namespace supcon
