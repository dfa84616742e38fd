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

// Floats of saved statistics per row of the loss (loss_internal.h, kStatsPerAnchor): the
// epilogues read (m, log l, mP, log lP, W, T) from the first six.
constexpr int kStatsStride = 8;

// Which entries of a tile are positives (docs/loss.md, "Positives"): by class id (pairs ==
// nullptr: entry (i, j) is a positive of weight 1 when rowClasses[i] == colClasses[j]) or by a
// tile of pair weights beside the scores (pairs[i * ld + j], loss_pairs.h: > 0 a positive of
// that weight, 0 a negative, < 0 neither, a positive dropped by the cap).
struct TileRelation {
  const int32_t* rowClasses = nullptr;
  const int32_t* colClasses = nullptr;
  const float* pairs = nullptr;
};

// One side (rows, or columns of a symmetric tile) of a forward tile: running log-sum-exp
// statistics per row, updated in place. `ref` is a running reference (>= every score folded
// in so far, -inf before the first) and `sum` the sum of exp(s - ref), over the denominator's
// rows D(i); refP/sumP the same over the positives P(i) of log w + s (L_in, else null);
// scoreSumP the running sum of w s over the positives (L_out, else null); weightSum the running
// sum of the positives' weights w (pair-weight tiles, else null: the host counts positives).
struct ForwardSide {
  float* ref = nullptr;
  float* sum = nullptr;
  float* refP = nullptr;
  float* sumP = nullptr;
  double* scoreSumP = nullptr;
  float* weightSum = nullptr;
};

// One side of a tile in the one-positive pass of the forward: the rows' LSE_N = m + logL from
// the first pass (logL -inf without negatives), and running sums over the positives: L_out
// lossSum += w softplus(LSE_N - s) and sigmaSum += w sigma(LSE_N - s); L_in the log-sum-exp
// (ref, sum) of log w - softplus(LSE_N - s) with sumU, the same terms times sigma(LSE_N - s).
struct OnePositiveSide {
  const float* m = nullptr;
  const float* logL = nullptr;
  double* lossSum = nullptr;
  double* sigmaSum = nullptr;
  float* ref = nullptr;
  float* sum = nullptr;
  float* sumU = nullptr;
};

// One side (rows or columns) of a similarity tile in the loss backward: the rows' saved
// statistics (kStatsStride floats per row, loss_internal.h) and anchor weights (0 for anchors
// without a loss).
struct TileSide {
  const float* stats = nullptr;
  const float* weight = nullptr;
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
  // statistics of its rows and, when col is given (symmetric tiles, symmetric relation), of its
  // columns. negOnly: the denominator's rows are the negatives (kOnePositive, kOnlyNegatives).
  // cols is a multiple of kLossColumnPad; the caller fills padding columns with -inf and keeps
  // the column arrays (classes, pairs, col side) valid up to cols.
  void (*forwardTile)(const float* s, int64_t ld, int rows, int cols, const TileRelation& rel, bool negOnly,
                      const ForwardSide& row, const ForwardSide* col);
  // The one-positive pass over the same tile (after the first pass is complete for every row).
  void (*onePositiveTile)(const float* s, int64_t ld, int rows, int cols, const TileRelation& rel, bool variantIn,
                          const OnePositiveSide& row, const OnePositiveSide* col);
  // Overwrites a rows x cols tile of scores with dL/ds (before the 1/tau of the chain rule), the
  // row side's term plus, when col is given (symmetric tiles), the column side's (docs/loss.md,
  // "Gradient"). denominator: 0 kAll, 1 kOnePositive, 2 kOnlyNegatives. xInTile: the L_out
  // positive term -w w_ij / W is formed here (else the caller adds it through class sums).
  // Absent entries (-inf) give 0. cols is a multiple of kLossColumnPad, as for forwardTile.
  void (*gradTile)(float* s, int64_t ld, int rows, int cols, const TileRelation& rel, int denominator, bool variantIn,
                   bool xInTile, const TileSide& row, const TileSide* col);
};

const KernelTable& kernels();
// The table for a given name ("avx512", "avx2", "generic"), or nullptr if this CPU/build lacks it.
const KernelTable* kernelsByName(const char* name);

namespace isa_avx512 { const KernelTable& table(); }
namespace isa_avx2 { const KernelTable& table(); }
namespace isa_generic { const KernelTable& table(); }

}  // namespace supcon
