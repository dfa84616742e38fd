// Broadcasting binary ops, unary ops, sum reductions, tile and batch norm against float64
// loops that index every element from its full multi-index (no coalescing, no strides tricks).
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "memory.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace {

using supcon::nn::BinaryOp;
using supcon::nn::Shape;
using supcon::nn::UnaryOp;

Shape shapeOf(std::initializer_list<int64_t> dims) {
  Shape s;
  for (int64_t d : dims) s.dims[s.rank++] = d;
  return s;
}

std::string str(const Shape& s) {
  std::string r = "[";
  for (int i = 0; i < s.rank; ++i) r += (i ? "," : "") + std::to_string(s.dims[i]);
  return r + "]";
}

std::vector<float> randomVector(int64_t n, std::mt19937& rng, float lo = -2.0f, float hi = 2.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = u(rng);
  return v;
}

// Flat index of `full` multi-index in operand shape s, right-aligned with broadcasting.
int64_t broadcastIndex(const Shape& s, const std::vector<int64_t>& full) {
  int64_t idx = 0;
  const int off = int(full.size()) - s.rank;
  for (int i = 0; i < s.rank; ++i) idx = idx * s.dims[i] + (s.dims[i] == 1 ? 0 : full[off + i]);
  return idx;
}

std::vector<int64_t> unravel(int64_t flat, const Shape& s) {
  std::vector<int64_t> idx(s.rank);
  for (int i = s.rank - 1; i >= 0; --i) {
    idx[i] = flat % s.dims[i];
    flat /= s.dims[i];
  }
  return idx;
}

double applyBinary(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::kAdd: return a + b;
    case BinaryOp::kSub: return a - b;
    case BinaryOp::kMul: return a * b;
    case BinaryOp::kDiv: return a / b;
    case BinaryOp::kSquaredDifference: return (a - b) * (a - b);
    case BinaryOp::kMaximum: return std::max(a, b);
    case BinaryOp::kMinimum: return std::min(a, b);
  }
  return 0;
}

void checkBinary(const Shape& a, const Shape& b, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto av = randomVector(a.size(), rng), bv = randomVector(b.size(), rng, 0.5f, 2.0f);
  Shape o;
  CHECK(supcon::nn::broadcastShape(a, b, &o).isOk()) << str(a) << " " << str(b);
  for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul, BinaryOp::kDiv, BinaryOp::kSquaredDifference,
                      BinaryOp::kMaximum, BinaryOp::kMinimum}) {
    std::vector<float> out(o.size(), NAN);
    CHECK(supcon::nn::binary(op, a, av.data(), b, bv.data(), out.data()).isOk());
    for (int64_t i = 0; i < o.size(); ++i) {
      const auto full = unravel(i, o);
      const double want = applyBinary(op, av[broadcastIndex(a, full)], bv[broadcastIndex(b, full)]);
      if (!(std::fabs(out[i] - want) <= 1e-6 * (1 + std::fabs(want)))) {
        CHECK(false) << "op " << int(op) << " " << str(a) << " x " << str(b) << " at " << i << " got " << out[i]
                     << " want " << want;
        return;
      }
    }
  }
}

}  // namespace

TEST(binary_broadcast_patterns) {
  uint32_t seed = 1;
  const std::pair<Shape, Shape> cases[] = {
      {shapeOf({4, 5, 6, 7}), shapeOf({4, 5, 6, 7})},  // same shape
      {shapeOf({4, 5, 6, 7}), shapeOf({7})},           // per channel
      {shapeOf({1, 1, 1, 7}), shapeOf({4, 5, 6, 7})},  // per channel, rank 4, on the left
      {shapeOf({4, 5, 6, 7}), shapeOf({})},            // scalar
      {shapeOf({}), shapeOf({4, 5, 6, 7})},
      {shapeOf({4, 1, 1, 7}), shapeOf({4, 5, 6, 7})},  // global-pool gradient
      {shapeOf({4, 5, 1, 7}), shapeOf({1, 5, 6, 1})},  // both broadcast
      {shapeOf({3, 1}), shapeOf({1, 3})},
      {shapeOf({1}), shapeOf({1})},
      {shapeOf({2, 3, 4, 5, 6}), shapeOf({3, 1, 5, 1})},
      {shapeOf({64, 33}), shapeOf({33})},
      {shapeOf({40, 30, 50}), shapeOf({40, 1, 50})},  // large: parallel path
      {shapeOf({40, 30, 50}), shapeOf({50})},
  };
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    for (const auto& [a, b] : cases) checkBinary(a, b, seed++);
  }
  supcon::setNumThreads(2);
}

