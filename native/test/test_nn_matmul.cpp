// Batched matmul against a float64 triple loop: transposes, batch broadcasting, sizes off the
// register block, the fused epilogue, both parallel schedules, and bad shapes.
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace {

using supcon::nn::Activation;
using supcon::nn::Epilogue;
using supcon::nn::MatMulShape;

void checkMatMul(const MatMulShape& s, const Epilogue& e, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(s.batchA * s.m * s.k), b(s.batchB * s.k * s.n), c(s.batch() * s.m * s.n, NAN);
  for (auto& v : a) v = u(rng);
  for (auto& v : b) v = u(rng);
  CHECK(supcon::nn::batchMatMul(s, a.data(), b.data(), e, c.data()).isOk());
  double worst = 0;
  for (int64_t bi = 0; bi < s.batch(); ++bi) {
    const float* ab = a.data() + (s.batchA == 1 ? 0 : bi) * s.m * s.k;
    const float* bb = b.data() + (s.batchB == 1 ? 0 : bi) * s.k * s.n;
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double sum = 0, mag = 0;
        for (int64_t k = 0; k < s.k; ++k) {
          const double av = s.transposeA ? ab[k * s.m + i] : ab[i * s.k + k];
          const double bv = s.transposeB ? bb[j * s.k + k] : bb[k * s.n + j];
          sum += av * bv;
          mag += std::fabs(av * bv);
        }
        if (e.bias) sum += e.bias[j];
        if (e.activation == Activation::kRelu) sum = sum > 0 ? sum : 0;
        const float got = c[(bi * s.m + i) * s.n + j];
        worst = std::max(worst, std::isfinite(got) ? std::fabs(got - sum) / (1e-5 * mag + 1e-6) : INFINITY);
      }
  }
  CHECK(worst <= 1.0) << "batchA=" << s.batchA << " batchB=" << s.batchB << " m=" << s.m << " n=" << s.n
                      << " k=" << s.k << " ta=" << s.transposeA << " tb=" << s.transposeB << " ratio " << worst;
}

}  // namespace

TEST(matmul_transposes_broadcast_and_sizes) {
  uint32_t seed = 1;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (auto [ba, bb] : {std::pair<int64_t, int64_t>{1, 1}, {3, 3}, {1, 4}, {5, 1}})
        for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 33, 5}, {13, 10, 64}, {40, 3, 300}}) {
          MatMulShape s;
          s.batchA = ba; s.batchB = bb; s.m = m; s.n = n; s.k = k; s.transposeA = ta; s.transposeB = tb;
          checkMatMul(s, Epilogue{}, seed++);
        }
}

TEST(matmul_epilogue_and_parallel_schedules) {
  std::vector<float> bias(70);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * float(i) - 0.3f;
  Epilogue e;
  e.bias = bias.data();
  e.activation = Activation::kRelu;
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    MatMulShape big;  // a few large products: each split over the pool
    big.m = 300; big.n = 70; big.k = 200;
    checkMatMul(big, e, 3);
    MatMulShape many;  // many small products: one per task
    many.batchA = many.batchB = 64; many.m = 9; many.n = 70; many.k = 11; many.transposeB = true;
    checkMatMul(many, e, 4);
  }
  supcon::setNumThreads(2);
}

TEST(matmul_k_zero_gives_bias_only) {
  MatMulShape s;
  s.m = 3; s.n = 2; s.k = 0;
  const float bias[2] = {1.5f, -2.0f};
  Epilogue e;
  e.bias = bias;
  std::vector<float> c(6, NAN);
  CHECK(supcon::nn::batchMatMul(s, nullptr, nullptr, e, c.data()).isOk());
  for (int i = 0; i < 6; ++i) CHECK(c[i] == bias[i % 2]);
}

TEST(matmul_rejects_bad_shapes) {
  MatMulShape s;
  s.batchA = 2; s.batchB = 3; s.m = s.n = s.k = 2;
  CHECK(supcon::nn::batchMatMul(s, nullptr, nullptr, Epilogue{}, nullptr).code() == supcon::StatusCode::kInvalidArgument);
  s.batchB = 2; s.m = int64_t(1) << 20; s.k = int64_t(1) << 20;
  CHECK(supcon::nn::batchMatMul(s, nullptr, nullptr, Epilogue{}, nullptr).code() == supcon::StatusCode::kInvalidArgument);
  s.m = 2; s.k = 2; s.batchA = 0;
  CHECK(supcon::nn::batchMatMul(s, nullptr, nullptr, Epilogue{}, nullptr).code() == supcon::StatusCode::kInvalidArgument);
  s.batchA = 2;
  CHECK(supcon::nn::batchMatMul(s, nullptr, nullptr, Epilogue{}, nullptr).code() == supcon::StatusCode::kInvalidArgument)
      << "null pointers";
}

SUPCON_TEST_MAIN
