// The fused SupCon loss on the CPU (math: docs/loss.md). No N x N buffer: similarity tiles of
// kTile x kTile are computed by the shared GEMM, reduced to per-row statistics (online
// log-sum-exp) in the forward, and recomputed in the backward, where each tile becomes its
// gradient block G and is multiplied back into the rows.
//
// Two schedules:
//  - symmetric ('all', no extra contrast set): S is symmetric, so each tile pair I <= J is
//    computed once and serves both blocks' rows. Pairs are processed in round-robin rounds in
//    which every block appears at most once, so threads never touch the same rows and the
//    accumulation order does not depend on the thread count.
//  - general (anchors x contrast set): forward and gradient w.r.t. anchors are parallel over
//    anchor blocks; the gradient w.r.t. contrast rows is a second pass parallel over contrast
//    blocks.
// The positive terms of L_out cost O(N D) through per-class sums of rows (docs/loss.md).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <utility>
#include <vector>

#include "loss_internal.h"
#include "memory.h"
#include "simd.h"
#include "supcon/gemm.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace detail {
namespace {

constexpr int64_t kTile = 128;

struct Blocks {
  int64_t count = 0;
  int64_t rows = 0;
  explicit Blocks(int64_t n) : count((n + kTile - 1) / kTile), rows(n) {}
  int64_t begin(int64_t b) const { return b * kTile; }
  int len(int64_t b) const { return static_cast<int>(std::min(kTile, rows - b * kTile)); }
};

// Rounds of block pairs (I <= J) in which no block appears twice: round 0 holds the diagonal
// tiles, then the circle method of a round-robin tournament pairs every two blocks once.
std::vector<std::vector<std::pair<int64_t, int64_t>>> roundRobin(int64_t nb) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rounds;
  rounds.emplace_back();
  for (int64_t b = 0; b < nb; ++b) rounds[0].emplace_back(b, b);
  const int64_t n = nb % 2 == 0 ? nb : nb + 1;  // with an odd count, block nb is a bye
  for (int64_t r = 0; r + 1 < n; ++r) {
    std::vector<std::pair<int64_t, int64_t>> round;
    auto add = [&](int64_t a, int64_t b) {
      if (a < nb && b < nb) round.emplace_back(std::min(a, b), std::max(a, b));
    };
    add(r, n - 1);
    for (int64_t k = 1; k < n / 2; ++k) add((r + k) % (n - 1), (r - k + n - 1) % (n - 1));
    if (!round.empty()) rounds.push_back(std::move(round));
  }
  return rounds;
}

// S (rows x cols, row stride ld) = (1/tau) Za Zb^T for row-major Za (rows x dim), Zb (cols x dim).
void scores(const float* za, int rows, const float* zb, int cols, int64_t dim, float invT, float* s,
            int64_t ld) {
  gemm(rows, cols, dim, invT, StridedA(za, rows, dim, dim, 1), StridedB(zb, dim, cols, 1, dim), 0.0f, s, ld);
}

// dst (rows x dim) += alpha * G (rows x k) Z (k x dim); transposeG uses G^T (G stored k x rows).
void accumulate(const float* g, int64_t ldg, bool transposeG, int rows, int k, const float* z, int64_t dim,
                float alpha, float* dst) {
  StridedA a = transposeG ? StridedA(g, rows, k, 1, ldg) : StridedA(g, rows, k, ldg, 1);
  gemm(rows, dim, k, alpha, a, StridedB(z, k, dim, dim, 1), 1.0f, dst, dim);
}

// Runs the symmetric schedule: tile(I, J, thread) for every pair, rounds separated by barriers.
// Scratch allocation happens before the first barrier so that a failure cannot strand a thread.
template <typename Tile>
void runRounds(int64_t nb, size_t scratchFloats, Tile&& tile) {
  const auto rounds = roundRobin(nb);
  const int threads = numThreads();
  std::vector<Buffer<float>> scratch(static_cast<size_t>(threads));
  std::atomic<bool> failed{false};
  parallelRegion([&](int t) {
    try {
      scratch[t].reset(scratchFloats);
    } catch (...) {
      failed = true;
    }
    barrier();
    if (failed) return;
    for (const auto& round : rounds) {
      for (size_t p = static_cast<size_t>(t); p < round.size(); p += static_cast<size_t>(threads))
        tile(round[p].first, round[p].second, scratch[t].data());
      barrier();
    }
  });
  if (failed) throw std::bad_alloc();
}

