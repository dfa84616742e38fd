// Convolution + batch norm (+ residual) (+ ReLU) against float64 references written from the
// definition in supcon/nn.h: the forward (outputs, batch statistics, moving averages) against a
// direct float64 computation; the backward against central finite differences of that float64
// forward on tiny shapes, and against the float64 chain rule on ResNet-like shapes (1..3
// threads, odd channel counts, stride 1 and 2, 1x1 and 3x3, batch 1); bad arguments.
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "check.h"
#include "memory.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace {

using supcon::nn::Conv2DGeometry;
using supcon::nn::ConvBatchNormBackwardArgs;
using supcon::nn::ConvBatchNormForwardArgs;

struct Case {
  Conv2DGeometry g;
  bool relu = true, residual = false, training = true;
  float epsilon = 1e-3f, momentum = 0.9f;
};

struct Inputs {
  std::vector<float> x, w, gamma, beta, movingMean, movingVariance, residual, dy;
};

std::vector<float> uniform(size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = u(rng);
  return v;
}

Inputs randomInputs(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  const int64_t C = c.g.outChannels;
  in.x = uniform(c.g.inputSize(), rng, -1.0f, 1.0f);
  in.w = uniform(c.g.filterSize(), rng, -1.0f, 1.0f);
  in.gamma = uniform(C, rng, 0.5f, 1.5f);
  in.beta = uniform(C, rng, -0.5f, 0.5f);
  in.movingMean = uniform(C, rng, -0.5f, 0.5f);
  in.movingVariance = uniform(C, rng, 0.5f, 2.0f);
  if (c.residual) in.residual = uniform(c.g.outputSize(), rng, -1.0f, 1.0f);
  in.dy = uniform(c.g.outputSize(), rng, -1.0f, 1.0f);
  return in;
}

// Double copies of the inputs the finite differences perturb.
struct Params {
  std::vector<double> x, w, gamma, beta, residual;
};

Params toParams(const Inputs& in) {
  auto d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  return {d(in.x), d(in.w), d(in.gamma), d(in.beta), d(in.residual)};
}

struct Forward64 {
  std::vector<double> z, y, mean, variance;
};

Forward64 forward64(const Case& c, const Params& p, const Inputs& in) {
  const Conv2DGeometry& g = c.g;
  const int64_t C = g.outChannels, Ci = g.inChannels, rows = g.batch * g.outHeight * g.outWidth;
  Forward64 f;
  f.z.assign(g.outputSize(), 0.0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < g.outHeight; ++oh)
      for (int64_t ow = 0; ow < g.outWidth; ++ow)
        for (int64_t kh = 0; kh < g.filterHeight; ++kh)
          for (int64_t kw = 0; kw < g.filterWidth; ++kw) {
            const int64_t ih = oh * g.strideHeight - g.padTop + kh, iw = ow * g.strideWidth - g.padLeft + kw;
            if (ih < 0 || ih >= g.inHeight || iw < 0 || iw >= g.inWidth) continue;
            const int64_t yo = ((n * g.outHeight + oh) * g.outWidth + ow) * C;
            const int64_t xo = ((n * g.inHeight + ih) * g.inWidth + iw) * Ci;
            const int64_t wo = (kh * g.filterWidth + kw) * Ci * C;
            for (int64_t ci = 0; ci < Ci; ++ci)
              for (int64_t o = 0; o < C; ++o) f.z[yo + o] += p.x[xo + ci] * p.w[wo + ci * C + o];
          }
  f.mean.assign(C, 0.0);
  f.variance.assign(C, 0.0);
  for (int64_t o = 0; o < C; ++o) {
    if (c.training) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += f.z[r * C + o];
      const double m = s / rows;
      double v = 0;
      for (int64_t r = 0; r < rows; ++r) v += (f.z[r * C + o] - m) * (f.z[r * C + o] - m);
      f.mean[o] = m;
      f.variance[o] = v / rows;
    } else {
      f.mean[o] = in.movingMean[o];
      f.variance[o] = in.movingVariance[o];
    }
  }
  f.y.assign(g.outputSize(), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < C; ++o) {
      double v = p.gamma[o] * (f.z[r * C + o] - f.mean[o]) / std::sqrt(f.variance[o] + c.epsilon) + p.beta[o];
      if (c.residual) v += p.residual[r * C + o];
      f.y[r * C + o] = c.relu ? std::max(0.0, v) : v;
    }
  return f;
}

