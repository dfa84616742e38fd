// The bias + activation epilogue of the fused kernels, and the row splitting they share.
#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "nn_internal.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {
namespace detail {
namespace {

template <Activation A>
inline float activate(float v, float alpha) {
  switch (A) {
    case Activation::kLinear: return v;
    case Activation::kRelu: return v > 0.0f ? v : 0.0f;
    case Activation::kRelu6: return std::min(std::max(v, 0.0f), 6.0f);
    case Activation::kLeakyRelu: return v < 0.0f ? alpha * v : v;
    case Activation::kElu: return v < 0.0f ? std::expm1(v) : v;
    case Activation::kSigmoid: return 1.0f / (1.0f + std::exp(-v));
  }
  return v;
}

template <Activation A>
void rowsT(const float* bias, float alpha, int64_t rows, int64_t cols, float* y, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * ld;
    if (bias) {
      for (int64_t c = 0; c < cols; ++c) row[c] = activate<A>(row[c] + bias[c], alpha);
    } else {
      for (int64_t c = 0; c < cols; ++c) row[c] = activate<A>(row[c], alpha);
    }
  }
}

}  // namespace

bool productFits(std::initializer_list<int64_t> sizes) {
  constexpr int64_t kLimit = (int64_t(1) << 31) - 1;
  int64_t p = 1;
  for (int64_t s : sizes) {
    if (s < 0) return false;
    if (s != 0 && p > kLimit / s) return false;
    p *= s;
  }
  return p <= kLimit;
}

void epilogueRows(const Epilogue& e, int64_t rows, int64_t cols, float* y, int64_t ld) {
  const float a = e.leakyReluAlpha;
  switch (e.activation) {
    case Activation::kLinear:
      if (e.bias) rowsT<Activation::kLinear>(e.bias, a, rows, cols, y, ld);
      return;
    case Activation::kRelu: return rowsT<Activation::kRelu>(e.bias, a, rows, cols, y, ld);
    case Activation::kRelu6: return rowsT<Activation::kRelu6>(e.bias, a, rows, cols, y, ld);
    case Activation::kLeakyRelu: return rowsT<Activation::kLeakyRelu>(e.bias, a, rows, cols, y, ld);
    case Activation::kElu: return rowsT<Activation::kElu>(e.bias, a, rows, cols, y, ld);
    case Activation::kSigmoid: return rowsT<Activation::kSigmoid>(e.bias, a, rows, cols, y, ld);
  }
}

int64_t pieceLength(int64_t rows, int64_t align, int64_t maxPieces) {
  align = std::max<int64_t>(1, align);
  int64_t piece = (rows + std::max<int64_t>(1, maxPieces) - 1) / std::max<int64_t>(1, maxPieces);
  return std::max<int64_t>(align, (piece + align - 1) / align * align);
}

void forEachRowPiece(int64_t rows, int64_t align, double flops,
                     const std::function<void(int64_t, int64_t)>& fn, int64_t maxPieces) {
  if (rows <= 0) return;
  const int threads = numThreads();
  align = std::max<int64_t>(1, align);
  if (threads == 1 || flops < 4e6 || rows <= align) {
    fn(0, rows);
    return;
  }
  // About four pieces per thread balance uneven progress; a piece never splits a register block.
  const int64_t piece = pieceLength(rows, align, maxPieces > 0 ? maxPieces : 4 * threads);
  const int64_t pieces = (rows + piece - 1) / piece;
  parallelFor(pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) fn(p * piece, std::min(rows, (p + 1) * piece));
  });
}

}  // namespace detail

void applyEpilogue(const Epilogue& epilogue, int64_t rows, int64_t cols, float* y) {
  if (!epilogue.active() || rows <= 0 || cols <= 0) return;
  detail::forEachRowPiece(rows, 1, double(rows) * double(cols) * 8.0,
                          [&](int64_t b, int64_t e) { detail::epilogueRows(epilogue, e - b, cols, y + b * cols, cols); });
}

}  // namespace nn
}  // namespace supcon