// Inputs in the form the tiles want: normalized copies when asked, anchors gathered for 'one',
// the extra contrast rows appended after the feature rows.
struct Operands {
  Buffer<float> normFeatures, norms, contrastCopy, anchorCopy;
  const float* features = nullptr;  // [N, D] rows used in the products
  const float* contrast = nullptr;  // [N + M, D]
  const float* anchors = nullptr;   // [anchors, D]
};

Operands makeOperands(const LossSpec& spec, const LossInputs& in, const PreparedLoss& p) {
  Operands o;
  const int64_t D = p.dim;
  o.features = in.features;
  if (spec.normalize) {
    o.normFeatures.reset(static_cast<size_t>(p.rows * D));
    o.norms.reset(static_cast<size_t>(p.rows));
    normalizeRows(in.features, p.rows, D, o.normFeatures.data(), o.norms.data());
    o.features = o.normFeatures.data();
  }
  o.contrast = o.features;
  if (p.extraRows > 0) {
    o.contrastCopy.reset(static_cast<size_t>(p.contrastRows * D));
    std::copy(o.features, o.features + p.rows * D, o.contrastCopy.data());
    float* extra = o.contrastCopy.data() + p.rows * D;
    if (spec.normalize) {
      Buffer<float> extraNorms(static_cast<size_t>(p.extraRows));
      normalizeRows(in.contrastFeatures, p.extraRows, D, extra, extraNorms.data());
    } else {
      std::copy(in.contrastFeatures, in.contrastFeatures + p.extraRows * D, extra);
    }
    o.contrast = o.contrastCopy.data();
  }
  o.anchors = o.features;
  if (p.oneMode) {
    o.anchorCopy.reset(static_cast<size_t>(p.anchors * D));
    for (int64_t s = 0; s < p.anchors; ++s)
      std::copy(o.features + p.anchorRow[s] * D, o.features + (p.anchorRow[s] + 1) * D,
                o.anchorCopy.data() + s * D);
    o.anchors = o.anchorCopy.data();
  }
  return o;
}

// Masks the self-contrast entries of an anchor-block x contrast-block tile.
void maskSelf(const PreparedLoss& p, int64_t a0, int rows, int64_t c0, int cols, float* s, int64_t ld) {
  for (int i = 0; i < rows; ++i) {
    int64_t col = p.anchorRow[a0 + i] - c0;
    if (col >= 0 && col < cols) s[i * ld + col] = kMaskedScore;
  }
}

// Contrast blocks: feature rows first, then extra rows, so no block straddles the two.
std::vector<std::pair<int64_t, int>> contrastBlocks(const PreparedLoss& p) {
  std::vector<std::pair<int64_t, int>> out;
  for (int64_t b = 0; b < p.rows; b += kTile) out.emplace_back(b, static_cast<int>(std::min(kTile, p.rows - b)));
  for (int64_t b = p.rows; b < p.contrastRows; b += kTile)
    out.emplace_back(b, static_cast<int>(std::min(kTile, p.contrastRows - b)));
  return out;
}

// Sum of rows per class (classes >= 0), in double: the L_out positive terms use
// sum_{p in P(i)} z_p = classSum[y_i] - z_i.
std::vector<double> classSums(const PreparedLoss& p, const float* contrast) {
  const int64_t D = p.dim;
  std::vector<double> sums(static_cast<size_t>(p.numClasses) * D, 0.0);
  for (int64_t r = 0; r < p.contrastRows; ++r) {
    int32_t c = p.contrastClass[r];
    if (c < 0) continue;
    double* dst = sums.data() + static_cast<size_t>(c) * D;
    const float* z = contrast + r * D;
    for (int64_t k = 0; k < D; ++k) dst[k] += z[k];
  }
  return sums;
}

}  // namespace