struct Outputs {
  std::vector<float> y, z, mean, variance, newMean, newVariance;
  std::vector<float> dx, dw, dgamma, dbeta, dresidual;
};

// Synchronized batch norm's reductions (none: this process's statistics).
struct Sync {
  std::function<supcon::Status(int64_t, double*, double*, double*)> moments;
  std::function<supcon::Status(int64_t, double*, double*)> sums;
};

Outputs runNative(const Case& c, const Inputs& in, bool saveZ = true, const Sync& sync = {}) {
  const Conv2DGeometry& g = c.g;
  const int64_t C = g.outChannels;
  Outputs o;
  o.y.assign(g.outputSize(), NAN);
  o.z.assign(g.outputSize(), NAN);
  o.mean.assign(C, NAN);
  o.variance.assign(C, NAN);
  o.newMean.assign(C, NAN);
  o.newVariance.assign(C, NAN);
  ConvBatchNormForwardArgs f;
  f.conv = g;
  f.x = in.x.data();
  f.filter = in.w.data();
  f.gamma = in.gamma.data();
  f.beta = in.beta.data();
  f.movingMean = in.movingMean.data();
  f.movingVariance = in.movingVariance.data();
  f.residual = c.residual ? in.residual.data() : nullptr;
  f.relu = c.relu;
  f.training = c.training;
  f.epsilon = c.epsilon;
  f.momentum = c.momentum;
  f.y = o.y.data();
  f.z = saveZ ? o.z.data() : nullptr;
  f.mean = o.mean.data();
  f.variance = o.variance.data();
  f.newMovingMean = o.newMean.data();
  f.newMovingVariance = o.newVariance.data();
  double count = 0;
  f.count = &count;
  f.reduceMoments = sync.moments;
  supcon::Status st = supcon::nn::convBatchNormForward(f);
  CHECK(st.isOk()) << st.message();
  if (!saveZ) return o;

  o.dx.assign(g.inputSize(), NAN);
  o.dw.assign(g.filterSize(), NAN);
  o.dgamma.assign(C, NAN);
  o.dbeta.assign(C, NAN);
  o.dresidual.assign(g.outputSize(), NAN);
  ConvBatchNormBackwardArgs b;
  b.conv = g;
  b.x = in.x.data();
  b.filter = in.w.data();
  b.gamma = in.gamma.data();
  b.z = o.z.data();
  b.y = o.y.data();
  b.mean = o.mean.data();
  b.variance = o.variance.data();
  b.dy = in.dy.data();
  b.relu = c.relu;
  b.training = c.training;
  b.epsilon = c.epsilon;
  b.dx = o.dx.data();
  b.dfilter = o.dw.data();
  b.dgamma = o.dgamma.data();
  b.dbeta = o.dbeta.data();
  b.dresidual = c.residual ? o.dresidual.data() : nullptr;
  b.count = count;
  b.reduceSums = sync.sums;
  st = supcon::nn::convBatchNormBackward(b);
  CHECK(st.isOk()) << st.message();
  return o;
}

// max |got - want| / (tol * max(1, max|want|)).
double relError(const std::vector<float>& got, const std::vector<double>& want) {
  double scale = 1.0, worst = 0.0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    worst = std::max(worst, std::fabs(got[i] - want[i]) / scale);
  }
  return worst;
}

// Float64 gradients of L = sum(y * dy) by central differences of forward64.
struct Grads64 {
  std::vector<double> dx, dw, dgamma, dbeta, dresidual;
};

