// Convolution kernels against a float64 direct convolution written from the definition in
// supcon/nn.h: random shapes (batch 1..3, channels that are not multiples of the SIMD width,
// filters 1x1..7x7, strides 1..3, dilations, asymmetric paddings), every input-gradient
// algorithm, fused epilogues, 1..3 threads, bad geometries, and no leaked workspace.
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "memory.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace {

using supcon::nn::Activation;
using supcon::nn::BackpropInputAlgorithm;
using supcon::nn::Conv2DGeometry;
using supcon::nn::ConvAlgorithm;
using supcon::nn::Epilogue;

// Float64 forward, input gradient and filter gradient plus the sums of |terms| (error scale).
struct Reference {
  std::vector<double> y, yAbs, dx, dxAbs, dw, dwAbs;
};

Reference reference(const Conv2DGeometry& g, const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<float>& dy) {
  Reference r;
  r.y.assign(g.outputSize(), 0.0);
  r.yAbs.assign(g.outputSize(), 0.0);
  r.dx.assign(g.inputSize(), 0.0);
  r.dxAbs.assign(g.inputSize(), 0.0);
  r.dw.assign(g.filterSize(), 0.0);
  r.dwAbs.assign(g.filterSize(), 0.0);
  const int64_t C = g.inChannels, O = g.outChannels;
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < g.outHeight; ++oh)
      for (int64_t ow = 0; ow < g.outWidth; ++ow)
        for (int64_t kh = 0; kh < g.filterHeight; ++kh)
          for (int64_t kw = 0; kw < g.filterWidth; ++kw) {
            const int64_t ih = oh * g.strideHeight - g.padTop + kh * g.dilationHeight;
            const int64_t iw = ow * g.strideWidth - g.padLeft + kw * g.dilationWidth;
            if (ih < 0 || ih >= g.inHeight || iw < 0 || iw >= g.inWidth) continue;
            const int64_t yo = ((n * g.outHeight + oh) * g.outWidth + ow) * O;
            const int64_t xo = ((n * g.inHeight + ih) * g.inWidth + iw) * C;
            const int64_t wo = (kh * g.filterWidth + kw) * C * O;
            for (int64_t c = 0; c < C; ++c)
              for (int64_t o = 0; o < O; ++o) {
                const double xv = x[xo + c], wv = w[wo + c * O + o], dv = dy[yo + o];
                r.y[yo + o] += xv * wv;
                r.yAbs[yo + o] += std::fabs(xv * wv);
                r.dx[xo + c] += dv * wv;
                r.dxAbs[xo + c] += std::fabs(dv * wv);
                r.dw[wo + c * O + o] += xv * dv;
                r.dwAbs[wo + c * O + o] += std::fabs(xv * dv);
              }
          }
  return r;
}

// Worst |got - want| / (1e-5 * sum|terms| + 1e-6): <= 1 passes. A dropped or doubled term of a
// K-term sum shows up as ~1/K of sum|terms|, far above 1e-5 for the sizes here.
double worstRatio(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    worst = std::max(worst, std::fabs(got[i] - want[i]) / (1e-5 * scale[i] + 1e-6));
  }
  return worst;
}

std::vector<float> randomVector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = u(rng);
  return v;
}

Conv2DGeometry randomGeometry(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int channels[] = {1, 2, 3, 5, 7, 13, 16, 17, 31, 33};
  for (;;) {
    Conv2DGeometry g;
    g.batch = pick(1, 3);
    g.inHeight = pick(1, 11);
    g.inWidth = pick(1, 11);
    g.inChannels = channels[pick(0, 9)];
    g.outChannels = channels[pick(0, 9)];
    g.filterHeight = pick(1, 7);
    g.filterWidth = pick(1, 7);
    g.strideHeight = pick(1, 3);
    g.strideWidth = pick(1, 3);
    g.dilationHeight = pick(0, 3) == 0 ? 2 : 1;
    g.dilationWidth = pick(0, 3) == 0 ? pick(2, 3) : 1;
    g.padTop = pick(0, 3);
    g.padLeft = pick(0, 3);
    const int64_t padBottom = pick(0, 3), padRight = pick(0, 3);
    const int64_t effH = (g.filterHeight - 1) * g.dilationHeight + 1, effW = (g.filterWidth - 1) * g.dilationWidth + 1;
    const int64_t spanH = g.inHeight + g.padTop + padBottom - effH, spanW = g.inWidth + g.padLeft + padRight - effW;
    if (spanH < 0 || spanW < 0) continue;
    g.outHeight = spanH / g.strideHeight + 1;
    g.outWidth = spanW / g.strideWidth + 1;
    return g;
  }
}

