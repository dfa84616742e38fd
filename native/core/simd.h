// Run-time selected SIMD kernels. The same source (isa_kernels.inl) is compiled once per
// instruction set (AVX-512, AVX2+FMA, portable baseline) and the best one the CPU supports is
// picked at first use; SUPCON_SIMD=avx512|avx2|generic forces one (tests use it to cover all).
#pragma once
#include <cstdint>

namespace supcon {

// Column counts of the loss's tile kernels are multiples of this (the tiles are padded).
constexpr int kLossColumnPad = 16;
// Largest tile side the loss's tile kernels accept.
constexpr int kLossMaxTile = 128;

// The loss's similarity tiles mark entries that are not in the set (self-contrast, padding)
// with -infinity, never with a finite stand-in: exp(-inf - m) is exactly 0 for any finite m,
// and no finite score, however negative, can be mistaken for a masked one.

// One side (rows, or columns of a symmetric tile) of a forward tile: running log-sum-exp
// statistics per row, updated in place. `ref` is a running reference (>= every score folded
// in so far, -inf before the first) and `sum` the sum of exp(s - ref), over A(i); refP/sumP the
// same over the positives P(i) (L_in, else null); scoreSumP the running sum of the positives'
// scores s (L_out, else null). classes: the rows' class ids.
struct ForwardSide {
  float* ref = nullptr;
  float* sum = nullptr;
  float* refP = nullptr;
  float* sumP = nullptr;
  double* scoreSumP = nullptr;
  const int32_t* classes = nullptr;
};

// One side (rows or columns) of a similarity tile in the loss backward: the rows' saved
// statistics (loss_internal.h: 4 floats per row, (m, log l, mP, log lP)), anchor weights w (0 for
// anchors without positives), and the class ids (L_in).
struct TileSide {
  const float* stats = nullptr;
  const float* weight = nullptr;
  bool variantIn = false;
  const int32_t* classes = nullptr;    // required for L_in
};

struct KernelTable {
  const char* name;
  int mr, nr;  // register block of the GEMM micro-kernel
  // C[m x n] (row stride ldc) = alpha * A B + beta * C, A: packed panel mr x kc, B: kc x nr.
  // beta == 0 ignores C's old contents (it may hold NaN). m <= mr, n <= nr.
  void (*microKernel)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                      float beta, int m, int n);
  // The same micro-kernel one vector wide (mr x nrNarrow): for products with few columns (a
  // 16-channel convolution), where the wide kernel would multiply mostly zero padding.
  int nrNarrow;
  void (*microKernelNarrow)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                            float beta, int m, int n);

  // Batch-norm passes over a row-major [rows, C] block (NHWC pixels), per-channel parameters.
  // sum[c] += sum_r (z - shift[c]), sumSq[c] += sum_r (z - shift[c])^2.
  void (*channelMoments)(const float* z, int64_t rows, int64_t C, const float* shift, double* sum,
                         double* sumSq);
  // y = act(z * scale[c] + offset[c] (+ residual)), act = ReLU or the identity.
  void (*scaleShift)(const float* z, const float* residual, int64_t rows, int64_t C, const float* scale,
                     const float* offset, bool relu, float* y);
  // g = relu ? (y > 0 ? dy : 0) : dy;  sumG[c] += sum_r g,  sumGZ[c] += sum_r g (z - center[c]).
  void (*bnGradReduce)(const float* dy, const float* y, const float* z, int64_t rows, int64_t C,
                       const float* center, bool relu, double* sumG, double* sumGZ);
  // dz = a[c] g + b[c] z + k[c], and dres = g when dres is not null (g as in bnGradReduce).
  void (*bnGradApply)(const float* dy, const float* y, const float* z, int64_t rows, int64_t C, bool relu,
                      const float* a, const float* b, const float* k, float* dz, float* dres);

  // Direct convolution for narrow outputs (nn_conv_direct.cpp), reading the input in place as
  // runs: for output pixel r with base offset base[r], run k is x[base[r] + runOff[k] .. + runLen).
  // y[r][0:n] = sum_k sum_j run_k[j] * w[(k runLen + j) ldw + 0:n] for r < rows; n <= 4 vectors,
  // w rows zero-padded to whole vectors.
  void (*directConvRows)(const float* x, const int64_t* base, int64_t rows, int64_t runs, const int64_t* runOff,
                         int64_t runLen, const float* w, int64_t ldw, float* y, int64_t ldy, int n);
  // dwT [N][K] += sum_p dy[p ldy + i] * run_k(p)[j] for K = runs * runLen columns (i, k runLen + j).
  // Reads whole vectors: up to one vector past a run's end when runLen is not a multiple of the
  // vector width (x needs that much slack then); `shifted` holds `pixels` offsets of scratch.
  void (*directFilterGrad)(const float* x, const int64_t* base, int64_t pixels, int64_t runs, const int64_t* runOff,
                           int64_t runLen, const float* dy, int64_t ldy, int64_t N, float* dwT, int64_t K,
                           int64_t* shifted);

  // ---- the fused loss (native/core/loss_cpu.cpp) ----
  // Register block of the loss's tile kernel; lossMr divides lossNr, and both divide 128.
  int lossMr, lossNr;
  // C[m x n] (row stride ldc) = alpha * sum_k a[k*lda + 0..m) (x) b[k*ldb + 0..n) + beta * C:
  // A is read k-major (lossMr values per k, so a transposed operand needs no packing), B row by
  // row (lossNr values per k). lossMr (or lossNr) values are read per k even when m (or n) is
  // smaller. beta == 0 ignores C's old contents.
  void (*lossTileKernel)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                         int64_t ldc, float alpha, float beta, int m, int n);
  // The same with A read row by row: a[i * kLossMaxTile + k] (a gradient tile as it is stored).
  void (*lossTileKernelRowsA)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                              float alpha, float beta, int m, int n);
  // Folds a rows x cols tile of scores (row stride ld; -inf = absent) into the running
  // statistics of its rows and, when col is given (symmetric tiles), of its columns.
  // colClasses: the columns' class ids (positives are present entries of the row's class).
  // cols is a multiple of kLossColumnPad; the caller fills padding columns with -inf and keeps
  // the column arrays valid up to cols.
  void (*forwardTile)(const float* s, int64_t ld, int rows, int cols, const ForwardSide& row,
                      const int32_t* colClasses, const ForwardSide* col);
  // Overwrites a rows x cols tile of scores with dL/ds (before the 1/tau of the chain rule):
  //   g_ij = w_i (exp((s_ij - m_i) - log l_i) - [L_in, c_i == c_j] exp((s_ij - mP_i) - log lP_i))
  //        + the same with i and j swapped when col->weight is given (symmetric tiles).
  // Absent entries (-inf) give 0. cols is a multiple of kLossColumnPad, as for forwardTile;
  // col->classes are the columns' class ids (L_in).
  void (*gradTile)(float* s, int64_t ld, int rows, int cols, const TileSide& row, const TileSide* col);
};

const KernelTable& kernels();
// The table for a given name ("avx512", "avx2", "generic"), or nullptr if this CPU/build lacks it.
const KernelTable* kernelsByName(const char* name);

namespace isa_avx512 { const KernelTable& table(); }
namespace isa_avx2 { const KernelTable& table(); }
namespace isa_generic { const KernelTable& table(); }

}  // namespace supcon