Grads64 finiteDifferences(const Case& c, const Inputs& in) {
  const Params base = toParams(in);
  auto loss = [&](const Params& p) {
    const Forward64 f = forward64(c, p, in);
    double l = 0;
    for (size_t i = 0; i < f.y.size(); ++i) l += f.y[i] * in.dy[i];
    return l;
  };
  const double h = 1e-6;
  auto diff = [&](std::vector<double> Params::*member) {
    Params p = base;
    std::vector<double> out((p.*member).size());
    for (size_t i = 0; i < out.size(); ++i) {
      const double v = (p.*member)[i];
      (p.*member)[i] = v + h;
      const double up = loss(p);
      (p.*member)[i] = v - h;
      const double down = loss(p);
      (p.*member)[i] = v;
      out[i] = (up - down) / (2 * h);
    }
    return out;
  };
  Grads64 g;
  g.dx = diff(&Params::x);
  g.dw = diff(&Params::w);
  g.dgamma = diff(&Params::gamma);
  g.dbeta = diff(&Params::beta);
  if (c.residual) g.dresidual = diff(&Params::residual);
  return g;
}

// Float64 gradients by the chain rule (the same algebra as docs/kernels.md, all in double).
Grads64 chainRule(const Case& c, const Inputs& in) {
  const Conv2DGeometry& g = c.g;
  const Params p = toParams(in);
  const Forward64 f = forward64(c, p, in);
  const int64_t C = g.outChannels, Ci = g.inChannels, rows = g.batch * g.outHeight * g.outWidth;
  std::vector<double> gm(g.outputSize()), dz(g.outputSize());
  for (int64_t i = 0; i < g.outputSize(); ++i) gm[i] = (!c.relu || f.y[i] > 0) ? in.dy[i] : 0.0;
  Grads64 r;
  r.dgamma.assign(C, 0.0);
  r.dbeta.assign(C, 0.0);
  for (int64_t o = 0; o < C; ++o) {
    const double inv = 1.0 / std::sqrt(f.variance[o] + c.epsilon);
    double sg = 0, sgx = 0;
    for (int64_t row = 0; row < rows; ++row) {
      sg += gm[row * C + o];
      sgx += gm[row * C + o] * (f.z[row * C + o] - f.mean[o]) * inv;
    }
    r.dbeta[o] = sg;
    r.dgamma[o] = sgx;
    for (int64_t row = 0; row < rows; ++row) {
      const double xhat = (f.z[row * C + o] - f.mean[o]) * inv;
      const double gv = gm[row * C + o];
      dz[row * C + o] = c.training ? p.gamma[o] * inv * (gv - sg / rows - xhat * sgx / rows) : p.gamma[o] * inv * gv;
    }
  }
  if (c.residual) r.dresidual = gm;
  r.dx.assign(g.inputSize(), 0.0);
  r.dw.assign(g.filterSize(), 0.0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < g.outHeight; ++oh)
      for (int64_t ow = 0; ow < g.outWidth; ++ow)
        for (int64_t kh = 0; kh < g.filterHeight; ++kh)
          for (int64_t kw = 0; kw < g.filterWidth; ++kw) {
            const int64_t ih = oh * g.strideHeight - g.padTop + kh, iw = ow * g.strideWidth - g.padLeft + kw;
            if (ih < 0 || ih >= g.inHeight || iw < 0 || iw >= g.inWidth) continue;
            const int64_t yo = ((n * g.outHeight + oh) * g.outWidth + ow) * C;
            const int64_t xo = ((n * g.inHeight + ih) * g.inWidth + iw) * Ci;
            const int64_t wo = (kh * g.filterWidth + kw) * Ci * C;
            for (int64_t ci = 0; ci < Ci; ++ci)
              for (int64_t o = 0; o < C; ++o) {
                r.dx[xo + ci] += dz[yo + o] * p.w[wo + ci * C + o];
                r.dw[wo + ci * C + o] += dz[yo + o] * p.x[xo + ci];
              }
          }
  return r;
}

Conv2DGeometry same(int64_t batch, int64_t hw, int64_t ci, int64_t co, int64_t k, int64_t stride) {
  Conv2DGeometry g;
  g.batch = batch;
  g.inHeight = g.inWidth = hw;
  g.inChannels = ci;
  g.outChannels = co;
  g.filterHeight = g.filterWidth = k;
  g.strideHeight = g.strideWidth = stride;
  g.outHeight = g.outWidth = (hw + stride - 1) / stride;
  // tfjs 'same': total pad = max((out - 1) * stride + k - in, 0), the odd pixel at the bottom/right.
  const int64_t pad = std::max<int64_t>((g.outHeight - 1) * stride + k - hw, 0);
  g.padTop = g.padLeft = pad / 2;
  return g;
}