std::string describe(const Conv2DGeometry& g) {
  std::ostringstream s;
  s << "n=" << g.batch << " in=" << g.inHeight << "x" << g.inWidth << "x" << g.inChannels << " out=" << g.outHeight
    << "x" << g.outWidth << "x" << g.outChannels << " f=" << g.filterHeight << "x" << g.filterWidth << " s="
    << g.strideHeight << "," << g.strideWidth << " d=" << g.dilationHeight << "," << g.dilationWidth
    << " pad=" << g.padTop << "," << g.padLeft;
  return s.str();
}

void checkAll(const Conv2DGeometry& g, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto x = randomVector(g.inputSize(), rng), w = randomVector(g.filterSize(), rng),
             dy = randomVector(g.outputSize(), rng);
  const Reference ref = reference(g, x, w, dy);
  // Outputs start as NaN: every element must be written.
  std::vector<float> y(g.outputSize(), NAN), dx(g.inputSize(), NAN), dw(g.filterSize(), NAN);
  // Every forward / filter-gradient algorithm: the direct kernels must refuse what they cannot take.
  const bool unitDilation = g.dilationHeight == 1 && g.dilationWidth == 1;
  for (auto algo : {ConvAlgorithm::kAuto, ConvAlgorithm::kGemm, ConvAlgorithm::kDirect}) {
    std::fill(y.begin(), y.end(), NAN);
    supcon::Status st = supcon::nn::conv2dForward(g, x.data(), w.data(), Epilogue{}, y.data(), algo);
    const bool directFits = unitDilation && g.outChannels <= 4 * supcon::gemmBlocking().nr / 2;
    if (algo == ConvAlgorithm::kDirect && !unitDilation) {
      CHECK(st.code() == supcon::StatusCode::kInvalidArgument) << "direct forward with dilation must be refused";
      continue;
    }
    if (algo == ConvAlgorithm::kDirect && !st.isOk()) {
      CHECK(!directFits) << "direct forward refused a geometry it should take: " << describe(g);
      continue;
    }
    CHECK(st.isOk()) << st.message();
    CHECK(worstRatio(y, ref.y, ref.yAbs) <= 1.0)
        << "forward algo " << int(algo) << " " << describe(g) << " ratio " << worstRatio(y, ref.y, ref.yAbs);
  }
  for (auto algo : {ConvAlgorithm::kGemm, ConvAlgorithm::kDirect}) {
    std::fill(dw.begin(), dw.end(), NAN);
    supcon::Status st = supcon::nn::conv2dBackpropFilter(g, x.data(), dy.data(), dw.data(), algo);
    if (algo == ConvAlgorithm::kDirect && !unitDilation) {
      CHECK(st.code() == supcon::StatusCode::kInvalidArgument) << "direct filter gradient with dilation must be refused";
      continue;
    }
    CHECK(st.isOk()) << st.message();
    CHECK(worstRatio(dw, ref.dw, ref.dwAbs) <= 1.0)
        << "filter gradient algo " << int(algo) << " " << describe(g) << " ratio " << worstRatio(dw, ref.dw, ref.dwAbs);
  }
  CHECK(supcon::nn::conv2dForward(g, x.data(), w.data(), Epilogue{}, y.data()).isOk()) << describe(g);
  for (auto algo : {BackpropInputAlgorithm::kAuto, BackpropInputAlgorithm::kDirect, BackpropInputAlgorithm::kGemmCol2Im}) {
    const bool unit = g.strideHeight == 1 && g.strideWidth == 1;
    std::fill(dx.begin(), dx.end(), NAN);
    supcon::Status st = supcon::nn::conv2dBackpropInput(g, dy.data(), w.data(), dx.data(), algo);
    // Strided: the direct kernel takes unit dilation and up to 4 vectors of input channels.
    const bool phasesFit = unitDilation && g.inChannels <= 4 * supcon::gemmBlocking().nr / 2;
    if (algo == BackpropInputAlgorithm::kDirect && !unit && !phasesFit) {
      CHECK(st.code() == supcon::StatusCode::kInvalidArgument) << "direct with stride > 1 must be refused here";
      continue;
    }
    CHECK(st.isOk()) << st.message();
    CHECK(worstRatio(dx, ref.dx, ref.dxAbs) <= 1.0)
        << "backprop input algo " << int(algo) << " " << describe(g) << " ratio " << worstRatio(dx, ref.dx, ref.dxAbs);
  }
  CHECK(supcon::nn::conv2dBackpropFilter(g, x.data(), dy.data(), dw.data()).isOk()) << describe(g);
  CHECK(worstRatio(dw, ref.dw, ref.dwAbs) <= 1.0) << "backprop filter " << describe(g) << " ratio "
                                                  << worstRatio(dw, ref.dw, ref.dwAbs);
}

}  // namespace

