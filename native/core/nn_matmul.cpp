// Batched matrix multiply with the fused bias + activation epilogue, on the project's GEMM.
#include <algorithm>
#include <new>
#include <string>

#include "nn_internal.h"
#include "supcon/gemm.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {

Status validate(const MatMulShape& s) {
  auto bad = [](const std::string& m) { return Status::invalid("batchMatMul: " + m); };
  if (s.batchA < 1 || s.batchB < 1) return bad("expected batch sizes >= 1");
  if (s.batchA != s.batchB && s.batchA != 1 && s.batchB != 1)
    return bad("expected equal batch sizes or one of them 1, got " + std::to_string(s.batchA) + " and " +
               std::to_string(s.batchB));
  if (s.m < 0 || s.n < 0 || s.k < 0) return bad("expected non-negative m, n, k");
  if (!detail::productFits({s.batchA, s.m, s.k}) || !detail::productFits({s.batchB, s.k, s.n}) ||
      !detail::productFits({s.batch(), s.m, s.n}))
    return bad("an operand has 2^31 or more elements");
  return Status::ok();
}

Status batchMatMul(const MatMulShape& s, const float* a, const float* b, const Epilogue& epilogue, float* c) {
  SUPCON_RETURN_IF_ERROR(validate(s));
  const int64_t batch = s.batch(), M = s.m, N = s.n, K = s.k;
  if (batch * M * N == 0) return Status::ok();
  if ((!a && M * K > 0) || (!b && K * N > 0) || !c) return Status::invalid("batchMatMul: null tensor pointer");
  const int64_t lda = s.transposeA ? M : K, ldb = s.transposeB ? K : N;
  auto one = [&](int64_t i, bool parallel) {
    const float* ai = a + (s.batchA == 1 ? 0 : i) * M * K;
    const float* bi = b + (s.batchB == 1 ? 0 : i) * K * N;
    float* ci = c + i * M * N;
    if (K == 0) {
      std::fill(ci, ci + M * N, 0.0f);
    } else {
      sgemm(s.transposeA, s.transposeB, M, N, K, 1.0f, ai, lda, bi, ldb, 0.0f, ci, N, parallel);
    }
    if (epilogue.active()) {
      if (parallel) applyEpilogue(epilogue, M, N, ci);
      else detail::epilogueRows(epilogue, M, N, ci, N);
    }
  };
  try {
    const double flopsEach = 2.0 * double(M) * double(N) * double(K);
    // Many small products: one per task. Few large ones: each split over the pool.
    if (batch >= 2 * numThreads() && flopsEach < 5e7) {
      parallelFor(batch, std::max<int64_t>(1, int64_t(1e6 / (flopsEach + 1))), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) one(i, false);
      });
    } else {
      for (int64_t i = 0; i < batch; ++i) one(i, true);
    }
  } catch (const std::bad_alloc&) {
    return Status::outOfMemory("batchMatMul: out of memory for packing buffers");
  }
  return Status::ok();
}

}  // namespace nn
}  // namespace supcon