std::string describe(const Case& c) {
  std::ostringstream s;
  s << "n=" << c.g.batch << " " << c.g.inHeight << "x" << c.g.inWidth << "x" << c.g.inChannels << "->" << c.g.outChannels
    << " k=" << c.g.filterHeight << " s=" << c.g.strideHeight << (c.relu ? " relu" : "") << (c.residual ? " residual" : "")
    << (c.training ? " training" : " inference");
  return s.str();
}

void checkForward(const Case& c, const Inputs& in, const Outputs& o, double tol) {
  const Forward64 f = forward64(c, toParams(in), in);
  CHECK(relError(o.y, f.y) < tol) << "y " << describe(c) << " err " << relError(o.y, f.y);
  CHECK(relError(o.z, f.z) < tol) << "z " << describe(c);
  CHECK(relError(o.mean, f.mean) < tol) << "mean " << describe(c);
  CHECK(relError(o.variance, f.variance) < tol) << "variance " << describe(c) << " err " << relError(o.variance, f.variance);
  if (c.training) {
    std::vector<double> wantMean(f.mean.size()), wantVar(f.mean.size());
    for (size_t i = 0; i < f.mean.size(); ++i) {
      wantMean[i] = in.movingMean[i] * c.momentum + f.mean[i] * (1 - c.momentum);
      wantVar[i] = in.movingVariance[i] * c.momentum + f.variance[i] * (1 - c.momentum);
    }
    CHECK(relError(o.newMean, wantMean) < tol) << "moving mean " << describe(c);
    CHECK(relError(o.newVariance, wantVar) < tol) << "moving variance " << describe(c);
  }
}

void checkBackward(const Case& c, const Outputs& o, const Grads64& want, double tol) {
  CHECK(relError(o.dx, want.dx) < tol) << "dx " << describe(c) << " err " << relError(o.dx, want.dx);
  CHECK(relError(o.dw, want.dw) < tol) << "dfilter " << describe(c) << " err " << relError(o.dw, want.dw);
  CHECK(relError(o.dgamma, want.dgamma) < tol) << "dgamma " << describe(c) << " err " << relError(o.dgamma, want.dgamma);
  CHECK(relError(o.dbeta, want.dbeta) < tol) << "dbeta " << describe(c);
  if (c.residual) CHECK(relError(o.dresidual, want.dresidual) < tol) << "dresidual " << describe(c);
}

}  // namespace

TEST(conv_bn_tiny_cases_match_finite_differences) {
  int k = 0;
  for (bool training : {true, false})
    for (bool relu : {true, false})
      for (bool residual : {false, true})
        for (int64_t stride : {1, 2}) {
          Case c;
          c.g = same(2, 5, 3, 5, stride == 1 ? 3 : 1, stride);
          c.relu = relu;
          c.residual = residual;
          c.training = training;
          const Inputs in = randomInputs(c, 100 + k++);
          const Outputs o = runNative(c, in);
          checkForward(c, in, o, 2e-6);
          // Finite differences of a float64 function: ~1e-8 accurate; the float32 kernel ~1e-6.
          checkBackward(c, o, finiteDifferences(c, in), 2e-5);
        }
}

TEST(conv_bn_resnet_like_shapes_and_threads_match_float64) {
  struct Shape { int64_t batch, hw, ci, co, k, stride; };
  const Shape shapes[] = {
      {1, 7, 1, 16, 3, 1},    // batch 1, the 1-channel stem
      {3, 9, 16, 16, 3, 1},   // a stage-1 conv
      {2, 10, 16, 32, 3, 2},  // strided first conv of a stage
      {2, 10, 16, 32, 1, 2},  // 1x1 projection shortcut
      {2, 6, 33, 17, 3, 1},   // odd channel counts (vector tails)
      {4, 16, 8, 64, 3, 1},   // enough work for the parallel pieces
  };
  uint32_t seed = 7;
  for (int threads : {1, 2, 3}) {
    supcon::setNumThreads(threads);
    for (const Shape& s : shapes)
      for (bool training : {true, false})
        for (bool residual : {false, true}) {
          Case c;
          c.g = same(s.batch, s.hw, s.ci, s.co, s.k, s.stride);
          c.training = training;
          c.residual = residual;
          c.relu = seed % 3 != 0;
          const Inputs in = randomInputs(c, seed++);
          const Outputs o = runNative(c, in);
          checkForward(c, in, o, 1e-5);
          checkBackward(c, o, chainRule(c, in), 1e-4);
        }
  }
  supcon::setNumThreads(2);
}