Status forwardCpu(const LossSpec& spec, const LossInputs& in, float* perAnchor, float* stats,
                  ForwardResult* result) {
  const int64_t startBytes = memory::currentBytes();
  memory::resetPeak();
  const PreparedLoss p = prepare(spec, in);
  const KernelTable& kt = kernels();
  const int64_t D = p.dim;
  const float invT = p.invTemperature;
  Operands o = makeOperands(spec, in, p);

  const size_t A = static_cast<size_t>(p.anchors);
  Buffer<float> m(A), l(A, true), mP, lP;
  for (size_t s = 0; s < A; ++s) m[s] = kMaskedScore;
  if (p.variantIn) {
    mP.reset(A);
    lP.reset(A, true);
    for (size_t s = 0; s < A; ++s) mP[s] = kMaskedScore;
  }
  const size_t tileFloats = static_cast<size_t>(kTile * kTile);

  if (p.symmetric) {
    Blocks blocks(p.rows);
    runRounds(blocks.count, p.variantIn ? 2 * tileFloats : tileFloats, [&](int64_t I, int64_t J, float* s) {
      const int64_t i0 = blocks.begin(I), j0 = blocks.begin(J);
      const int rows = blocks.len(I), cols = blocks.len(J);
      scores(o.features + i0 * D, rows, o.features + j0 * D, cols, D, invT, s, kTile);
      if (I == J)
        for (int i = 0; i < rows; ++i) s[i * kTile + i] = kMaskedScore;
      kt.rowLogSumExp(s, kTile, rows, cols, m.data() + i0, l.data() + i0);
      if (I != J) kt.colLogSumExp(s, kTile, rows, cols, m.data() + j0, l.data() + j0);
      if (p.variantIn) {
        float* sp = s + tileFloats;
        kt.maskPositives(s, kTile, rows, cols, p.contrastClass.data() + i0, p.contrastClass.data() + j0, sp, kTile);
        kt.rowLogSumExp(sp, kTile, rows, cols, mP.data() + i0, lP.data() + i0);
        if (I != J) kt.colLogSumExp(sp, kTile, rows, cols, mP.data() + j0, lP.data() + j0);
      }
    });
  } else {
    Blocks anchorBlocks(p.anchors);
    const auto cblocks = contrastBlocks(p);
    parallelFor(anchorBlocks.count, 1, [&](int64_t b, int64_t e) {
      Buffer<float> s(p.variantIn ? 2 * tileFloats : tileFloats);
      for (int64_t I = b; I < e; ++I) {
        const int64_t a0 = anchorBlocks.begin(I);
        const int rows = anchorBlocks.len(I);
        for (const auto& [c0, cols] : cblocks) {
          scores(o.anchors + a0 * D, rows, o.contrast + c0 * D, cols, D, invT, s.data(), kTile);
          maskSelf(p, a0, rows, c0, cols, s.data(), kTile);
          kt.rowLogSumExp(s.data(), kTile, rows, cols, m.data() + a0, l.data() + a0);
          if (p.variantIn) {
            float* sp = s.data() + tileFloats;
            kt.maskPositives(s.data(), kTile, rows, cols, p.anchorClass.data() + a0, p.contrastClass.data() + c0,
                             sp, kTile);
            kt.rowLogSumExp(sp, kTile, rows, cols, mP.data() + a0, lP.data() + a0);
          }
        }
      }
    });
  }

  // Per-anchor statistics and the positive terms.
  std::vector<float> lse(A), lseP(p.variantIn ? A : 0);
  std::vector<double> positiveMean(p.variantIn ? 0 : A, 0.0);
  std::vector<double> sums;
  if (!p.variantIn) sums = classSums(p, o.contrast);
  for (size_t s = 0; s < A; ++s) {
    lse[s] = m[s] + std::log(l[s]);
    if (p.variantIn) {
      lseP[s] = lP[s] > 0 ? mP[s] + std::log(lP[s]) : 0.0f;
    } else if (p.positives[s] > 0) {
      const float* z = o.anchors + s * D;
      const double* cs = sums.data() + static_cast<size_t>(p.anchorClass[s]) * D;
      double dot = 0;
      for (int64_t k = 0; k < D; ++k) dot += double(z[k]) * (cs[k] - double(z[k]));
      positiveMean[s] = dot * invT / p.positives[s];
    }
    if (stats) {
      stats[2 * s] = lse[s];
      stats[2 * s + 1] = p.variantIn ? lseP[s] : 0.0f;
    }
  }
  result->loss = reduceLoss(spec, p, lse.data(), positiveMean.data(), p.variantIn ? lseP.data() : nullptr, perAnchor);
  result->validAnchors = p.validAnchors;
  result->workspaceBytes = memory::peakBytes() - startBytes + static_cast<int64_t>(sums.size() * sizeof(double));
  return Status::ok();
}

