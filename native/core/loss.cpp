// Device-independent parts of the loss: the one validation of a call, problem preparation,
// reduction, normalization, and the public entry points (validate once, then dispatch).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "guarded.h"
#include "loss_internal.h"
#include "memory.h"
#include "supcon/device.h"
#include "supcon/loss.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace {

// Every score, loss and gradient bound of "Valid input" (docs/loss.md) must stay below this,
// FLT_MAX / 1024 (about 3.3e35): the headroom for the float32 sums the kernels form from those
// quantities (a tile row's 128 positive scores, differences of two terms) before they widen.
constexpr double kRangeLimit = double(FLT_MAX) / 1024;

std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// Squared row norms of [rows, dim] in double, and the first non-finite element (one parallel
// pass: a row's sum of squares is finite exactly when all its elements are).
struct RowScan {
  double maxSquared = 0;
  double minSquared = std::numeric_limits<double>::infinity();
  int64_t firstBad = -1;
};

RowScan scanRows(const float* x, int64_t rows, int64_t dim) {
  RowScan total;
  std::mutex mu;
  parallelFor(rows, std::max<int64_t>(1, (1 << 15) / dim), [&](int64_t b, int64_t e) {
    RowScan local;
    for (int64_t r = b; r < e; ++r) {
      const float* row = x + r * dim;
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += double(row[k]) * double(row[k]);
      if (!std::isfinite(ss)) {
        for (int64_t k = 0; k < dim; ++k)
          if (!std::isfinite(row[k])) {
            local.firstBad = r * dim + k;
            break;
          }
        break;
      }
      local.maxSquared = std::max(local.maxSquared, ss);
      local.minSquared = std::min(local.minSquared, ss);
    }
    std::lock_guard<std::mutex> lock(mu);
    total.maxSquared = std::max(total.maxSquared, local.maxSquared);
    total.minSquared = std::min(total.minSquared, local.minSquared);
    if (local.firstBad >= 0 && (total.firstBad < 0 || local.firstBad < total.firstBad)) total.firstBad = local.firstBad;
  });
  return total;
}