TEST(conv_bn_variance_of_offset_activations_is_accurate) {
  // Outputs with a mean 1000x their spread: a naive E[z^2] - E[z]^2 in float loses every digit.
  Case c;
  c.g = same(4, 12, 1, 3, 1, 1);
  Inputs in = randomInputs(c, 3);
  for (auto& v : in.x) v = 1000.0f + 0.5f * v;
  for (auto& v : in.w) v = 1.0f;
  const Outputs o = runNative(c, in);
  const Forward64 f = forward64(c, toParams(in), in);
  for (size_t i = 0; i < f.variance.size(); ++i)
    CHECK(std::fabs(o.variance[i] - f.variance[i]) <= 1e-3 * f.variance[i]) << o.variance[i] << " vs " << f.variance[i];
}

TEST(conv_bn_forward_without_saved_z_gives_the_same_y) {
  Case c;
  c.g = same(2, 8, 4, 6, 3, 1);
  c.residual = true;
  const Inputs in = randomInputs(c, 11);
  const Outputs with = runNative(c, in, true), without = runNative(c, in, false);
  for (size_t i = 0; i < with.y.size(); ++i) CHECK(with.y[i] == without.y[i]);
}

TEST(conv_bn_split_backward_matches_the_combined_call) {
  // dz written out, dx / dfilter skipped, then the convolution's own gradients of dz.
  Case c;
  c.g = same(2, 9, 5, 7, 3, 2);
  c.residual = true;
  const Inputs in = randomInputs(c, 21);
  const Outputs full = runNative(c, in);
  const int64_t C = c.g.outChannels;
  std::vector<float> dz(c.g.outputSize(), NAN), dgamma(C, NAN), dbeta(C, NAN), dres(c.g.outputSize(), NAN);
  ConvBatchNormBackwardArgs b;
  b.conv = c.g;
  b.gamma = in.gamma.data();
  b.z = full.z.data();
  b.y = full.y.data();
  b.mean = full.mean.data();
  b.variance = full.variance.data();
  b.dy = in.dy.data();
  b.relu = c.relu;
  b.training = c.training;
  b.epsilon = c.epsilon;
  b.dgamma = dgamma.data();
  b.dbeta = dbeta.data();
  b.dresidual = dres.data();
  b.dz = dz.data();
  supcon::Status st = supcon::nn::convBatchNormBackward(b);
  CHECK(st.isOk()) << st.message();
  std::vector<float> dx(c.g.inputSize(), NAN), dw(c.g.filterSize(), NAN);
  CHECK(supcon::nn::conv2dBackpropFilter(c.g, in.x.data(), dz.data(), dw.data()).isOk());
  CHECK(supcon::nn::conv2dBackpropInput(c.g, dz.data(), in.w.data(), dx.data()).isOk());
  CHECK(dx == full.dx && dw == full.dw && dgamma == full.dgamma && dbeta == full.dbeta && dres == full.dresidual);
}

