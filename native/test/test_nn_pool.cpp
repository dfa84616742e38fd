// Pooling against loops written from tfjs's definitions: random geometries with paddings wide
// enough to leave windows empty, inputs with ties (few distinct values) and NaN.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace {

using supcon::nn::Pool2DGeometry;
using supcon::nn::PoolType;

Pool2DGeometry randomGeometry(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Pool2DGeometry g;
  g.batch = pick(1, 3);
  g.inHeight = pick(1, 9);
  g.inWidth = pick(1, 9);
  g.channels = pick(1, 19);
  g.filterHeight = pick(1, 4);
  g.filterWidth = pick(1, 4);
  g.strideHeight = pick(1, 3);
  g.strideWidth = pick(1, 3);
  g.padTop = pick(0, 4);  // up to a whole window of padding: empty windows
  g.padLeft = pick(0, 4);
  g.outHeight = std::max<int64_t>(1, (g.inHeight + g.padTop + pick(0, 3) - g.filterHeight) / g.strideHeight + 1);
  g.outWidth = std::max<int64_t>(1, (g.inWidth + g.padLeft + pick(0, 3) - g.filterWidth) / g.strideWidth + 1);
  return g;
}

// Calls fn(r, c) for the in-image pixels of window (oh, ow) in row-major order.
template <typename F>
void forWindow(const Pool2DGeometry& g, int64_t oh, int64_t ow, F&& fn) {
  for (int64_t i = 0; i < g.filterHeight; ++i)
    for (int64_t j = 0; j < g.filterWidth; ++j) {
      const int64_t r = oh * g.strideHeight - g.padTop + i, c = ow * g.strideWidth - g.padLeft + j;
      if (r >= 0 && r < g.inHeight && c >= 0 && c < g.inWidth) fn(r, c);
    }
}

bool same(float got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= tol * (1 + std::fabs(want));
}

void checkPool(const Pool2DGeometry& g, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(-3, 3);  // few distinct values: ties everywhere
  std::vector<float> x(g.inputSize()), dy(g.outputSize());
  for (auto& v : x) v = 0.5f * level(rng);
  for (auto& v : dy) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  if (x.size() > 3) x[x.size() / 3] = NAN;
  const int64_t C = g.channels;
  auto xAt = [&](int64_t n, int64_t r, int64_t c, int64_t k) { return x[((n * g.inHeight + r) * g.inWidth + c) * C + k]; };
  std::vector<double> maxWant(g.outputSize()), avgWant(g.outputSize()), dxMax(g.inputSize(), 0.0), dxAvg(g.inputSize(), 0.0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < g.outHeight; ++oh)
      for (int64_t ow = 0; ow < g.outWidth; ++ow)
        for (int64_t k = 0; k < C; ++k) {
          const int64_t o = ((n * g.outHeight + oh) * g.outWidth + ow) * C + k;
          double best = -std::numeric_limits<double>::infinity(), sum = 0;
          int64_t where = -1, count = 0;
          forWindow(g, oh, ow, [&](int64_t r, int64_t c) {
            const double v = xAt(n, r, c, k);
            if (v > best) {
              best = v;
              where = ((n * g.inHeight + r) * g.inWidth + c) * C + k;
            }
            sum += v;
            ++count;
            dxAvg[((n * g.inHeight + r) * g.inWidth + c) * C + k] += dy[o] / double(g.filterHeight * g.filterWidth);
          });
          maxWant[o] = best;
          avgWant[o] = count ? sum / count : NAN;
          if (where >= 0) dxMax[where] += dy[o];
        }
  std::vector<float> y(g.outputSize()), dx(g.inputSize(), NAN);
  CHECK(supcon::nn::pool2d(PoolType::kMax, g, x.data(), y.data()).isOk());
  for (int64_t i = 0; i < g.outputSize(); ++i)
    if (!same(y[i], maxWant[i], 0)) {
      CHECK(false) << "max pool at " << i << " got " << y[i] << " want " << maxWant[i];
      break;
    }
  CHECK(supcon::nn::pool2d(PoolType::kAvg, g, x.data(), y.data()).isOk());
  for (int64_t i = 0; i < g.outputSize(); ++i)
    if (!same(y[i], avgWant[i], 1e-6)) {
      CHECK(false) << "avg pool at " << i << " got " << y[i] << " want " << avgWant[i];
      break;
    }
  CHECK(supcon::nn::maxPool2dBackward(g, x.data(), dy.data(), dx.data()).isOk());
  for (int64_t i = 0; i < g.inputSize(); ++i)
    if (!same(dx[i], dxMax[i], 1e-6)) {
      CHECK(false) << "max pool gradient at " << i << " got " << dx[i] << " want " << dxMax[i];
      break;
    }
  std::fill(dx.begin(), dx.end(), NAN);
  CHECK(supcon::nn::avgPool2dBackward(g, dy.data(), dx.data()).isOk());
  for (int64_t i = 0; i < g.inputSize(); ++i)
    if (!same(dx[i], dxAvg[i], 1e-5)) {
      CHECK(false) << "avg pool gradient at " << i << " got " << dx[i] << " want " << dxAvg[i];
      break;
    }
}

}  // namespace

TEST(pool_random_geometries_with_ties_nan_and_empty_windows) {
  std::mt19937 rng(77);
  for (int t = 0; t < 200; ++t) checkPool(randomGeometry(rng), 500 + t);
}

TEST(pool_resnet_stem_shapes_threaded) {
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    Pool2DGeometry g;  // 3x3 stride-2 'same' max pool of an ImageNet-style stem
    g.batch = 8; g.inHeight = g.inWidth = 24; g.channels = 20; g.filterHeight = g.filterWidth = 3;
    g.strideHeight = g.strideWidth = 2; g.padTop = g.padLeft = 0; g.outHeight = g.outWidth = 12;
    checkPool(g, 1);
  }
  supcon::setNumThreads(2);
}

TEST(pool_rejects_bad_geometry) {
  Pool2DGeometry g;
  g.batch = 1; g.inHeight = g.inWidth = 4; g.channels = 2; g.filterHeight = g.filterWidth = 2;
  g.outHeight = g.outWidth = 3;
  CHECK(supcon::nn::validate(g).isOk());
  Pool2DGeometry b = g; b.strideWidth = 0;
  CHECK(supcon::nn::pool2d(PoolType::kMax, b, nullptr, nullptr).code() == supcon::StatusCode::kInvalidArgument);
  b = g; b.padLeft = -1;
  CHECK(supcon::nn::maxPool2dBackward(b, nullptr, nullptr, nullptr).code() == supcon::StatusCode::kInvalidArgument);
  b = g; b.batch = int64_t(1) << 33;
  CHECK(supcon::nn::avgPool2dBackward(b, nullptr, nullptr).code() == supcon::StatusCode::kInvalidArgument);
  CHECK(supcon::nn::pool2d(PoolType::kAvg, g, nullptr, nullptr).code() == supcon::StatusCode::kInvalidArgument);
}

SUPCON_TEST_MAIN
