// Device-independent parts of the loss: validation, problem preparation, reduction, dispatch.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <new>
#include <string>
#include <unordered_map>

#include "guarded.h"
#include "loss_internal.h"
#include "memory.h"
#include "supcon/device.h"
#include "supcon/loss.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace {

// First non-finite value in x, or -1 (checked in parallel: it is one pass over N*D floats).
int64_t firstNonFinite(const float* x, int64_t n) {
  std::atomic<int64_t> best{std::numeric_limits<int64_t>::max()};
  parallelFor(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (!std::isfinite(x[i])) {
        int64_t cur = best.load();
        while (i < cur && !best.compare_exchange_weak(cur, i)) {
        }
        return;
      }
    }
  });
  int64_t r = best.load();
  return r == std::numeric_limits<int64_t>::max() ? -1 : r;
}

}  // namespace

int64_t numAnchors(const LossSpec& spec, const LossInputs& in) {
  return spec.contrastMode == ContrastMode::kOne ? in.batch : in.batch * in.views;
}

int64_t statsSize(const LossSpec& spec, const LossInputs& in) { return 2 * numAnchors(spec, in); }

Status validate(const LossSpec& spec, const LossInputs& in) {
  if (!(spec.temperature > 0.0f) || !std::isfinite(spec.temperature))
    return Status::invalid("temperature must be a finite number > 0, got " + std::to_string(spec.temperature));
  if (!(spec.baseTemperature > 0.0f) || !std::isfinite(spec.baseTemperature))
    return Status::invalid("baseTemperature must be a finite number > 0, got " +
                           std::to_string(spec.baseTemperature));
  if (in.batch < 1 || in.views < 1 || in.dim < 1)
    return Status::invalid("features must have batch, views and dim >= 1, got [" + std::to_string(in.batch) +
                           ", " + std::to_string(in.views) + ", " + std::to_string(in.dim) + "]");
  if (!in.features) return Status::invalid("features is null");
  if (in.contrastRows < 0) return Status::invalid("contrastRows must be >= 0");
  if (in.contrastRows > 0 && !in.contrastFeatures) return Status::invalid("contrast features are null");
  if (in.contrastRows > 0 && in.labels && !in.contrastLabels)
    return Status::invalid("contrast labels are required when labels are given");
  const int64_t rows = in.batch * in.views;
  if (rows + in.contrastRows < 2)
    return Status::invalid("the loss needs at least 2 rows to contrast, got " + std::to_string(rows + in.contrastRows));
  const int64_t limit = std::numeric_limits<int32_t>::max();
  if ((rows + in.contrastRows) > limit / in.dim)
    return Status::invalid("(rows + contrast rows) * dim must be < 2^31, got " +
                           std::to_string(rows + in.contrastRows) + " * " + std::to_string(in.dim));
  int64_t bad = firstNonFinite(in.features, rows * in.dim);
  if (bad >= 0)
    return Status::invalid("features must be finite, found " + std::to_string(in.features[bad]) + " at index " +
                           std::to_string(bad));
  if (in.contrastRows > 0) {
    bad = firstNonFinite(in.contrastFeatures, in.contrastRows * in.dim);
    if (bad >= 0)
      return Status::invalid("contrast features must be finite, found " + std::to_string(in.contrastFeatures[bad]) +
                             " at index " + std::to_string(bad));
  }
  return Status::ok();
}

namespace detail {

PreparedLoss prepare(const LossSpec& spec, const LossInputs& in) {
  PreparedLoss p;
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
  p.lossScale = spec.temperature / spec.baseTemperature;

  p.contrastClass.resize(static_cast<size_t>(p.contrastRows));
  if (in.labels) {
    std::unordered_map<int32_t, int32_t> ids;
    ids.reserve(static_cast<size_t>(p.batch + p.extraRows));
    auto idOf = [&](int32_t label) {
      auto it = ids.emplace(label, static_cast<int32_t>(ids.size())).first;
      return it->second;
    };
    for (int64_t b = 0; b < p.batch; ++b) {
      int32_t c = idOf(in.labels[b]);
      for (int64_t v = 0; v < p.views; ++v) p.contrastClass[b * p.views + v] = c;
    }
    for (int64_t r = 0; r < p.extraRows; ++r) p.contrastClass[p.rows + r] = idOf(in.contrastLabels[r]);
    p.numClasses = static_cast<int32_t>(ids.size());
  } else {
    // Self-supervised: each sample is its own class; extra rows are everyone's negatives.
    for (int64_t r = 0; r < p.rows; ++r) p.contrastClass[r] = static_cast<int32_t>(r / p.views);
    for (int64_t r = 0; r < p.extraRows; ++r) p.contrastClass[p.rows + r] = -1;
    p.numClasses = static_cast<int32_t>(p.batch);
  }
  std::vector<int64_t> classCount(static_cast<size_t>(p.numClasses), 0);
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

std::vector<float> anchorWeights(const LossSpec& spec, const PreparedLoss& p, const float* upstream,
                                 int64_t upstreamLength) {
  std::vector<float> w(static_cast<size_t>(p.anchors), 0.0f);
  double base = p.lossScale;
  if (spec.reduction == Reduction::kMean) base /= static_cast<double>(std::max<int64_t>(1, p.validAnchors));
  for (int64_t s = 0; s < p.anchors; ++s) {
    if (p.positives[s] == 0) continue;
    double up = spec.reduction == Reduction::kNone ? upstream[p.outputIndex(s)] : upstream[0];
    w[s] = static_cast<float>(base * up);
  }
  (void)upstreamLength;
  return w;
}

double reduceLoss(const LossSpec& spec, const PreparedLoss& p, const float* lse, const double* positiveMean,
                  const float* lseP, float* perAnchor) {
  double total = 0;
  for (int64_t s = 0; s < p.anchors; ++s) {
    double l = 0;
    if (p.positives[s] > 0) {
      if (p.variantIn) l = double(lse[s]) - double(lseP[s]) + std::log(double(p.positives[s]));
      else l = double(lse[s]) - positiveMean[s];
      l *= p.lossScale;
    }
    if (perAnchor) perAnchor[p.outputIndex(s)] = static_cast<float>(l);
    total += l;
  }
  if (spec.reduction == Reduction::kMean) return p.validAnchors > 0 ? total / double(p.validAnchors) : 0.0;
  return total;
}

void normalizeRows(const float* x, int64_t rows, int64_t dim, float* z, float* norms) {
  parallelFor(rows, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * dim;
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += double(xr[k]) * xr[k];
      float n = static_cast<float>(std::max(std::sqrt(ss), 1e-12));
      norms[r] = n;
      float inv = 1.0f / n;
      for (int64_t k = 0; k < dim; ++k) z[r * dim + k] = xr[k] * inv;
    }
  });
}