TEST(conv_bn_reduced_statistics_of_two_shards_equal_the_whole_batch) {
  // Synchronized batch norm as two data-parallel ranks would run it: the batch split 4 + 2, each
  // shard's moments and gradient sums replaced by the combination of both (Chan et al.'s formula,
  // as the MPI binding combines them). y, dx and the statistics of the shards are the whole
  // batch's rows; the shards' filter, gamma and beta gradients sum to the whole batch's (what the
  // gradient allreduce adds).
  Case c;
  c.g = same(6, 9, 5, 7, 3, 1);
  c.residual = true;
  const Inputs in = randomInputs(c, 31);
  const Outputs full = runNative(c, in);
  const int64_t C = c.g.outChannels;
  const int64_t splits[2][2] = {{0, 4}, {4, 6}};
  auto shard = [&](int s, Case* sc) {
    *sc = c;
    const int64_t b0 = splits[s][0], b1 = splits[s][1];
    sc->g.batch = b1 - b0;
    const int64_t inPer = c.g.inHeight * c.g.inWidth * c.g.inChannels, outPer = c.g.outHeight * c.g.outWidth * C;
    Inputs part = in;
    part.x.assign(in.x.begin() + b0 * inPer, in.x.begin() + b1 * inPer);
    part.residual.assign(in.residual.begin() + b0 * outPer, in.residual.begin() + b1 * outPer);
    part.dy.assign(in.dy.begin() + b0 * outPer, in.dy.begin() + b1 * outPer);
    return part;
  };
  // Pass 1: each shard's own moments and sums (captured, left unchanged).
  std::vector<double> count(2), mean(2 * C), m2(2 * C), sumG(2 * C), sumGZ(2 * C);
  for (int s = 0; s < 2; ++s) {
    Case sc;
    const Inputs part = shard(s, &sc);
    Sync capture;
    capture.moments = [&, s](int64_t ch, double* n, double* mu, double* q) {
      count[s] = *n;
      std::copy(mu, mu + ch, mean.begin() + s * C);
      std::copy(q, q + ch, m2.begin() + s * C);
      return supcon::Status::ok();
    };
    runNative(sc, part, true, capture);
  }
  // The whole batch's moments, then each shard's gradient sums taken about the whole mean.
  const double total = count[0] + count[1];
  std::vector<double> gMean(C), gM2(C);
  for (int64_t k = 0; k < C; ++k) {
    gMean[k] = (count[0] * mean[k] + count[1] * mean[C + k]) / total;
    gM2[k] = m2[k] + m2[C + k] + count[0] * std::pow(mean[k] - gMean[k], 2) + count[1] * std::pow(mean[C + k] - gMean[k], 2);
  }
  Sync global;
  global.moments = [&](int64_t ch, double* n, double* mu, double* q) {
    *n = total;
    std::copy(gMean.begin(), gMean.end(), mu);
    std::copy(gM2.begin(), gM2.end(), q);
    return supcon::Status::ok();
  };
  for (int s = 0; s < 2; ++s) {
    Case sc;
    const Inputs part = shard(s, &sc);
    Sync capture = global;
    capture.sums = [&, s](int64_t ch, double* g, double* gz) {
      std::copy(g, g + ch, sumG.begin() + s * C);
      std::copy(gz, gz + ch, sumGZ.begin() + s * C);
      return supcon::Status::ok();
    };
    runNative(sc, part, true, capture);
  }
  global.sums = [&](int64_t ch, double* g, double* gz) {
    for (int64_t k = 0; k < ch; ++k) {
      g[k] = sumG[k] + sumG[C + k];
      gz[k] = sumGZ[k] + sumGZ[C + k];
    }
    return supcon::Status::ok();
  };
  std::vector<double> y, dx, dw(c.g.filterSize(), 0.0), dgamma(C, 0.0), dbeta(C, 0.0);
  auto close = [](const std::vector<float>& a, const std::vector<double>& b) {
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      scale = std::max(scale, std::fabs(b[i]));
      worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
    }
    return worst / scale;
  };
  auto asDouble = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  for (int s = 0; s < 2; ++s) {
    Case sc;
    const Inputs part = shard(s, &sc);
    const Outputs o = runNative(sc, part, true, global);
    y.insert(y.end(), o.y.begin(), o.y.end());
    dx.insert(dx.end(), o.dx.begin(), o.dx.end());
    for (size_t i = 0; i < dw.size(); ++i) dw[i] += o.dw[i];
    for (int64_t k = 0; k < C; ++k) {
      dgamma[k] += o.dgamma[k];
      dbeta[k] += o.dbeta[k];
    }
    CHECK(close(full.mean, asDouble(o.mean)) < 1e-6 && close(full.variance, asDouble(o.variance)) < 1e-6) << "shard " << s;
    CHECK(close(full.newMean, asDouble(o.newMean)) < 1e-6 && close(full.newVariance, asDouble(o.newVariance)) < 1e-6);
  }
  CHECK(close(full.dgamma, dgamma) < 1e-5 && close(full.dbeta, dbeta) < 1e-5) << close(full.dgamma, dgamma);
  CHECK(close(full.y, y) < 1e-5) << close(full.y, y);
  CHECK(close(full.dx, dx) < 1e-5) << close(full.dx, dx);
  CHECK(close(full.dw, dw) < 1e-5) << close(full.dw, dw);
  // And without the reductions a shard's statistics are its own (they differ from the batch's).
  Case sc;
  const Outputs own = runNative(sc, shard(1, &sc));
  CHECK(close(full.mean, asDouble(own.mean)) > 1e-3);
  // A failing reduction is the call's status (the binding's MPI errors end there).
  Sync failing;
  failing.moments = [](int64_t, double*, double*, double*) { return supcon::Status::communication("peer lost"); };
  ConvBatchNormForwardArgs f;
  std::vector<float> yOut(c.g.outputSize());
  f.conv = c.g;
  f.x = in.x.data();
  f.filter = in.w.data();
  f.gamma = in.gamma.data();
  f.beta = in.beta.data();
  f.movingMean = in.movingMean.data();
  f.movingVariance = in.movingVariance.data();
  f.training = true;
  f.y = yOut.data();
  f.reduceMoments = failing.moments;
  const supcon::Status st = supcon::nn::convBatchNormForward(f);
  CHECK(st.code() == supcon::StatusCode::kCommunication && st.message() == "peer lost") << st.message();
}

