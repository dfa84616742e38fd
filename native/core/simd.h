// Run-time selected SIMD kernels. The same source (isa_kernels.inl) is compiled once per
// instruction set (AVX-512, AVX2+FMA, portable baseline) and the best one the CPU supports is
// picked at first use; SUPCON_SIMD=avx512|avx2|generic forces one (tests use it to cover all).
#pragma once
#include <cstdint>

namespace supcon {

// Score value standing for "not in the set" (self-contrast, padding, non-positive): finite, so
// arithmetic on it stays finite, and exp() of anything this negative is exactly 0.
constexpr float kMaskedScore = -1e30f;

// One side (rows or columns) of a similarity tile in the loss backward: per-row log-sum-exps,
// anchor weights w (0 for anchors without positives), and for L_in the positive log-sum-exps
// and class ids.
struct TileSide {
  const float* lse = nullptr;
  const float* weight = nullptr;
  const float* lsePositive = nullptr;  // null for L_out
  const int32_t* classes = nullptr;    // required with lsePositive
};

struct KernelTable {
  const char* name;
  int mr, nr;  // register block of the GEMM micro-kernel
  // C[m x n] (row stride ldc) = alpha * A B + beta * C, A: packed panel mr x kc, B: kc x nr.
  // beta == 0 ignores C's old contents (it may hold NaN). m <= mr, n <= nr.
  void (*microKernel)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                      float beta, int m, int n);
  // Online log-sum-exp (running max m, sum l) of each row of a rows x cols tile, in place.
  // Entries <= kMaskedScore/2 count as absent.
  void (*rowLogSumExp)(const float* s, int64_t ld, int rows, int cols, float* m, float* l);
  // The same for each column (l and m indexed by column).
  void (*colLogSumExp)(const float* s, int64_t ld, int rows, int cols, float* m, float* l);
  // out[i][j] = rowClass[i] == colClass[j] ? s[i][j] : kMaskedScore
  void (*maskPositives)(const float* s, int64_t ld, int rows, int cols, const int32_t* rowClass,
                        const int32_t* colClass, float* out, int64_t ldOut);
  // Overwrites scores with dL/ds (before the 1/tau of the chain rule):
  //   g_ij = w_i (exp(s_ij - lse_i) - [L_in, c_i == c_j] exp(s_ij - lseP_i))  (row side)
  //        + the same with i and j swapped when col is given (symmetric tiles).
  void (*gradTile)(float* s, int64_t ld, int rows, int cols, const TileSide& row, const TileSide* col);
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
  // Reads up to 3 vectors past a run's end (x needs that much slack); `shifted` holds `pixels`
  // offsets of scratch.
  void (*directFilterGrad)(const float* x, const int64_t* base, int64_t pixels, int64_t runs, const int64_t* runOff,
                           int64_t runLen, const float* dy, int64_t ldy, int64_t N, float* dwT, int64_t K,
                           int64_t* shifted);
};

const KernelTable& kernels();
// The table for a given name ("avx512", "avx2", "generic"), or nullptr if this CPU/build lacks it.
const KernelTable* kernelsByName(const char* name);

namespace isa_avx512 { const KernelTable& table(); }
namespace isa_avx2 { const KernelTable& table(); }
namespace isa_generic { const KernelTable& table(); }

}  // namespace supcon
