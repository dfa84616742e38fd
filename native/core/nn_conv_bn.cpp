// Convolution + batch normalization (+ residual) (+ ReLU), forward and backward (supcon/nn.h).
//
// Forward (training): each thread piece of output rows runs the convolution's GEMM and, while
// the piece is still in cache, its per-channel moments about the piece's own first row; the
// pieces are combined with the parallel-variance formula (Chan, Golub & LeVeque 1979), so one
// pass gives the two-pass variance's accuracy. A second pass normalizes (+ residual, ReLU).
// Backward: one reduction pass (sum of g and of g (z - mean) per channel, g = dy through the
// ReLU), one pass forming dz = a g + b z + k per channel, then the convolution's two gradients
// of dz. The algebra is in docs/kernels.md.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "guarded.h"
#include "nn_internal.h"
#include "simd.h"
#include "supcon/gemm.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {
namespace {

using G = Conv2DGeometry;

Status invalid(const std::string& what, const std::string& expected, const std::string& received) {
  return Status::invalid("Expected " + expected + " for " + what + " but received " + received);
}

Status checkScalars(const char* fn, float epsilon, const float* momentum) {
  if (!(std::isfinite(epsilon) && epsilon > 0.0f))
    return invalid(std::string(fn) + " epsilon", "a finite number > 0", std::to_string(epsilon));
  if (momentum && !(*momentum >= 0.0f && *momentum <= 1.0f))
    return invalid(std::string(fn) + " momentum", "a number in [0, 1]", std::to_string(*momentum));
  return Status::ok();
}

// Pieces of output rows: about four per thread, none for small problems.
struct Pieces {
  int64_t rows, length, count;
  // maxPieces: at most this many (default four per thread).
  Pieces(const G& g, double flops, int64_t maxPieces = 0) {
    rows = g.batch * g.outHeight * g.outWidth;
    const int threads = numThreads();
    const int64_t want = (threads == 1 || flops < 4e6) ? 1 : (maxPieces > 0 ? maxPieces : 4 * threads);
    length = detail::pieceLength(rows, gemmBlocking().mr, want);
    count = (rows + length - 1) / length;
  }
  int64_t begin(int64_t p) const { return p * length; }
  int64_t end(int64_t p) const { return std::min(rows, (p + 1) * length); }
  template <typename F>
  void run(F&& fn) const {
    if (count == 1) {
      fn(int64_t(0));
      return;
    }
    parallelFor(count, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) fn(p);
    });
  }
};