std::string nonFinite(float v) { return std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity"; }

Status checkOptions(const LossSpec& spec) {
  const float t = spec.temperature;
  if (!(t > 0.0f) || !std::isfinite(t) || !std::isfinite(1.0f / t))
    return Status::invalidArgument("temperature",
                                   "a positive number whose float32 value and reciprocal are finite and nonzero",
                                   number(t) + " (reciprocal in float32: " + number(1.0f / t) + ")");
  const float tb = spec.effectiveBaseTemperature();
  const float scale = t / tb;
  if (!(tb > 0.0f) || !std::isfinite(tb) || !std::isfinite(scale) || !(scale > 0.0f))
    return Status::invalidArgument(
        "baseTemperature", "a positive number with temperature / baseTemperature finite and nonzero in float32",
        number(tb) + " (temperature / baseTemperature in float32: " + number(scale) + ")");
  const auto known = [](auto value, const auto& names) {
    for (const auto& n : names)
      if (n.value == value) return true;
    return false;
  };
  if (!known(spec.variant, kVariantNames)) return Status::invalidArgument("variant", "a Variant", "another value");
  if (!known(spec.contrastMode, kContrastModeNames))
    return Status::invalidArgument("contrastMode", "a ContrastMode", "another value");
  if (!known(spec.reduction, kReductionNames))
    return Status::invalidArgument("reduction", "a Reduction", "another value");
  return Status::ok();
}

Status checkShapes(const LossSpec& spec, const LossInputs& in) {
  if (in.batch < 1 || in.views < 1 || in.dim < 1)
    return Status::invalidArgument("features", "a shape [batch, views, dim] of sizes >= 1",
                                   "[" + std::to_string(in.batch) + ", " + std::to_string(in.views) + ", " +
                                       std::to_string(in.dim) + "]");
  if (!in.features) return Status::invalidArgument("features", "a pointer to the features", "nullptr");
  if (in.contrastRows < 0)
    return Status::invalidArgument("contrastRows", "a count >= 0", std::to_string(in.contrastRows));
  if (in.contrastRows > 0 && !in.contrastFeatures)
    return Status::invalidArgument("contrastFeatures", "a pointer (contrastRows > 0)", "nullptr");
  if (in.contrastRows > 0 && in.labels && !in.contrastLabels)
    return Status::invalidArgument("contrastLabels", "class ids (labels were given)", "nullptr");
  const int64_t limit = std::numeric_limits<int32_t>::max();
  if (in.batch > limit / in.views || in.batch * in.views > limit / in.dim ||
      in.contrastRows > limit / in.dim || in.batch * in.views + in.contrastRows > limit / in.dim)
    return Status::invalidArgument("features", "(rows + contrast rows) * dim < 2^31",
                                   "[" + std::to_string(in.batch) + ", " + std::to_string(in.views) + ", " +
                                       std::to_string(in.dim) + "] and " + std::to_string(in.contrastRows) +
                                       " contrast rows");
  const int64_t rows = in.batch * in.views;
  if (rows + in.contrastRows < 2)
    return Status::invalidArgument("features", "at least 2 rows to contrast",
                                   std::to_string(rows + in.contrastRows) + " row");
  if (!in.labels && in.views < 2)
    return Status::invalidArgument(
        "labels",
        "class labels, or features [B, V, D] with V >= 2 views (without labels the only positives of a row are the "
        "other views of its sample)",
        "no labels with one view");
  return Status::ok();
}

// What the value scan found, for the range rules of docs/loss.md ("Valid input").
struct RangeFacts {
  double maxSquaredNorm = 0;     // over the rows entering the products
  double minFeatureNorm = 0;     // over the feature rows (the ones that get a gradient)
  double minContrastNorm = std::numeric_limits<double>::infinity();  // over the extra contrast rows
};

// The one pass over the features: finite values, and the score and loss bounds.
Status checkValues(const LossSpec& spec, const LossInputs& in, RangeFacts* facts) {
  const int64_t rows = in.batch * in.views;
  const RowScan f = scanRows(in.features, rows, in.dim);
  if (f.firstBad >= 0)
    return Status::invalidArgument("features", "finite values",
                                   nonFinite(in.features[f.firstBad]) + " at index " + std::to_string(f.firstBad));
  RowScan c;
  if (in.contrastRows > 0) {
    c = scanRows(in.contrastFeatures, in.contrastRows, in.dim);
    if (c.firstBad >= 0)
      return Status::invalidArgument("contrastFeatures", "finite values",
                                     nonFinite(in.contrastFeatures[c.firstBad]) + " at index " +
                                         std::to_string(c.firstBad));
  }
  const double rawMax = std::max(f.maxSquared, c.maxSquared);
  facts->maxSquaredNorm = spec.normalize ? 1.0 : rawMax;
  facts->minFeatureNorm = std::sqrt(f.minSquared);
  if (in.contrastRows > 0) facts->minContrastNorm = std::sqrt(c.minSquared);
  const double invT = double(1.0f / spec.temperature);
  const double scoreBound = facts->maxSquaredNorm * std::max(1.0, invT);
  if (!(scoreBound <= kRangeLimit))
    return Status::invalidArgument(
        "features", "rows whose similarity scores stay inside float32's range (max ||z||^2 * max(1, 1/temperature) <= " +
                        number(kRangeLimit) + "; normalize the rows or scale them down)",
        "rows of norm up to " + number(std::sqrt(rawMax)) + " with temperature " + number(spec.temperature) +
            " (bound " + number(scoreBound) + ")");
  const double scale = double(spec.temperature / spec.effectiveBaseTemperature());
  const double anchors = double(numAnchors(spec, in));
  const double perAnchor = scale * (2.0 * facts->maxSquaredNorm * invT + std::log(double(rows + in.contrastRows)));
  const double lossBound = perAnchor * (spec.reduction == Reduction::kMean ? 1.0 : anchors);
  if (!(lossBound <= kRangeLimit))
    return Status::invalidArgument(
        "features", "rows whose loss float32 can hold (temperature/baseTemperature * (2 max|s| + ln C), times the anchors unless reduction is mean, <= " +
                        number(kRangeLimit) + ")",
        "a bound of " + number(lossBound));
  return Status::ok();
}

// The gradient bound: 4 W max(1, 1/tau) max||z|| g <= limit, with W the total anchor weight
// (temperature/baseTemperature x the sum of |upstream|, times the anchors for reduction 'sum')
// and g = 1 / max(min ||x||, eps) with normalize (the derivative of the normalization), else 1;
// the minimum is over the extra contrast rows too when their gradient is computed.
Status checkGradientRange(const LossSpec& spec, const LossInputs& in, const RangeFacts& facts, double upstreamMass,
                          bool contrastGradient) {
  const double invT = double(1.0f / spec.temperature);
  const double scale = double(spec.temperature / spec.effectiveBaseTemperature());
  const double anchors = double(numAnchors(spec, in));
  const double weight = scale * upstreamMass * (spec.reduction == Reduction::kSum ? anchors : 1.0);
  const double minNorm = contrastGradient ? std::min(facts.minFeatureNorm, facts.minContrastNorm) : facts.minFeatureNorm;
  const double through = spec.normalize ? 1.0 / std::max(minNorm, detail::kNormalizeEpsilon) : 1.0;
  const double bound = 4.0 * weight * std::max(1.0, invT) * std::sqrt(facts.maxSquaredNorm) * through;
  if (!(bound <= kRangeLimit))
    return Status::invalidArgument(
        "features", "a problem whose gradient float32 can hold (4 W max(1, 1/temperature) max||z|| / max(min ||x||, 1e-12 if normalized) <= " +
                        number(kRangeLimit) + ")",
        "a bound of " + number(bound));
  return Status::ok();
}

// What a call computes, for its checks.
enum class Pass { kForward, kBackward, kForwardBackward };

// Everything a call checks, once: options, shapes, values, and for a backward its upstream
// gradient (given, or 1 per value for kForwardBackward) and statistics. contrastGradient: the
// extra rows' gradient is computed too.
Status validateCall(const LossSpec& spec, const LossInputs& in, Pass pass, const float* upstream = nullptr,
                    int64_t upstreamLength = 0, const float* stats = nullptr, bool contrastGradient = false) {
  SUPCON_RETURN_IF_ERROR(checkOptions(spec));
  SUPCON_RETURN_IF_ERROR(checkShapes(spec, in));
  RangeFacts facts;
  SUPCON_RETURN_IF_ERROR(checkValues(spec, in, &facts));
  if (pass == Pass::kForward) return Status::ok();
  double mass = spec.reduction == Reduction::kNone ? double(numAnchors(spec, in)) : 1.0;
  if (pass == Pass::kBackward) {
    const int64_t want = spec.reduction == Reduction::kNone ? numAnchors(spec, in) : 1;
    if (upstreamLength != want)
      return Status::invalidArgument("upstream", std::to_string(want) + " values", std::to_string(upstreamLength));
    mass = 0;
    for (int64_t i = 0; i < upstreamLength; ++i) {
      if (!std::isfinite(upstream[i]))
        return Status::invalidArgument("upstream", "finite values", nonFinite(upstream[i]) + " at index " + std::to_string(i));
      mass += std::fabs(double(upstream[i]));
    }
    const int64_t n = statsSize(spec, in);
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(stats[i]))
        return Status::invalidArgument("stats", "finite values (the statistics a forward call wrote)",
                                       nonFinite(stats[i]) + " at index " + std::to_string(i));
  }
  return checkGradientRange(spec, in, facts, mass, contrastGradient);
}

