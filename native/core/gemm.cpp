// Blocked GEMM (Goto/BLIS loop order): for each NC column block and KC depth block, pack B once,
// then for each MC row block pack A and sweep the micro-kernel over mr x nr register blocks.
#include "supcon/gemm.h"

#include <algorithm>

#include "memory.h"
#include "simd.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace {

constexpr int64_t kKc = 256;   // depth of a packed panel: A and B micro-panels stay in L1
constexpr int64_t kMcPanels = 12;  // MC = 12 micro-panels of A rows (~150 KB at kc=256): L2
constexpr int64_t kNc = 2048;  // columns of packed B (~2 MB at kc=256): L2/L3

int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread packing buffers, grown on demand and kept: the loss calls gemm thousands of times
// on small tiles, where allocating each time would cost more than the arithmetic.
struct PackBuffers {
  Buffer<float> a, b;
};
PackBuffers& packBuffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

// C rows [0, M) x cols [0, N) of the sub-problem whose A rows start at ai0 and B cols at bj0.
void gemmBlock(int64_t ai0, int64_t M, int64_t bj0, int64_t N, int64_t K, float alpha,
               const GemmOperandA& A, const GemmOperandB& B, float beta, float* C, int64_t ldc) {
  const KernelTable& kt = kernels();
  // Products no wider than one vector (16-channel convolutions) use the one-vector-wide kernel.
  const bool narrow = N <= kt.nrNarrow && kt.nrNarrow < kt.nr;
  const int mr = kt.mr, nr = narrow ? kt.nrNarrow : kt.nr;
  const auto microKernel = narrow ? kt.microKernelNarrow : kt.microKernel;
  const int64_t mc = kMcPanels * mr;
  PackBuffers& buf = packBuffers();
  const int64_t kcMax = std::min(K, kKc);
  buf.a.ensure(static_cast<size_t>(roundUp(std::min(M, mc), mr) * kcMax));
  buf.b.ensure(static_cast<size_t>(roundUp(std::min(N, kNc), nr) * kcMax));
  float* ap = buf.a.data();
  float* bp = buf.b.data();

  if (K == 0) {  // C = beta * C
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  for (int64_t jc = 0; jc < N; jc += kNc) {
    const int64_t nc = std::min(kNc, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKc) {
      const int64_t kc = std::min(kKc, K - pc);
      const float betaEff = pc == 0 ? beta : 1.0f;
      B.pack(bp, pc, kc, bj0 + jc, nc, nr);
      for (int64_t ic = 0; ic < M; ic += mc) {
        const int64_t mcCur = std::min(mc, M - ic);
        A.pack(ap, ai0 + ic, mcCur, pc, kc, mr);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int n = static_cast<int>(std::min<int64_t>(nr, nc - jr));
          const float* bpanel = bp + (jr / nr) * nr * kc;
          for (int64_t ir = 0; ir < mcCur; ir += mr) {
            const int m = static_cast<int>(std::min<int64_t>(mr, mcCur - ir));
            microKernel(kc, ap + (ir / mr) * mr * kc, bpanel, C + (ic + ir) * ldc + jc + jr, ldc, alpha,
                        betaEff, m, n);
          }
        }
      }
    }
  }
}

}  // namespace

GemmBlocking gemmBlocking() { return {kernels().mr, kernels().nr}; }

const char* simdName() { return kernels().name; }

void StridedA::pack(float* dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr) const {
  for (int64_t ip = 0; ip < mc; ip += mr) {
    const int64_t rows = std::min<int64_t>(mr, std::min(mc - ip, rows_ - (i0 + ip)));
    const float* src = p_ + (i0 + ip) * rs_ + k0 * cs_;
    if (cs_ == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        int64_t r = 0;
        for (; r < rows; ++r) dst[k * mr + r] = src[r * rs_ + k];
        for (; r < mr; ++r) dst[k * mr + r] = 0.0f;
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* col = src + k * cs_;
        int64_t r = 0;
        for (; r < rows; ++r) dst[k * mr + r] = col[r * rs_];
        for (; r < mr; ++r) dst[k * mr + r] = 0.0f;
      }
    }
    dst += mr * kc;
  }
}

void StridedB::pack(float* dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr) const {
  for (int64_t jp = 0; jp < nc; jp += nr) {
    const int64_t cols = std::min<int64_t>(nr, std::min(nc - jp, cols_ - (j0 + jp)));
    const float* src = p_ + k0 * rs_ + (j0 + jp) * cs_;
    for (int64_t k = 0; k < kc; ++k) {
      const float* row = src + k * rs_;
      int64_t c = 0;
      if (cs_ == 1) {
        for (; c < cols; ++c) dst[k * nr + c] = row[c];
      } else {
        for (; c < cols; ++c) dst[k * nr + c] = row[c * cs_];
      }
      for (; c < nr; ++c) dst[k * nr + c] = 0.0f;
    }
    dst += nr * kc;
  }
}

void gemm(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperandA& A, const GemmOperandB& B,
          float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  gemmBlock(0, M, 0, N, K, alpha, A, B, beta, C, ldc);
}

void gemmParallel(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperandA& A,
                  const GemmOperandB& B, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int threads = numThreads();
  const GemmBlocking blk = gemmBlocking();
  const double flops = 2.0 * M * N * K;
  if (threads == 1 || flops < 2e6) {
    gemmBlock(0, M, 0, N, K, alpha, A, B, beta, C, ldc);
    return;
  }
  // Split the larger side into ~4 pieces per thread (multiples of the register block).
  if (M >= N) {
    int64_t piece = roundUp(std::max<int64_t>(blk.mr, (M + 4 * threads - 1) / (4 * threads)), blk.mr);
    int64_t pieces = (M + piece - 1) / piece;
    parallelFor(pieces, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        int64_t i0 = p * piece, m = std::min(piece, M - i0);
        gemmBlock(i0, m, 0, N, K, alpha, A, B, beta, C + i0 * ldc, ldc);
      }
    });
  } else {
    int64_t piece = roundUp(std::max<int64_t>(blk.nr, (N + 4 * threads - 1) / (4 * threads)), blk.nr);
    int64_t pieces = (N + piece - 1) / piece;
    parallelFor(pieces, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        int64_t j0 = p * piece, n = std::min(piece, N - j0);
        gemmBlock(0, M, j0, n, K, alpha, A, B, beta, C + j0, ldc);
      }
    });
  }
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool parallel) {
  StridedA a = transA ? StridedA(A, M, K, 1, lda) : StridedA(A, M, K, lda, 1);
  StridedB b = transB ? StridedB(B, K, N, 1, ldb) : StridedB(B, K, N, ldb, 1);
  if (parallel) gemmParallel(M, N, K, alpha, a, b, beta, C, ldc);
  else gemm(M, N, K, alpha, a, b, beta, C, ldc);
}

}  // namespace supcon