Status forwardImpl(const ConvBatchNormForwardArgs& a) {
  const G& g = a.conv;
  const int64_t C = g.outChannels;
  const KernelTable& kt = kernels();
  float* z = a.z ? a.z : a.y;
  const detail::ConvForwardRows conv(g, a.x, a.filter);
  const Pieces pieces(g, g.flops(), conv.maxPieces());
  std::vector<float> scale(C), offset(C);

  if (!a.training) {
    for (int64_t c = 0; c < C; ++c) {
      const float invStd = 1.0f / std::sqrt(a.movingVariance[c] + a.epsilon);
      scale[c] = a.gamma[c] * invStd;
      offset[c] = a.beta[c] - a.movingMean[c] * scale[c];
      if (a.mean) a.mean[c] = a.movingMean[c];
      if (a.variance) a.variance[c] = a.movingVariance[c];
    }
    pieces.run([&](int64_t p) {
      const int64_t b = pieces.begin(p), e = pieces.end(p);
      conv(b, e, z);
      kt.scaleShift(z + b * C, a.residual ? a.residual + b * C : nullptr, e - b, C, scale.data(), offset.data(),
                    a.relu, a.y + b * C);
    });
    if (a.count) *a.count = double(pieces.rows);
    return Status::ok();
  }

  // Per-piece sums about the piece's first row (shift), then Chan et al.'s combination.
  std::vector<double> sum(pieces.count * C, 0.0), sumSq(pieces.count * C, 0.0);
  std::vector<float> shift(pieces.count * C);
  pieces.run([&](int64_t p) {
    const int64_t b = pieces.begin(p), e = pieces.end(p);
    conv(b, e, z);
    float* sh = shift.data() + p * C;
    for (int64_t c = 0; c < C; ++c) sh[c] = z[b * C + c];
    kt.channelMoments(z + b * C, e - b, C, sh, sum.data() + p * C, sumSq.data() + p * C);
  });
  double total = double(pieces.rows);
  const float decay = static_cast<float>(1.0 - double(a.momentum));
  std::vector<double> means(C), m2s(C);
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0;
    for (int64_t p = 0; p < pieces.count; ++p) mean += (double(shift[p * C + c]) * (pieces.end(p) - pieces.begin(p)) + sum[p * C + c]);
    mean /= total;
    double m2 = 0;
    for (int64_t p = 0; p < pieces.count; ++p) {
      const double n = double(pieces.end(p) - pieces.begin(p));
      const double s = sum[p * C + c];
      const double pieceMean = shift[p * C + c] + s / n;
      m2 += (sumSq[p * C + c] - s * s / n) + n * (pieceMean - mean) * (pieceMean - mean);
    }
    means[c] = mean;
    m2s[c] = m2;
  }
  // Synchronized batch norm: the whole batch's moments replace this process's.
  if (a.reduceMoments) SUPCON_RETURN_IF_ERROR(a.reduceMoments(C, &total, means.data(), m2s.data()));
  if (a.count) *a.count = total;
  for (int64_t c = 0; c < C; ++c) {
    const float m = static_cast<float>(means[c]);
    const float v = static_cast<float>(std::max(0.0, m2s[c] / total));
    const float invStd = 1.0f / std::sqrt(v + a.epsilon);
    scale[c] = a.gamma[c] * invStd;
    offset[c] = a.beta[c] - m * scale[c];
    if (a.mean) a.mean[c] = m;
    if (a.variance) a.variance[c] = v;
    if (a.newMovingMean) a.newMovingMean[c] = a.movingMean[c] - (a.movingMean[c] - m) * decay;
    if (a.newMovingVariance) a.newMovingVariance[c] = a.movingVariance[c] - (a.movingVariance[c] - v) * decay;
  }
  pieces.run([&](int64_t p) {
    const int64_t b = pieces.begin(p), e = pieces.end(p);
    kt.scaleShift(z + b * C, a.residual ? a.residual + b * C : nullptr, e - b, C, scale.data(), offset.data(), a.relu,
                  a.y + b * C);
  });
  return Status::ok();
}