TEST(conv_random_shapes_match_float64_reference) {
  std::mt19937 rng(2024);
  for (int t = 0; t < 150; ++t) checkAll(randomGeometry(rng), 1000 + t);
}

TEST(conv_resnet_like_shapes_and_thread_counts) {
  // Large enough to run the parallel paths (pixel ranges of the filter gradient, image tasks
  // of col2im, row pieces of the forward).
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    Conv2DGeometry g;
    g.batch = 4; g.inHeight = g.inWidth = 16; g.inChannels = 20; g.outChannels = 24;
    g.filterHeight = g.filterWidth = 3; g.padTop = g.padLeft = 1; g.outHeight = g.outWidth = 16;
    checkAll(g, 7);
    g.strideHeight = g.strideWidth = 2; g.outHeight = g.outWidth = 8;  // 'same' with stride 2
    g.padTop = g.padLeft = 0;                                          // tf puts the odd pad at the end
    checkAll(g, 8);
    Conv2DGeometry s;  // 1x1 stride-2 shortcut
    s.batch = 3; s.inHeight = s.inWidth = 14; s.inChannels = 16; s.outChannels = 40;
    s.filterHeight = s.filterWidth = 1; s.strideHeight = s.strideWidth = 2; s.outHeight = s.outWidth = 7;
    checkAll(s, 9);
  }
  supcon::setNumThreads(2);
}

TEST(conv_fused_epilogues) {
  std::mt19937 rng(5);
  Conv2DGeometry g;
  g.batch = 2; g.inHeight = 7; g.inWidth = 6; g.inChannels = 5; g.outChannels = 19;
  g.filterHeight = 3; g.filterWidth = 2; g.padTop = 1; g.padLeft = 0; g.outHeight = 7; g.outWidth = 5;
  auto x = randomVector(g.inputSize(), rng);
  for (auto& v : x) v *= 4.0f;  // pre-activations beyond 6 exercise relu6's upper clamp
  const auto w = randomVector(g.filterSize(), rng), bias = randomVector(g.outChannels, rng);
  std::vector<float> plain(g.outputSize());
  CHECK(supcon::nn::conv2dForward(g, x.data(), w.data(), Epilogue{}, plain.data()).isOk());
  for (Activation act : {Activation::kLinear, Activation::kRelu, Activation::kRelu6, Activation::kLeakyRelu,
                         Activation::kElu, Activation::kSigmoid}) {
    for (bool withBias : {false, true}) {
      Epilogue e;
      e.bias = withBias ? bias.data() : nullptr;
      e.activation = act;
      e.leakyReluAlpha = 0.3f;
      std::vector<float> y(g.outputSize(), NAN);
      CHECK(supcon::nn::conv2dForward(g, x.data(), w.data(), e, y.data()).isOk());
      for (size_t i = 0; i < y.size(); ++i) {
        const double v = double(plain[i]) + (withBias ? bias[i % g.outChannels] : 0.0);
        double want = v;
        switch (act) {
          case Activation::kLinear: break;
          case Activation::kRelu: want = v > 0 ? v : 0; break;
          case Activation::kRelu6: want = std::min(std::max(v, 0.0), 6.0); break;
          case Activation::kLeakyRelu: want = v < 0 ? 0.3 * v : v; break;
          case Activation::kElu: want = v < 0 ? std::expm1(v) : v; break;
          case Activation::kSigmoid: want = 1.0 / (1.0 + std::exp(-v)); break;
        }
        CHECK(std::fabs(y[i] - want) <= 1e-5 * (1 + std::fabs(want))) << "activation " << int(act) << " bias "
                                                                      << withBias << " got " << y[i] << " want " << want;
      }
    }
  }
}

