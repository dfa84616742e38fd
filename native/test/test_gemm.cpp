// GEMM against a float64 triple loop: every transpose combination, sizes that are not
// multiples of the register block or the cache blocks, alpha/beta, serial and threaded.
#include <random>
#include <vector>

#include "check.h"
#include "supcon/gemm.h"
#include "supcon/thread_pool.h"

namespace {

void checkGemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, bool parallel,
               uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7;
  std::vector<float> a(static_cast<size_t>((ta ? K : M) * lda)), b(static_cast<size_t>((tb ? N : K) * ldb)),
      c(static_cast<size_t>(M * ldc));
  for (auto& v : a) v = u(rng);
  for (auto& v : b) v = u(rng);
  for (auto& v : c) v = u(rng);
  std::vector<double> want(static_cast<size_t>(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        double av = ta ? a[k * lda + i] : a[i * lda + k];
        double bv = tb ? b[j * ldb + k] : b[k * ldb + j];
        s += av * bv;
      }
      want[i * N + j] = alpha * s + beta * c[i * ldc + j];
    }
  std::vector<float> pad = c;
  supcon::sgemm(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc, parallel);
  double worst = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) worst = std::max(worst, std::fabs(c[i * ldc + j] - want[i * N + j]));
  // |error| <= K * eps * sum|a||b| ~ K * 6e-8 for entries in [-1, 1]
  double tol = 1e-6 * (K + 1) * std::fabs(alpha) + 1e-6;
  CHECK(worst <= tol) << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N << " K=" << K
                      << " worst=" << worst << " tol=" << tol;
  // Padding columns of C must be untouched.
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = N; j < ldc; ++j) CHECK(c[i * ldc + j] == pad[i * ldc + j]) << "wrote outside C";
}

}  // namespace

TEST(gemm_small_shapes_all_transposes) {
  uint32_t seed = 1;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t M : {1, 5, 17, 64})
        for (int64_t N : {1, 7, 16, 33})  // up to 16: the one-vector-wide kernel on AVX-512
          for (int64_t K : {1, 3, 70}) checkGemm(ta, tb, M, N, K, 0.7f, 0.0f, false, seed++);
}

TEST(gemm_beta_and_cache_block_edges) {
  // K > 256 and N > 2048 cross the KC and NC blocks; beta=1 accumulates across them.
  checkGemm(false, false, 37, 2100, 300, 1.0f, 1.0f, false, 7);
  checkGemm(true, false, 150, 45, 513, -0.5f, 0.25f, false, 8);
  checkGemm(false, true, 300, 20, 129, 2.0f, 1.0f, false, 9);
}

TEST(gemm_parallel_matches_serial_shapes) {
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    checkGemm(false, false, 1000, 40, 150, 1.0f, 0.0f, true, 11);
    checkGemm(false, true, 30, 900, 64, 1.0f, 1.0f, true, 12);
    checkGemm(true, true, 257, 257, 257, 0.5f, 0.5f, true, 13);
  }
}

TEST(gemm_beta_zero_ignores_nan_in_c) {
  std::vector<float> a(4 * 4, 1.0f), b(4 * 4, 1.0f), c(4 * 4, NAN);
  supcon::sgemm(false, false, 4, 4, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4, false);
  for (float v : c) CHECK(v == 4.0f) << "got " << v;
}

SUPCON_TEST_MAIN