Status backwardImpl(const ConvBatchNormBackwardArgs& a) {
  const G& g = a.conv;
  const int64_t C = g.outChannels;
  const KernelTable& kt = kernels();
  // The elementwise passes are memory-bound: split them like a small GEMM of their size.
  const Pieces pieces(g, double(g.outputSize()) * 16.0);
  std::vector<double> sumG(pieces.count * C, 0.0), sumGZ(pieces.count * C, 0.0);
  pieces.run([&](int64_t p) {
    const int64_t b = pieces.begin(p), e = pieces.end(p);
    kt.bnGradReduce(a.dy + b * C, a.relu ? a.y + b * C : a.dy + b * C, a.z + b * C, e - b, C, a.mean, a.relu,
                    sumG.data() + p * C, sumGZ.data() + p * C);
  });
  const double total = a.count > 0 ? a.count : double(pieces.rows);
  std::vector<double> sums(2 * C, 0.0);  // [sum g | sum g (z - mean)] per channel
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < pieces.count; ++p) {
      sums[c] += sumG[p * C + c];
      sums[C + c] += sumGZ[p * C + c];
    }
  // dgamma and dbeta are this process's (the parameter gradients are summed by the caller, like
  // the filter's); synchronized batch norm takes dz from the whole batch's sums (training only:
  // in inference mode the statistics are constants).
  for (int64_t c = 0; c < C; ++c) {
    const double invStd = 1.0 / std::sqrt(double(a.variance[c]) + double(a.epsilon));
    a.dbeta[c] = static_cast<float>(sums[c]);
    a.dgamma[c] = static_cast<float>(sums[C + c] * invStd);
  }
  if (a.reduceSums && a.training) SUPCON_RETURN_IF_ERROR(a.reduceSums(C, sums.data(), sums.data() + C));
  std::vector<float> ka(C), kb(C), kk(C);
  for (int64_t c = 0; c < C; ++c) {
    const double sg = sums[c], sgz = sums[C + c];
    const double invStd = 1.0 / std::sqrt(double(a.variance[c]) + double(a.epsilon));
    const double dgamma = sgz * invStd;
    const double scale = double(a.gamma[c]) * invStd;
    if (a.training) {
      // dz = scale (g - sg/M - xhat dgamma/M), xhat = (z - mean) invStd
      const double bz = -scale * invStd * dgamma / total;
      ka[c] = static_cast<float>(scale);
      kb[c] = static_cast<float>(bz);
      kk[c] = static_cast<float>(-scale * sg / total - bz * a.mean[c]);
    } else {
      ka[c] = static_cast<float>(scale);
      kb[c] = 0.0f;
      kk[c] = 0.0f;
    }
  }
  float* dz = a.dz ? a.dz : detail::scratch(detail::kScratchGradient, static_cast<size_t>(g.outputSize()));
  pieces.run([&](int64_t p) {
    const int64_t b = pieces.begin(p), e = pieces.end(p);
    kt.bnGradApply(a.dy + b * C, a.relu ? a.y + b * C : a.dy + b * C, a.z + b * C, e - b, C, a.relu, ka.data(),
                   kb.data(), kk.data(), dz + b * C, a.dresidual ? a.dresidual + b * C : nullptr);
  });
  if (a.dfilter) SUPCON_RETURN_IF_ERROR(conv2dBackpropFilter(g, a.x, dz, a.dfilter));
  if (a.dx) SUPCON_RETURN_IF_ERROR(conv2dBackpropInput(g, dz, a.filter, a.dx));
  return Status::ok();
}

}  // namespace

Status convBatchNormForward(const ConvBatchNormForwardArgs& a) {
  SUPCON_RETURN_IF_ERROR(validate(a.conv));
  const char* fn = "convBatchNormForward";
  if (!a.x || !a.filter || !a.gamma || !a.beta || !a.movingMean || !a.movingVariance || !a.y)
    return invalid(std::string(fn) + " inputs", "non-null x, filter, gamma, beta, moving statistics and y", "a null pointer");
  SUPCON_RETURN_IF_ERROR(checkScalars(fn, a.epsilon, a.training ? &a.momentum : nullptr));
  return guarded(fn, [&] { return forwardImpl(a); });
}

Status convBatchNormBackward(const ConvBatchNormBackwardArgs& a) {
  SUPCON_RETURN_IF_ERROR(validate(a.conv));
  const char* fn = "convBatchNormBackward";
  if (!a.gamma || !a.z || (a.relu && !a.y) || !a.mean || !a.variance || !a.dy || !a.dgamma || !a.dbeta ||
      ((a.dx || a.dfilter) && (!a.x || !a.filter)))
    return invalid(std::string(fn) + " inputs",
                   "non-null gamma, z, y (with ReLU), statistics, dy, dgamma, dbeta (and x, filter for dx, dfilter)",
                   "a null pointer");
  SUPCON_RETURN_IF_ERROR(checkScalars(fn, a.epsilon, nullptr));
  return guarded(fn, [&] { return backwardImpl(a); });
}

}  // namespace nn
}  // namespace supcon