TEST(conv_rejects_bad_geometry_without_touching_memory) {
  Conv2DGeometry good;
  good.batch = 1; good.inHeight = good.inWidth = 4; good.inChannels = 2; good.outChannels = 3;
  good.filterHeight = good.filterWidth = 3; good.outHeight = good.outWidth = 2;
  CHECK(supcon::nn::validate(good).isOk());
  auto expectInvalid = [](Conv2DGeometry g, const char* what) {
    supcon::Status st = supcon::nn::conv2dForward(g, nullptr, nullptr, Epilogue{}, nullptr);
    CHECK(st.code() == supcon::StatusCode::kInvalidArgument) << what << ": " << st.message();
    st = supcon::nn::conv2dBackpropFilter(g, nullptr, nullptr, nullptr);
    CHECK(st.code() == supcon::StatusCode::kInvalidArgument) << what;
    st = supcon::nn::conv2dBackpropInput(g, nullptr, nullptr, nullptr);
    CHECK(st.code() == supcon::StatusCode::kInvalidArgument) << what;
  };
  Conv2DGeometry g = good; g.batch = 0; expectInvalid(g, "batch 0");
  g = good; g.strideHeight = 0; expectInvalid(g, "stride 0");
  g = good; g.dilationWidth = -1; expectInvalid(g, "negative dilation");
  g = good; g.padTop = -1; expectInvalid(g, "negative pad");
  g = good; g.inChannels = int64_t(1) << 20; g.outChannels = int64_t(1) << 20; expectInvalid(g, "huge filter");
  g = good; g.batch = int64_t(1) << 40; expectInvalid(g, "huge batch");
  expectInvalid(good, "null pointers");
}

TEST(conv_workspace_is_released) {
  Conv2DGeometry g;
  g.batch = 3; g.inHeight = g.inWidth = 12; g.inChannels = 9; g.outChannels = 21;
  g.filterHeight = g.filterWidth = 3; g.strideHeight = g.strideWidth = 2; g.padTop = g.padLeft = 1;
  g.outHeight = g.outWidth = 6;
  std::mt19937 rng(3);
  const auto x = randomVector(g.inputSize(), rng), w = randomVector(g.filterSize(), rng),
             dy = randomVector(g.outputSize(), rng);
  std::vector<float> y(g.outputSize()), dx(g.inputSize()), dw(g.filterSize());
  auto run = [&] {
    CHECK(supcon::nn::conv2dForward(g, x.data(), w.data(), Epilogue{}, y.data()).isOk());
    CHECK(supcon::nn::conv2dBackpropInput(g, dy.data(), w.data(), dx.data()).isOk());
    CHECK(supcon::nn::conv2dBackpropFilter(g, x.data(), dy.data(), dw.data()).isOk());
  };
  supcon::nn::releaseScratchMemory();
  const int64_t start = supcon::memory::currentBytes();
  run();  // grows the GEMM's packing buffers and the convolutions' scratch, both kept on purpose
  const int64_t before = supcon::memory::currentBytes();
  CHECK(before > start) << "the scratch buffers should be kept between calls";
  run();
  run();
  CHECK(supcon::memory::currentBytes() == before) << "leaked " << supcon::memory::currentBytes() - before << " bytes";
  supcon::nn::releaseScratchMemory();
  CHECK(supcon::memory::currentBytes() < before) << "releaseScratchMemory() freed nothing";
}

SUPCON_TEST_MAIN
