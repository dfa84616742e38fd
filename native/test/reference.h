// Float64 reference of the SupCon loss, written straight from the definitions in docs/loss.md
// with the full similarity matrix (small sizes only): every option (label sets, Jaccard weights,
// the denominators, the positives cap). Independent of the core: no tiles, no class-sum shortcut,
// no online log-sum-exp, no bitsets. The CPU and CUDA tests compare against it.
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
  // Positive weights of pairs, straight from docs/loss.md ("Positives"): class ids or label sets
  // (bytes), Jaccard weights, then the cap over a seeded order of the units.
  std::vector<int64_t> label(static_cast<size_t>(C));
  for (int64_t r = 0; r < C; ++r) {
    if (r < N) label[r] = in.labels ? in.labels[r / V] : r / V;
    else label[r] = in.labels ? in.contrastLabels[r - N] : -1 - r;  // unlabeled extra rows match nothing
  }
  const int64_t L = in.labelSets ? in.numLabels : 0;
  auto setOf = [&](int64_t r) -> const uint8_t* {
    return r < N ? in.labelSets + (r / V) * L : in.contrastLabelSets + (r - N) * L;
  };
  auto uncapped = [&](int64_t i, int64_t j) -> double {
    if (!in.labelSets) return label[i] == label[j] ? 1.0 : 0.0;
    int64_t both = 0, either = 0;
    for (int64_t c = 0; c < L; ++c) {
      both += setOf(i)[c] && setOf(j)[c];
      either += setOf(i)[c] || setOf(j)[c];
    }
    if (both == 0) return 0.0;
    return spec.positiveWeighting == supcon::PositiveWeighting::kJaccard ? double(both) / double(either) : 1.0;
  };
  auto sampleOf = [&](int64_t r) { return r < N ? r / V : B + (r - N); };
  // The cap's order: units (samples, then extra rows) sorted by (hash(seed, u), u), each unit's
  // rows in view order.
  std::vector<int64_t> orderKey(static_cast<size_t>(C), 0);
  if (spec.positivesCap >= 0) {
    std::vector<std::pair<uint32_t, int64_t>> units;
    for (int64_t u = 0; u < B + M; ++u) {
      uint32_t h = spec.positivesCapSeed * 0x9E3779B1u + uint32_t(u) * 0x85EBCA77u;
      h ^= h >> 16;
      h *= 0x7FEB352Du;
      h ^= h >> 15;
      h *= 0x846CA68Bu;
      h ^= h >> 16;
      units.emplace_back(h, u);
    }
    std::sort(units.begin(), units.end());
    int64_t next = 0;
    for (const auto& unit : units) {
      if (unit.second < B)
        for (int64_t v = 0; v < V; ++v) orderKey[unit.second * V + v] = next++;
      else
        orderKey[N + unit.second - B] = next++;
    }
  }
  // weight[j] of anchor row i: > 0 positive, 0 negative, -1 dropped by the cap.
  auto weights = [&](int64_t i) {
    std::vector<double> w(static_cast<size_t>(C), 0.0);
    std::vector<std::pair<int64_t, int64_t>> candidates;  // (key, row) of other samples' positives
    for (int64_t j = 0; j < C; ++j) {
      if (j == i) continue;
      w[j] = uncapped(i, j);
      if (w[j] > 0 && sampleOf(j) != sampleOf(i)) candidates.emplace_back(orderKey[j], j);
    }
    if (spec.positivesCap >= 0) {
      std::sort(candidates.begin(), candidates.end());
      for (size_t k = size_t(spec.positivesCap); k < candidates.size(); ++k) w[candidates[k].second] = -1.0;
    }
    return w;
  };
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
  // log sum_j c_j exp(x_j) over the selected terms (c_j > 0), with its maximum kept apart.
  struct Lse {
    double m = -INFINITY, logSum = -INFINITY;
    double value() const { return m + logSum; }
  };
  auto lse = [](const std::vector<double>& x, const std::vector<double>& c) {
    Lse r;
    for (size_t j = 0; j < x.size(); ++j)
      if (c[j] > 0) r.m = std::max(r.m, x[j]);
    if (r.m == -INFINITY) return r;
    double sum = 0;
    for (size_t j = 0; j < x.size(); ++j)
      if (c[j] > 0) sum += c[j] * std::exp(x[j] - r.m);
    r.logSum = std::log(sum);
    return r;
  };
  auto softplus = [](double d) { return std::max(d, 0.0) + std::log1p(std::exp(-std::fabs(d))); };
  auto sigmoid = [](double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); };

  using supcon::Denominator;
  const bool in_ = spec.variant == Variant::kIn;
  ReferenceResult res;
  res.perAnchor.assign(static_cast<size_t>(A), 0.0);
  // dl_a/ds_aj of every anchor (before the reduction weight).
  std::vector<std::vector<double>> gs(static_cast<size_t>(A));
  std::vector<bool> valid(static_cast<size_t>(A), false);
  for (int64_t a = 0; a < A; ++a) {
    const int64_t i = anchorRow[a];
    const std::vector<double> w = weights(i);
    std::vector<double> s(static_cast<size_t>(C), 0.0), inD(static_cast<size_t>(C), 0.0), inN(static_cast<size_t>(C), 0.0),
        inP(static_cast<size_t>(C), 0.0);
    double W = 0;
    bool hasNegative = false;
    for (int64_t j = 0; j < C; ++j) {
      if (j == i) continue;
      s[j] = sim(i, j);
      inN[j] = w[j] == 0 ? 1.0 : 0.0;
      inP[j] = w[j] > 0 ? w[j] : 0.0;
      inD[j] = spec.denominator == Denominator::kAll ? (w[j] >= 0 ? 1.0 : 0.0) : inN[j];
      W += inP[j];
      hasNegative = hasNegative || w[j] == 0;
    }
    gs[a].assign(static_cast<size_t>(C), 0.0);
    if (!(W > 0) || (spec.denominator == Denominator::kOnlyNegatives && !hasNegative)) continue;
    valid[a] = true;
    ++res.validAnchors;
    double l = 0;
    if (spec.denominator != Denominator::kOnePositive) {
      const Lse d = lse(s, inD);
      const Lse pw = lse(s, inP);
      // Differences of large terms first: at |s| ~ 1e30, m + log(sum) would round log(sum) away.
      if (in_) {
        l = (d.m - pw.m) + (d.logSum - pw.logSum) + std::log(W);
      } else {
        double meanP = 0;
        for (int64_t j = 0; j < C; ++j) meanP += inP[j] * s[j] / W;
        l = (d.m - meanP) + d.logSum;
      }
      for (int64_t j = 0; j < C; ++j) {
        if (j == i) continue;
        double g = inD[j] > 0 ? std::exp((s[j] - d.m) - d.logSum) : 0.0;
        if (inP[j] > 0) g -= in_ ? inP[j] * std::exp((s[j] - pw.m) - pw.logSum) : inP[j] / W;
        gs[a][j] = g;
      }
    } else {
      const Lse n = lse(s, inN);  // LSE_N; -inf without negatives
      auto pN = [&](int64_t j) { return std::exp((s[j] - n.m) - n.logSum); };  // exp(s_j - LSE_N)
      auto dOf = [&](int64_t j) { return n.m == -INFINITY ? -INFINITY : (n.m - s[j]) + n.logSum; };  // LSE_N - s_j
      if (!in_) {
        double T = 0;
        for (int64_t j = 0; j < C; ++j)
          if (inP[j] > 0) {
            l += inP[j] * softplus(dOf(j)) / W;
            T += inP[j] * sigmoid(dOf(j)) / W;
          }
        for (int64_t j = 0; j < C; ++j) {
          if (j == i) continue;
          if (inN[j] > 0) gs[a][j] = T * pN(j);
          if (inP[j] > 0) gs[a][j] = -inP[j] / W * sigmoid(dOf(j));
        }
      } else {
        // Q = sum_p w sigma(s_p - LSE_N), through log sigma = -softplus(d).
        std::vector<double> logSig(static_cast<size_t>(C), 0.0);
        for (int64_t j = 0; j < C; ++j)
          if (inP[j] > 0) logSig[j] = -softplus(dOf(j));
        const Lse q = lse(logSig, inP);
        l = std::log(W) - q.value();
        double U = 0;
        for (int64_t j = 0; j < C; ++j)
          if (inP[j] > 0) U += inP[j] * std::exp(logSig[j] - q.value()) * sigmoid(dOf(j));
        for (int64_t j = 0; j < C; ++j) {
          if (j == i) continue;
          if (inN[j] > 0) gs[a][j] = U * pN(j);
          if (inP[j] > 0) gs[a][j] = -inP[j] * std::exp(logSig[j] - q.value()) * sigmoid(dOf(j));
        }
      }
    }
    res.perAnchor[a] = scale * l;
  }
  double total = 0;
  for (double v : res.perAnchor) total += v;
  res.loss = spec.reduction == Reduction::kMean ? (res.validAnchors ? total / double(res.validAnchors) : 0.0) : total;

  // Gradient: dL/ds_ij = w_i dl_i/ds_ij; dz_i += G_ij z_j / tau; dz_j += G_ij z_i / tau.
  std::vector<double> dz(static_cast<size_t>(C * D), 0.0);
  for (int64_t a = 0; a < A; ++a) {
    if (!valid[a]) continue;
    double up = upstream ? (*upstream)[spec.reduction == Reduction::kNone ? a : 0] : 1.0;
    double w = up * scale / (spec.reduction == Reduction::kMean ? double(res.validAnchors) : 1.0);
    const int64_t i = anchorRow[a];
    for (int64_t j = 0; j < C; ++j) {
      double g = w * gs[a][j];
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