Status validateBackwardCall(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                            int64_t upstreamLength, bool contrastGradient) {
  if (!stats) return Status::invalidArgument("stats", "the statistics a forward call wrote", "nullptr");
  if (!upstream) return Status::invalidArgument("upstream", "the upstream gradient", "nullptr");
  return validateCall(spec, in, Pass::kBackward, upstream, upstreamLength, stats, contrastGradient);
}

}  // namespace

int64_t numAnchors(const LossSpec& spec, const LossInputs& in) {
  return spec.contrastMode == ContrastMode::kOne ? in.batch : in.batch * in.views;
}

int64_t statsSize(const LossSpec& spec, const LossInputs& in) { return detail::kStatsPerAnchor * numAnchors(spec, in); }

Status validate(const LossSpec& spec, const LossInputs& in) {
  return guarded("supcon loss", [&] { return validateCall(spec, in, Pass::kForward); });
}

Status validateBackward(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                        int64_t upstreamLength) {
  return guarded("supcon loss",
                 [&] { return validateBackwardCall(spec, in, stats, upstream, upstreamLength, false); });
}

namespace detail {

PreparedLoss prepare(const LossSpec& spec, const LossInputs& in, Workspace& workspace) {
  PreparedLoss p(workspace);
  p.batch = in.batch;
  p.views = in.views;
  p.dim = in.dim;
  p.rows = in.batch * in.views;
  p.extraRows = in.contrastRows;
  p.contrastRows = p.rows + p.extraRows;
  p.oneMode = spec.contrastMode == ContrastMode::kOne;
  p.anchors = p.oneMode ? p.batch : p.rows;
  p.symmetric = !p.oneMode && p.extraRows == 0;
  p.variantIn = spec.variant == Variant::kIn;
  p.invTemperature = 1.0f / spec.temperature;
  p.lossScale = spec.temperature / spec.effectiveBaseTemperature();

  p.contrastClass.resize(static_cast<size_t>(p.contrastRows));
  if (in.labels) {
    // Dense ids in order of first appearance: sort (label, position) pairs, then number the
    // distinct labels by the position where each first occurs. O(n log n), no hashing.
    const int64_t n = p.batch + p.extraRows;
    CallVector<std::pair<int32_t, int64_t>> order{WorkspaceAllocator<std::pair<int32_t, int64_t>>(workspace)};
    order.reserve(static_cast<size_t>(n));
    for (int64_t b = 0; b < p.batch; ++b) order.emplace_back(in.labels[b], b);
    for (int64_t r = 0; r < p.extraRows; ++r) order.emplace_back(in.contrastLabels[r], p.batch + r);
    std::sort(order.begin(), order.end());
    CallVector<int32_t> id{static_cast<size_t>(n), 0, WorkspaceAllocator<int32_t>(workspace)};
    int32_t next = 0;
    for (size_t k = 0; k < order.size();) {
      size_t e = k;
      while (e < order.size() && order[e].first == order[k].first) ++e;
      for (size_t q = k; q < e; ++q) id[static_cast<size_t>(order[q].second)] = next;
      ++next;
      k = e;
    }
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t v = 0; v < p.views; ++v) p.contrastClass[b * p.views + v] = id[b];
    for (int64_t r = 0; r < p.extraRows; ++r) p.contrastClass[p.rows + r] = id[p.batch + r];
    p.numClasses = next;
  } else {
    // Self-supervised: each sample is its own class; extra rows are everyone's negatives.
    for (int64_t r = 0; r < p.rows; ++r) p.contrastClass[r] = static_cast<int32_t>(r / p.views);
    for (int64_t r = 0; r < p.extraRows; ++r) p.contrastClass[p.rows + r] = -1;
    p.numClasses = static_cast<int32_t>(p.batch);
  }
  CallVector<int64_t> classCount{static_cast<size_t>(p.numClasses), 0, WorkspaceAllocator<int64_t>(workspace)};
  for (int32_t c : p.contrastClass)
    if (c >= 0) ++classCount[c];