TEST(binary_rejects_incompatible_shapes) {
  Shape o;
  CHECK(supcon::nn::broadcastShape(shapeOf({3, 4}), shapeOf({5}), &o).code() == supcon::StatusCode::kInvalidArgument);
  float v = 0;
  CHECK(supcon::nn::binary(BinaryOp::kAdd, shapeOf({2}), &v, shapeOf({3}), &v, &v).code() ==
        supcon::StatusCode::kInvalidArgument);
  Shape tooBig = shapeOf({1 << 16, 1 << 16});
  CHECK(supcon::nn::binary(BinaryOp::kAdd, tooBig, &v, shapeOf({1}), &v, &v).code() ==
        supcon::StatusCode::kInvalidArgument);
  Shape badRank;
  badRank.rank = 9;
  CHECK(supcon::nn::binary(BinaryOp::kAdd, badRank, &v, shapeOf({1}), &v, &v).code() ==
        supcon::StatusCode::kInvalidArgument);
}

TEST(binary_min_max_propagate_nan) {
  const float a[2] = {NAN, 1.0f}, b[2] = {0.0f, NAN};
  float out[2];
  CHECK(supcon::nn::binary(BinaryOp::kMaximum, shapeOf({2}), a, shapeOf({2}), b, out).isOk());
  CHECK(std::isnan(out[0]) && std::isnan(out[1]));
}

TEST(unary_ops) {
  std::mt19937 rng(4);
  auto x = randomVector(100000, rng, -8.0f, 8.0f);
  x[0] = NAN;
  for (UnaryOp op : {UnaryOp::kRelu, UnaryOp::kRelu6, UnaryOp::kStep, UnaryOp::kSquare, UnaryOp::kNeg, UnaryOp::kAbs,
                     UnaryOp::kSqrt, UnaryOp::kRsqrt}) {
    std::vector<float> out(x.size());
    CHECK(supcon::nn::unary(op, int64_t(x.size()), x.data(), 0.25f, out.data()).isOk());
    CHECK(std::isnan(out[0])) << "NaN must propagate, op " << int(op);
    for (size_t i = 1; i < x.size(); ++i) {
      const double v = x[i];
      double want = 0;
      switch (op) {
        case UnaryOp::kRelu: want = std::max(0.0, v); break;
        case UnaryOp::kRelu6: want = std::min(std::max(0.0, v), 6.0); break;
        case UnaryOp::kStep: want = v > 0 ? 1.0 : 0.25; break;
        case UnaryOp::kSquare: want = v * v; break;
        case UnaryOp::kNeg: want = -v; break;
        case UnaryOp::kAbs: want = std::fabs(v); break;
        case UnaryOp::kSqrt: want = std::sqrt(v); break;
        case UnaryOp::kRsqrt: want = 1.0 / std::sqrt(v); break;
      }
      if (std::isnan(want)) {
        CHECK(std::isnan(out[i]));
      } else if (!(std::fabs(out[i] - want) <= 1e-6 * (1 + std::fabs(want)))) {
        CHECK(false) << "op " << int(op) << " x " << v << " got " << out[i] << " want " << want;
        break;
      }
    }
  }
}

TEST(reduce_sum_all_axis_patterns) {
  std::mt19937 rng(9);
  const Shape shapes[] = {shapeOf({6, 5, 4, 7}), shapeOf({64, 9, 9, 17}), shapeOf({3, 1, 5}), shapeOf({100}),
                          shapeOf({2, 3, 1, 4, 5})};
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    for (const Shape& s : shapes) {
      const auto x = randomVector(s.size(), rng);
      for (int mask = 0; mask < (1 << s.rank); ++mask) {
        bool reduce[supcon::nn::kMaxRank] = {};
        Shape out;
        for (int i = 0; i < s.rank; ++i) {
          reduce[i] = (mask >> i) & 1;
          if (!reduce[i]) out.dims[out.rank++] = s.dims[i];
        }
        std::vector<double> want(out.size(), 0.0);
        for (int64_t i = 0; i < s.size(); ++i) {
          const auto idx = unravel(i, s);
          int64_t o = 0;
          for (int a = 0; a < s.rank; ++a)
            if (!reduce[a]) o = o * s.dims[a] + idx[a];
          want[o] += x[i];
        }
        std::vector<float> got(out.size(), NAN);
        CHECK(supcon::nn::reduceSum(s, reduce, x.data(), 0.5, got.data()).isOk());
        for (int64_t i = 0; i < out.size(); ++i)
          if (!(std::fabs(got[i] - 0.5 * want[i]) <= 1e-6 * (1 + std::fabs(want[i])))) {
            CHECK(false) << str(s) << " mask " << mask << " at " << i << " got " << got[i] << " want " << 0.5 * want[i];
            break;
          }
      }
    }
  }
  supcon::setNumThreads(2);
}

