// Float64 reference of the SupCon loss, written straight from the definitions in docs/loss.md
// with the full similarity matrix (small sizes only). Independent of the core: no tiles, no
// class-sum shortcut, no online log-sum-exp. The CPU and CUDA tests compare against it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "supcon/loss.h"

namespace supcon_test {

struct ReferenceResult {
  double loss = 0;
  std::vector<double> perAnchor;  // view-major anchor order
  std::vector<double> grad;       // [batch, views, dim] memory order
  std::vector<double> contrastGrad;  // [contrastRows, dim]: the extra rows' gradient
  int64_t validAnchors = 0;
};

// upstream: nullptr means 1 (mean/sum) or all ones (none); else 1 or [anchors] values.
inline ReferenceResult referenceLoss(const supcon::LossSpec& spec, const supcon::LossInputs& in,
                                     const std::vector<double>* upstream = nullptr) {
  using supcon::ContrastMode;
  using supcon::Reduction;
  using supcon::Variant;
  const int64_t B = in.batch, V = in.views, D = in.dim, N = B * V, M = in.contrastRows, C = N + M;
  const double tau = spec.temperature, scale = double(spec.temperature) / spec.effectiveBaseTemperature();

  // Contrast rows: features (memory order) then extra rows; optionally normalized.
  // z = x / max(||x||, 1e-12); a row whose norm is clamped is merely scaled (clamped[r]).
  std::vector<double> z(static_cast<size_t>(C * D)), norm(static_cast<size_t>(C), 1.0);
  std::vector<bool> clamped(static_cast<size_t>(C), false);
  for (int64_t r = 0; r < C; ++r) {
    const float* src = r < N ? in.features + r * D : in.contrastFeatures + (r - N) * D;
    double ss = 0;
    for (int64_t k = 0; k < D; ++k) ss += double(src[k]) * src[k];
    clamped[r] = spec.normalize && std::sqrt(ss) < 1e-12;
    norm[r] = spec.normalize ? std::max(std::sqrt(ss), 1e-12) : 1.0;
    for (int64_t k = 0; k < D; ++k) z[r * D + k] = src[k] / norm[r];
  }
  // Labels; extra rows without labels match nothing (-1 - r is unique).
  std::vector<int64_t> label(static_cast<size_t>(C));
  for (int64_t r = 0; r < C; ++r) {
    if (r < N) label[r] = in.labels ? in.labels[r / V] : r / V;
    else label[r] = in.labels ? in.contrastLabels[r - N] : -1 - r;
  }
  // Anchors in view-major order: k -> memory row.
  std::vector<int64_t> anchorRow;
  if (spec.contrastMode == ContrastMode::kOne) {
    for (int64_t b = 0; b < B; ++b) anchorRow.push_back(b * V);
  } else {
    for (int64_t v = 0; v < V; ++v)
      for (int64_t b = 0; b < B; ++b) anchorRow.push_back(b * V + v);
  }
  const int64_t A = static_cast<int64_t>(anchorRow.size());

  auto sim = [&](int64_t i, int64_t j) {
    double s = 0;
    for (int64_t k = 0; k < D; ++k) s += z[i * D + k] * z[j * D + k];
    return s / tau;
  };

  ReferenceResult res;
  res.perAnchor.assign(static_cast<size_t>(A), 0.0);
  std::vector<std::vector<double>> p(static_cast<size_t>(A)), x(static_cast<size_t>(A));
  std::vector<bool> valid(static_cast<size_t>(A), false);
  for (int64_t a = 0; a < A; ++a) {
    const int64_t i = anchorRow[a];
    std::vector<double> s(static_cast<size_t>(C));
    double mx = -INFINITY, mxP = -INFINITY;
    int64_t np = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (j == i) continue;
      s[j] = sim(i, j);
      mx = std::max(mx, s[j]);
      if (label[j] == label[i]) { ++np; mxP = std::max(mxP, s[j]); }
    }
    double sum = 0, sumP = 0, meanP = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (j == i) continue;
      sum += std::exp(s[j] - mx);
      if (label[j] == label[i]) { sumP += std::exp(s[j] - mxP); meanP += s[j]; }
    }
    // Differences of large terms first: at |s| ~ 1e30, mx + log(sum) would round log(sum) away.
    p[a].assign(static_cast<size_t>(C), 0.0);
    x[a].assign(static_cast<size_t>(C), 0.0);
    if (np == 0) continue;
    valid[a] = true;
    ++res.validAnchors;
    meanP /= double(np);
    const double l = spec.variant == Variant::kIn ? (mx - mxP) + (std::log(sum) - std::log(sumP)) + std::log(double(np))
                                                  : (mx - meanP) + std::log(sum);
    res.perAnchor[a] = scale * l;
    for (int64_t j = 0; j < C; ++j) {
      if (j == i) continue;
      p[a][j] = std::exp(s[j] - mx) / sum;
      if (label[j] == label[i])
        x[a][j] = spec.variant == Variant::kIn ? std::exp(s[j] - mxP) / sumP : 1.0 / double(np);
    }
  }
  double total = 0;
  for (double v : res.perAnchor) total += v;
  res.loss = spec.reduction == Reduction::kMean ? (res.validAnchors ? total / double(res.validAnchors) : 0.0) : total;

  // Gradient: dL/ds_ij = w_i (p_ij - X_ij); dz_i += G_ij z_j / tau; dz_j += G_ij z_i / tau.
  std::vector<double> dz(static_cast<size_t>(C * D), 0.0);
  for (int64_t a = 0; a < A; ++a) {
    if (!valid[a]) continue;
    double up = upstream ? (*upstream)[spec.reduction == Reduction::kNone ? a : 0] : 1.0;
    double w = up * scale / (spec.reduction == Reduction::kMean ? double(res.validAnchors) : 1.0);
    const int64_t i = anchorRow[a];
    for (int64_t j = 0; j < C; ++j) {
      double g = w * (p[a][j] - x[a][j]);
      if (g == 0) continue;
      for (int64_t k = 0; k < D; ++k) {
        dz[i * D + k] += g * z[j * D + k] / tau;
        dz[j * D + k] += g * z[i * D + k] / tau;
      }
    }
  }
  res.grad.assign(static_cast<size_t>(N * D), 0.0);
  res.contrastGrad.assign(static_cast<size_t>(M * D), 0.0);
  for (int64_t r = 0; r < C; ++r) {
    double dot = 0;
    for (int64_t k = 0; k < D; ++k) dot += z[r * D + k] * dz[r * D + k];
    double* out = r < N ? res.grad.data() + r * D : res.contrastGrad.data() + (r - N) * D;
    for (int64_t k = 0; k < D; ++k) {
      double g = dz[r * D + k];
      if (spec.normalize) g = clamped[r] ? g / norm[r] : (g - z[r * D + k] * dot) / norm[r];
      out[k] = g;
    }
  }
  return res;
}

}  // namespace supcon_test