Status backwardCpu(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                   int64_t upstreamLength, float* grad, BackwardResult* result) {
  const int64_t startBytes = memory::currentBytes();
  memory::resetPeak();
  const PreparedLoss p = prepare(spec, in);
  const KernelTable& kt = kernels();
  const int64_t D = p.dim;
  const float invT = p.invTemperature;
  Operands o = makeOperands(spec, in, p);
  const std::vector<float> w = anchorWeights(spec, p, upstream, upstreamLength);

  const size_t A = static_cast<size_t>(p.anchors);
  std::vector<float> lse(A), lseP(p.variantIn ? A : 0);
  for (size_t s = 0; s < A; ++s) {
    lse[s] = stats[2 * s];
    if (p.variantIn) lseP[s] = stats[2 * s + 1];
  }

  // dZ accumulates dL/dz for the feature rows (normalized rows when normalize is on).
  Buffer<float> dzOwn;
  float* dz = grad;
  if (spec.normalize) {
    dzOwn.reset(static_cast<size_t>(p.rows * D));
    dz = dzOwn.data();
  }
  std::fill(dz, dz + p.rows * D, 0.0f);
  const size_t tileFloats = static_cast<size_t>(kTile * kTile);

  // The statistics of anchors [a0, ...) as one side of a gradient tile.
  auto anchorSide = [&](int64_t a0) {
    TileSide t;
    t.lse = lse.data() + a0;
    t.weight = w.data() + a0;
    if (p.variantIn) {
      t.lsePositive = lseP.data() + a0;
      t.classes = p.anchorClass.data() + a0;
    }
    return t;
  };

  if (p.symmetric) {
    Blocks blocks(p.rows);
    runRounds(blocks.count, tileFloats, [&](int64_t I, int64_t J, float* s) {
      const int64_t i0 = blocks.begin(I), j0 = blocks.begin(J);
      const int rows = blocks.len(I), cols = blocks.len(J);
      scores(o.features + i0 * D, rows, o.features + j0 * D, cols, D, invT, s, kTile);
      if (I == J)
        for (int i = 0; i < rows; ++i) s[i * kTile + i] = kMaskedScore;
      // H = G_IJ + G_JI^T: the row term and, since S_JI = S_IJ^T, the column term.
      TileSide rowSide = anchorSide(i0), colSide = anchorSide(j0);
      kt.gradTile(s, kTile, rows, cols, rowSide, &colSide);
      accumulate(s, kTile, false, rows, cols, o.features + j0 * D, D, invT, dz + i0 * D);
      if (I != J) accumulate(s, kTile, true, cols, rows, o.features + i0 * D, D, invT, dz + j0 * D);
    });
  } else {
    Blocks anchorBlocks(p.anchors);
    const auto cblocks = contrastBlocks(p);
    // G for anchors [a0, a0+rows) x contrast rows [c0, c0+cols), in s (row stride kTile).
    auto gradientTile = [&](int64_t a0, int rows, int64_t c0, int cols, float* s) {
      scores(o.anchors + a0 * D, rows, o.contrast + c0 * D, cols, D, invT, s, kTile);
      maskSelf(p, a0, rows, c0, cols, s, kTile);
      TileSide columns;
      columns.classes = p.contrastClass.data() + c0;
      kt.gradTile(s, kTile, rows, cols, anchorSide(a0), &columns);
    };
    // dZ_A: anchors x all contrast blocks, parallel over anchor blocks.
    Buffer<float> dzAnchors(A * static_cast<size_t>(D), true);
    parallelFor(anchorBlocks.count, 1, [&](int64_t b, int64_t e) {
      Buffer<float> s(tileFloats);
      for (int64_t I = b; I < e; ++I) {
        const int64_t a0 = anchorBlocks.begin(I);
        const int rows = anchorBlocks.len(I);
        for (const auto& [c0, cols] : cblocks) {
          gradientTile(a0, rows, c0, cols, s.data());
          accumulate(s.data(), kTile, false, rows, cols, o.contrast + c0 * D, D, invT, dzAnchors.data() + a0 * D);
        }
      }
    });
    // dZ_C for the feature rows (extra rows get no gradient): parallel over contrast blocks.
    const int64_t featureBlocks = (p.rows + kTile - 1) / kTile;
    parallelFor(featureBlocks, 1, [&](int64_t b, int64_t e) {
      Buffer<float> s(tileFloats);
      for (int64_t J = b; J < e; ++J) {
        const auto [c0, cols] = cblocks[static_cast<size_t>(J)];
        for (int64_t I = 0; I < anchorBlocks.count; ++I) {
          const int64_t a0 = anchorBlocks.begin(I);
          const int rows = anchorBlocks.len(I);
          gradientTile(a0, rows, c0, cols, s.data());
          accumulate(s.data(), kTile, true, cols, rows, o.anchors + a0 * D, D, invT, dz + c0 * D);
        }
      }
    });
    for (size_t s = 0; s < A; ++s) {
      float* dst = dz + p.anchorRow[s] * D;
      const float* src = dzAnchors.data() + s * D;
      for (int64_t k = 0; k < D; ++k) dst[k] += src[k];
    }
  }

  // L_out positive terms through class sums: -w_i/|P_i| sum_{p in P(i)} (z_p as anchor side,
  // z_i as contrast side), both O(N D).
  if (!p.variantIn) {
    const std::vector<double> sums = classSums(p, o.contrast);
    std::vector<double> q(static_cast<size_t>(p.numClasses) * D, 0.0);
    std::vector<double> coef(A, 0.0);
    for (size_t s = 0; s < A; ++s) {
      if (p.positives[s] == 0) continue;
      coef[s] = double(w[s]) / p.positives[s];
      const float* z = o.anchors + s * D;
      double* qy = q.data() + static_cast<size_t>(p.anchorClass[s]) * D;
      for (int64_t k = 0; k < D; ++k) qy[k] += coef[s] * z[k];
    }
    for (size_t s = 0; s < A; ++s) {
      if (coef[s] == 0.0) continue;
      const float* z = o.anchors + s * D;
      const double* cs = sums.data() + static_cast<size_t>(p.anchorClass[s]) * D;
      float* dst = dz + p.anchorRow[s] * D;
      // anchor side minus its own contrast-side self term (an anchor is not its own positive)
      for (int64_t k = 0; k < D; ++k)
        dst[k] -= static_cast<float>(invT * (coef[s] * (cs[k] - z[k]) - coef[s] * z[k]));
    }
    for (int64_t r = 0; r < p.rows; ++r) {
      const double* qy = q.data() + static_cast<size_t>(p.contrastClass[r]) * D;
      float* dst = dz + r * D;
      for (int64_t k = 0; k < D; ++k) dst[k] -= static_cast<float>(invT * qy[k]);
    }
  }

  if (spec.normalize) {
    normalizeRowsBackward(o.features, o.norms.data(), p.rows, D, dz);
    std::copy(dz, dz + p.rows * D, grad);
  }
  result->workspaceBytes = memory::peakBytes() - startBytes;
  return Status::ok();
}

}  // namespace detail
}  // namespace supcon