TEST(reduce_sum_is_accurate_over_many_rows) {
  // 2^20 values of 0.1 per channel: float32 accumulation would drift by ~1e-3 relative.
  Shape s = shapeOf({1 << 20, 2});
  std::vector<float> x(size_t(2) << 20, 0.1f);
  bool reduce[2] = {true, false};
  float out[2];
  CHECK(supcon::nn::reduceSum(s, reduce, x.data(), 1.0, out).isOk());
  const double want = double(0.1f) * (1 << 20);
  CHECK(std::fabs(out[0] - want) <= 1e-6 * want) << out[0] << " vs " << want;
}

TEST(tile_matches_modular_indexing) {
  std::mt19937 rng(2);
  const Shape shapes[] = {shapeOf({1, 1, 1, 7}), shapeOf({2, 3}), shapeOf({3, 1, 2}), shapeOf({5})};
  const std::vector<std::vector<int64_t>> reps = {{4, 5, 6, 1}, {3, 2}, {1, 4, 3}, {7}};
  for (int c = 0; c < 4; ++c) {
    const Shape& s = shapes[c];
    const auto x = randomVector(s.size(), rng);
    Shape o = s;
    for (int i = 0; i < s.rank; ++i) o.dims[i] *= reps[c][i];
    std::vector<float> got(o.size(), NAN);
    CHECK(supcon::nn::tile(s, reps[c].data(), x.data(), got.data()).isOk());
    for (int64_t i = 0; i < o.size(); ++i) {
      auto idx = unravel(i, o);
      int64_t src = 0;
      for (int a = 0; a < s.rank; ++a) src = src * s.dims[a] + idx[a] % s.dims[a];
      if (got[i] != x[src]) {
        CHECK(false) << "tile " << str(s) << " at " << i;
        break;
      }
    }
  }
  const int64_t negative[1] = {-1};
  float v = 0;
  CHECK(supcon::nn::tile(shapeOf({1}), negative, &v, &v).code() == supcon::StatusCode::kInvalidArgument);
}

TEST(batch_norm_per_channel_and_modular) {
  std::mt19937 rng(6);
  const int64_t n = 4 * 5 * 6 * 7;
  const auto x = randomVector(n, rng), mean = randomVector(7, rng), offset = randomVector(7, rng),
             scale = randomVector(7, rng);
  const auto variance = randomVector(7, rng, 0.1f, 3.0f);
  const auto odd = randomVector(5, rng, 0.1f, 3.0f);  // period 5 over channels of 7: tfjs's modular case
  for (int variant = 0; variant < 3; ++variant) {
    supcon::nn::BatchNormArgs a;
    a.size = n;
    a.x = x.data();
    a.mean = mean.data(); a.meanSize = 7;
    a.variance = variant == 2 ? odd.data() : variance.data(); a.varianceSize = variant == 2 ? 5 : 7;
    if (variant != 1) { a.offset = offset.data(); a.offsetSize = 7; a.scale = scale.data(); a.scaleSize = 7; }
    a.epsilon = 1e-3f;
    std::vector<float> y(n, NAN);
    CHECK(supcon::nn::batchNorm(a, y.data()).isOk());
    for (int64_t i = 0; i < n; ++i) {
      const double s = a.scale ? a.scale[i % 7] : 1.0, o = a.offset ? a.offset[i % 7] : 0.0;
      const double want = o + (double(x[i]) - mean[i % 7]) * s / std::sqrt(double(a.variance[i % a.varianceSize]) + 1e-3);
      if (!(std::fabs(y[i] - want) <= 1e-5 * (1 + std::fabs(want)))) {
        CHECK(false) << "variant " << variant << " at " << i << " got " << y[i] << " want " << want;
        break;
      }
    }
  }
}

TEST(elementwise_workspace_is_released) {
  std::mt19937 rng(1);
  Shape s = shapeOf({64, 50, 33});
  const auto x = randomVector(s.size(), rng);
  bool reduce[3] = {true, true, false};
  std::vector<float> out(33);
  const int64_t before = supcon::memory::currentBytes();
  CHECK(supcon::nn::reduceSum(s, reduce, x.data(), 1.0, out.data()).isOk());
  CHECK(supcon::memory::currentBytes() == before);
}

SUPCON_TEST_MAIN