  p.anchorRow.resize(static_cast<size_t>(p.anchors));
  p.anchorClass.resize(static_cast<size_t>(p.anchors));
  p.positives.resize(static_cast<size_t>(p.anchors));
  p.validAnchors = 0;
  for (int64_t s = 0; s < p.anchors; ++s) {
    int64_t row = p.oneMode ? s * p.views : s;
    int32_t c = p.contrastClass[row];
    p.anchorRow[s] = row;
    p.anchorClass[s] = c;
    p.positives[s] = static_cast<int32_t>(classCount[c] - 1);  // minus the anchor itself
    if (p.positives[s] > 0) ++p.validAnchors;
  }
  return p;
}

CallVector<float> anchorWeights(const LossSpec& spec, const PreparedLoss& p, const float* upstream,
                                Workspace& workspace) {
  CallVector<float> w(static_cast<size_t>(p.anchors), 0.0f, WorkspaceAllocator<float>(workspace));
  double base = p.lossScale;
  if (spec.reduction == Reduction::kMean) base /= static_cast<double>(std::max<int64_t>(1, p.validAnchors));
  for (int64_t s = 0; s < p.anchors; ++s) {
    if (p.positives[s] == 0) continue;
    double up = spec.reduction == Reduction::kNone ? upstream[p.outputIndex(s)] : upstream[0];
    w[s] = static_cast<float>(base * up);
  }
  return w;
}

double reduceLoss(const LossSpec& spec, const PreparedLoss& p, const float* stats, const double* positiveMean,
                  float* perAnchor) {
  double total = 0;
  for (int64_t s = 0; s < p.anchors; ++s) {
    double l = 0;
    if (p.positives[s] > 0) {
      const float* st = stats + kStatsPerAnchor * s;
      if (p.variantIn)
        l = (double(st[0]) - double(st[2])) + (double(st[1]) - double(st[3])) + std::log(double(p.positives[s]));
      else
        l = (double(st[0]) - positiveMean[s]) + double(st[1]);
      l *= p.lossScale;
    }
    if (perAnchor) perAnchor[p.outputIndex(s)] = static_cast<float>(l);
    total += l;
  }
  if (spec.reduction == Reduction::kMean) return p.validAnchors > 0 ? total / double(p.validAnchors) : 0.0;
  return total;
}

void normalizeRows(const float* x, int64_t rows, int64_t dim, float* z, int64_t ldz, double* norms) {
  parallelFor(rows, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * dim;
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += double(xr[k]) * xr[k];
      const double n = std::sqrt(ss);
      norms[r] = n;
      const double inv = 1.0 / std::max(n, kNormalizeEpsilon);
      for (int64_t k = 0; k < dim; ++k) z[r * ldz + k] = static_cast<float>(double(xr[k]) * inv);
    }
  });
}