TEST(conv_bn_rejects_bad_arguments) {
  Case c;
  c.g = same(1, 4, 2, 3, 3, 1);
  Inputs in = randomInputs(c, 1);
  std::vector<float> y(c.g.outputSize()), z(c.g.outputSize());
  ConvBatchNormForwardArgs f;
  f.conv = c.g;
  f.x = in.x.data();
  f.filter = in.w.data();
  f.gamma = in.gamma.data();
  f.beta = in.beta.data();
  f.movingMean = in.movingMean.data();
  f.movingVariance = in.movingVariance.data();
  f.training = true;
  f.y = y.data();
  f.z = z.data();
  CHECK(supcon::nn::convBatchNormForward(f).isOk());
  ConvBatchNormForwardArgs bad = f;
  bad.epsilon = 0.0f;
  CHECK(supcon::nn::convBatchNormForward(bad).code() == supcon::StatusCode::kInvalidArgument);
  bad = f;
  bad.momentum = 1.5f;
  CHECK(supcon::nn::convBatchNormForward(bad).code() == supcon::StatusCode::kInvalidArgument);
  bad = f;
  bad.gamma = nullptr;
  CHECK(supcon::nn::convBatchNormForward(bad).code() == supcon::StatusCode::kInvalidArgument);
  bad = f;
  bad.conv.outChannels = 0;
  CHECK(supcon::nn::convBatchNormForward(bad).code() == supcon::StatusCode::kInvalidArgument);
  ConvBatchNormBackwardArgs b;
  b.conv = c.g;
  CHECK(supcon::nn::convBatchNormBackward(b).code() == supcon::StatusCode::kInvalidArgument);
}

TEST(conv_bn_scratch_is_reused_and_released) {
  Case c;
  c.g = same(2, 8, 4, 6, 3, 1);
  const Inputs in = randomInputs(c, 5);
  runNative(c, in);  // grows the cached scratch once
  const int64_t before = supcon::memory::currentBytes();
  for (int i = 0; i < 3; ++i) runNative(c, in);
  CHECK(supcon::memory::currentBytes() == before) << "leaked " << supcon::memory::currentBytes() - before << " bytes";
  supcon::nn::releaseScratchMemory();
  CHECK(supcon::memory::currentBytes() < before) << "releaseScratchMemory() freed nothing";
}

SUPCON_TEST_MAIN