void normalizeRowsBackward(const float* z, const float* norms, int64_t rows, int64_t dim, float* dz) {
  parallelFor(rows, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* zr = z + r * dim;
      float* g = dz + r * dim;
      double dot = 0;
      for (int64_t k = 0; k < dim; ++k) dot += double(zr[k]) * g[k];
      float d = static_cast<float>(dot), inv = 1.0f / norms[r];
      for (int64_t k = 0; k < dim; ++k) g[k] = (g[k] - zr[k] * d) * inv;
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


}  // namespace

Status forward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor, float* stats,
               ForwardResult* result) {
  return guarded("supcon loss", [&] {
    SUPCON_RETURN_IF_ERROR(validate(spec, in));
    ForwardResult local;
    ForwardResult* out = result ? result : &local;
    if (resolveDevice(run, in) == Device::kCuda) {
#if defined(SUPCON_WITH_CUDA)
      return detail::forwardCuda(spec, in, run, perAnchor, stats, out);
#else
      return Status::unavailable("this build of supcon-native has no CUDA support (built without a CUDA compiler)");
#endif
    }
    return detail::forwardCpu(spec, in, perAnchor, stats, out);
  });
}

Status backward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                const float* upstream, int64_t upstreamLength, float* grad, BackwardResult* result) {
  return guarded("supcon loss", [&] {
    SUPCON_RETURN_IF_ERROR(validate(spec, in));
    if (!stats) return Status::invalid("stats are null: run forward first");
    if (!grad) return Status::invalid("grad output is null");
    const int64_t want = spec.reduction == Reduction::kNone ? numAnchors(spec, in) : 1;
    if (!upstream || upstreamLength != want)
      return Status::invalid("upstream gradient must have " + std::to_string(want) + " values, got " +
                             std::to_string(upstream ? upstreamLength : 0));
    BackwardResult local;
    BackwardResult* out = result ? result : &local;
    if (resolveDevice(run, in) == Device::kCuda) {
#if defined(SUPCON_WITH_CUDA)
      return detail::backwardCuda(spec, in, run, stats, upstream, upstreamLength, grad, out);
#else
      return Status::unavailable("this build of supcon-native has no CUDA support (built without a CUDA compiler)");
#endif
    }
    return detail::backwardCpu(spec, in, stats, upstream, upstreamLength, grad, out);
  });
}

Status forwardBackward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                       float* grad, ForwardResult* result) {
  return guarded("supcon loss", [&] {
    SUPCON_RETURN_IF_ERROR(validate(spec, in));
    ForwardResult local;
    ForwardResult* out = result ? result : &local;
    Buffer<float> stats(static_cast<size_t>(statsSize(spec, in) > 0 ? statsSize(spec, in) : 1));
    SUPCON_RETURN_IF_ERROR(forward(spec, in, run, perAnchor, stats.data(), out));
    if (!grad) return Status::ok();
    const int64_t n = spec.reduction == Reduction::kNone ? numAnchors(spec, in) : 1;
    std::vector<float> ones(static_cast<size_t>(n), 1.0f);
    BackwardResult back;
    SUPCON_RETURN_IF_ERROR(backward(spec, in, run, stats.data(), ones.data(), n, grad, &back));
    out->workspaceBytes = std::max(out->workspaceBytes, back.workspaceBytes) +
                          static_cast<int64_t>(stats.size() * sizeof(float));
    return Status::ok();
  });
}

}  // namespace supcon