void normalizeRowsBackward(const float* z, const double* norms, int64_t rows, int64_t dim, int64_t ldz, float* dz) {
  parallelFor(rows, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* zr = z + r * ldz;
      float* g = dz + r * ldz;
      if (norms[r] < kNormalizeEpsilon) {  // z = x / eps: a plain scaling
        for (int64_t k = 0; k < dim; ++k) g[k] = static_cast<float>(double(g[k]) / kNormalizeEpsilon);
        continue;
      }
      double dot = 0;
      for (int64_t k = 0; k < dim; ++k) dot += double(zr[k]) * g[k];
      const double inv = 1.0 / norms[r];
      for (int64_t k = 0; k < dim; ++k) g[k] = static_cast<float>((double(g[k]) - double(zr[k]) * dot) * inv);
    }
  });
}

}  // namespace detail

namespace {

Device resolveDevice(const RunOptions& run, const LossInputs& in) {
  if (run.device != Device::kAuto) return run.device;
  const CudaInfo& cuda = cudaInfo();
  const int64_t rows = in.batch * in.views + in.contrastRows;
  return cuda.compiled && !cuda.devices.empty() && rows >= cudaAutoMinRows() ? Device::kCuda : Device::kCpu;
}

Status checkRun(const RunOptions& run) {
  for (const auto& n : kDeviceNames)
    if (n.value == run.device) {
      for (const auto& q : kPrecisionNames)
        if (q.value == run.precision) return Status::ok();
      return Status::invalidArgument("precision", "a Precision", "another value");
    }
  return Status::invalidArgument("device", "a Device", "another value");
}

#if !defined(SUPCON_WITH_CUDA)
Status noCuda() {
  return Status::unavailable("this build of supcon-native has no CUDA support (built without a CUDA compiler)");
}
#endif

}  // namespace

Status forward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor, float* stats,
               ForwardResult* result) {
  return guarded("supcon loss", [&] {
    SUPCON_RETURN_IF_ERROR(checkRun(run));
    SUPCON_RETURN_IF_ERROR(validateCall(spec, in, Pass::kForward));
    ForwardResult local;
    ForwardResult* out = result ? result : &local;
    if (resolveDevice(run, in) == Device::kCuda) {
#if defined(SUPCON_WITH_CUDA)
      return detail::forwardCuda(spec, in, run, perAnchor, stats, out);
#else
      return noCuda();
#endif
    }
    return detail::forwardCpu(spec, in, perAnchor, stats, out);
  });
}

Status backward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                const float* upstream, int64_t upstreamLength, float* grad, float* contrastGrad,
                BackwardResult* result) {
  return guarded("supcon loss", [&] {
    SUPCON_RETURN_IF_ERROR(checkRun(run));
    if (!grad) return Status::invalidArgument("grad", "an output array", "nullptr");
    if (in.contrastRows == 0) contrastGrad = nullptr;
    SUPCON_RETURN_IF_ERROR(validateBackwardCall(spec, in, stats, upstream, upstreamLength, contrastGrad != nullptr));
    BackwardResult local;
    BackwardResult* out = result ? result : &local;
    if (resolveDevice(run, in) == Device::kCuda) {
#if defined(SUPCON_WITH_CUDA)
      return detail::backwardCuda(spec, in, run, stats, upstream, grad, contrastGrad, out);
#else
      return noCuda();
#endif
    }
    return detail::backwardCpu(spec, in, stats, upstream, grad, contrastGrad, out);
  });
}

Status forwardBackward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                       float* grad, float* contrastGrad, ForwardResult* result) {
  return guarded("supcon loss", [&] {
    SUPCON_RETURN_IF_ERROR(checkRun(run));
    if (!grad || in.contrastRows == 0) contrastGrad = nullptr;
    SUPCON_RETURN_IF_ERROR(validateCall(spec, in, grad ? Pass::kForwardBackward : Pass::kForward, nullptr, 0, nullptr,
                                        contrastGrad != nullptr));
    ForwardResult local;
    ForwardResult* out = result ? result : &local;
    if (resolveDevice(run, in) == Device::kCuda) {
#if defined(SUPCON_WITH_CUDA)
      if (!grad) return detail::forwardCuda(spec, in, run, perAnchor, nullptr, out);
      return detail::forwardBackwardCuda(spec, in, run, perAnchor, grad, contrastGrad, out);
#else
      return noCuda();
#endif
    }
    if (!grad) return detail::forwardCpu(spec, in, perAnchor, nullptr, out);
    return detail::forwardBackwardCpu(spec, in, perAnchor, grad, contrastGrad, out);
  });
}

}  // namespace supcon
