// Momentum SGD and LARS over all of a model's variables in one call (supcon/nn.h). A tfjs
// optimizer runs 4-8 small ops per variable per step; this is one pass over each variable.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "guarded.h"
#include "nn_internal.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {
namespace {

Status invalid(const std::string& what, const std::string& expected, const std::string& received) {
  return Status::invalid("Expected " + expected + " for " + what + " but received " + received);
}

// Squared L2 norms of value and gradient, in double.
void norms(const OptimizerVariable& v, double* w2, double* g2) {
  double a = 0, b = 0;
  for (int64_t i = 0; i < v.size; ++i) {
    a += double(v.value[i]) * v.value[i];
    b += double(v.grad[i]) * v.grad[i];
  }
  *w2 = a;
  *g2 = b;
}

// Elements [b, e) of one variable; `scale` multiplies the decayed gradient (LARS: lr * trust).
void updateRange(const OptimizerStep& s, const OptimizerVariable& v, float scale, int64_t b, int64_t e) {
  const float m = s.momentum;
  const float wd = v.decay ? s.weightDecay : 0.0f;
  for (int64_t i = b; i < e; ++i) {
    const float w = v.value[i];
    const float d = v.grad[i] + wd * w;
    const float old = v.buffer ? v.buffer[i] : 0.0f;
    if (s.kind == OptimizerKind::kSgd) {
      const float nb = m * old + d;
      v.newBuffer[i] = nb;
      v.newValue[i] = w - s.learningRate * (s.nesterov ? d + m * nb : nb);
    } else {
      const float nb = m * old + scale * d;
      v.newBuffer[i] = nb;
      v.newValue[i] = w - nb;
    }
  }
}

}  // namespace

Status optimizerUpdate(const OptimizerStep& s, const OptimizerVariable* vars, int64_t count) {
  const char* fn = "optimizerUpdate";
  if (count < 0 || (count > 0 && !vars)) return invalid(std::string(fn) + " variables", "an array", "none");
  if (!std::isfinite(s.learningRate) || s.learningRate < 0)
    return invalid("learningRate", "a finite number >= 0", std::to_string(s.learningRate));
  if (!(s.momentum >= 0 && s.momentum < 1)) return invalid("momentum", "a number in [0, 1)", std::to_string(s.momentum));
  if (!std::isfinite(s.weightDecay) || s.weightDecay < 0)
    return invalid("weightDecay", "a finite number >= 0", std::to_string(s.weightDecay));
  if (s.kind == OptimizerKind::kLars && !(std::isfinite(s.trustCoefficient) && s.trustCoefficient > 0))
    return invalid("trustCoefficient", "a finite number > 0", std::to_string(s.trustCoefficient));
  int64_t total = 0;
  for (int64_t k = 0; k < count; ++k) {
    const OptimizerVariable& v = vars[k];
    if (v.size < 0 || (v.size > 0 && (!v.value || !v.grad || !v.newValue || !v.newBuffer)))
      return invalid(std::string(fn) + " variable " + std::to_string(k), "value, grad, newValue and newBuffer arrays",
                     "a null pointer");
    total += v.size;
  }
  return guarded(fn, [&] {
    // LARS's per-variable scale needs the two norms first.
    std::vector<float> scale(static_cast<size_t>(count), s.learningRate);
    if (s.kind == OptimizerKind::kLars) {
      parallelFor(count, 1, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          if (!vars[k].decay) continue;  // excluded: a plain momentum step, lr g
          double w2, g2;
          norms(vars[k], &w2, &g2);
          const double wn = std::sqrt(w2), gn = std::sqrt(g2);
          const double trust =
              wn > 0 && gn > 0 ? s.trustCoefficient * wn / (gn + double(s.weightDecay) * wn) : 1.0;
          scale[k] = static_cast<float>(s.learningRate * trust);
        }
      });
    }
    // Elements in chunks over all variables, so one large variable splits across threads.
    constexpr int64_t kChunk = 1 << 15;
    std::vector<std::pair<int64_t, int64_t>> chunks;  // (variable, start)
    for (int64_t k = 0; k < count; ++k)
      for (int64_t i = 0; i < vars[k].size; i += kChunk) chunks.emplace_back(k, i);
    auto run = [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const auto [k, i] = chunks[c];
        updateRange(s, vars[k], scale[k], i, std::min(vars[k].size, i + kChunk));
      }
    };
    if (total >= (int64_t(1) << 16)) parallelFor(static_cast<int64_t>(chunks.size()), 1, run);
    else run(0, static_cast<int64_t>(chunks.size()));
  });
}

}  // namespace nn
}  // namespace supcon
