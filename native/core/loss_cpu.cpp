// The fused SupCon loss on the CPU (math: docs/loss.md). No N x N buffer: similarity tiles of
// kTile x kTile are computed by the loss's tile kernel (simd.h), reduced to per-row statistics
// (online log-sum-exp) in the forward, and recomputed in the backward, where each tile becomes
// its gradient block G and is multiplied back into the rows.
//
// Operands are laid out once per call so that no tile product packs anything: the rows of the
// score products in panels of the kernel's width (A is read k-major from inside a panel, B panel
// by panel), the right-hand sides of the gradient products row-major, and the gradient tile is
// written with its transpose, so both G Z and G^T Z read a k-major A.
//
// Two schedules:
//  - symmetric ('all', no extra contrast set): S is symmetric, so each tile pair I <= J is
//    computed once and serves both blocks' rows. Pairs are processed in round-robin rounds in
//    which every block appears at most once, so threads never touch the same rows and the
//    accumulation order does not depend on the thread count.
//  - general (anchors x contrast set): forward and gradient w.r.t. anchors are parallel over
//    anchor blocks; the gradient w.r.t. contrast rows is a second pass parallel over contrast
//    blocks (the feature rows', and the extra rows' when that gradient is asked for).
// The positive terms of the L_out gradient cost O(N D) through per-class sums of rows.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "loss_internal.h"
#include "memory.h"
#include "simd.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace detail {
namespace {

constexpr int64_t kTile = kLossMaxTile;
constexpr float kAbsent = -std::numeric_limits<float>::infinity();
constexpr int32_t kPaddingClass = -2;  // padding rows: matches no anchor (classes >= 0) nor unlabeled rows (-1)

int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct Blocks {
  int64_t count = 0;
  int64_t rows = 0;
  explicit Blocks(int64_t n) : count((n + kTile - 1) / kTile), rows(n) {}
  int64_t begin(int64_t b) const { return b * kTile; }
  int len(int64_t b) const { return static_cast<int>(std::min(kTile, rows - b * kTile)); }
};

// Rounds of block pairs (I <= J) in which no block appears twice: round 0 holds the diagonal
// tiles, then the circle method of a round-robin tournament pairs every two blocks once. Pairs
// are computed where they are used (nothing of O(blocks^2) is stored).
struct RoundRobin {
  int64_t blocks = 0;
  int64_t n = 0;  // blocks rounded up to even: with an odd count, block `blocks` is a bye
  explicit RoundRobin(int64_t nb) : blocks(nb), n(nb % 2 == 0 ? nb : nb + 1) {}
  int64_t rounds() const { return n; }  // the diagonal round, then n - 1 pairing rounds
  int64_t slots(int64_t round) const { return round == 0 ? blocks : n / 2; }
  // The pair in a slot of a round; false for the bye's slot.
  bool pair(int64_t round, int64_t slot, int64_t* a, int64_t* b) const {
    if (round == 0) {
      *a = *b = slot;
      return true;
    }
    const int64_t r = round - 1, m = n - 1;
    const int64_t x = slot == 0 ? r : (r + slot) % m, y = slot == 0 ? m : (r - slot + m) % m;
    if (x >= blocks || y >= blocks) return false;
    *a = std::min(x, y);
    *b = std::max(x, y);
    return true;
  }
};

// Runs the symmetric schedule: tile(I, J, scratch) for every pair, rounds separated by barriers.
// Scratch allocation happens before the first barrier so that a failure cannot strand a thread.
template <typename Tile>
void runRounds(int64_t nb, size_t scratchFloats, Workspace& ws, Tile&& tile) {
  const RoundRobin schedule(nb);
  const int threads = numThreads();
  std::vector<Buffer<float>> scratch;
  for (int t = 0; t < threads; ++t) scratch.emplace_back(ws);
  std::atomic<bool> failed{false};
  parallelRegion([&](int t) {
    try {
      scratch[t].reset(scratchFloats, true);  // zeroed: rows past a block's end are read, never used
    } catch (...) {
      failed = true;
    }
    barrier();
    if (failed) return;
    for (int64_t round = 0; round < schedule.rounds(); ++round) {
      int64_t a = 0, b = 0;
      for (int64_t slot = t; slot < schedule.slots(round); slot += threads)
        if (schedule.pair(round, slot, &a, &b)) tile(a, b, scratch[t].data());
      barrier();
    }
  });
  if (failed) throw std::bad_alloc();
}

// The call's operands. Row numbers of the contrast set are "padded": feature rows at [0, N),
// extra rows at [featuresPadded, featuresPadded + M), so no kTile block straddles the two.
struct Operands {
  explicit Operands(Workspace& w)
      : featureCopy(w), extraCopy(w), anchorCopy(w), norms(w), extraNorms(w), contrastPanels(w), anchorPanels(w),
        contrastClass(w), anchorClass(w) {}
  int64_t ld = 0;              // row stride of the row-major operands (a multiple of the kernel width)
  int64_t featuresPadded = 0;  // roundUp(N, kTile)
  Buffer<float> featureCopy, extraCopy, anchorCopy;
  Buffer<double> norms, extraNorms;  // ||x|| of the feature rows and of the extra rows (normalize)
  const float* features = nullptr;  // [N][ld], normalized when asked
  const float* extra = nullptr;     // [M][ld]
  const float* anchors = nullptr;   // [anchors][ld]
  Buffer<float> contrastPanels, anchorPanels;  // score operands in the kernel's panels
  const float* anchorPanel = nullptr;          // anchorPanels, or contrastPanels ('all')
  Buffer<int32_t> contrastClass, anchorClass;  // class ids in padded numbering

  // Row-major rows of a contrast block starting at padded row c0.
  const float* contrastRows(int64_t c0) const {
    return c0 < featuresPadded ? features + c0 * ld : extra + (c0 - featuresPadded) * ld;
  }
};

// panels[p][k][0..nr) = rows p*nr .. p*nr+nr-1 at depth k; rows past `count` are zero up to `padded`.
void packPanels(const float* rows, int64_t ld, int64_t count, int64_t padded, int64_t dim, int nr, float* panels) {
  parallelFor(padded / nr, 8, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      float* out = panels + p * nr * dim;
      const int real = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(nr, count - p * nr)));
      const float* src = rows + p * nr * ld;
      for (int64_t k = 0; k < dim; ++k) {
        int r = 0;
        for (; r < real; ++r) out[k * nr + r] = src[r * ld + k];
        for (; r < nr; ++r) out[k * nr + r] = 0.0f;
      }
    }
  });
}

// Row-major [count][ld] copy of x [count][dim] (normalized when norms is given), zero-padded.
void copyRows(const float* x, int64_t count, int64_t dim, int64_t ld, bool normalize, double* norms, float* out) {
  if (normalize) {
    normalizeRows(x, count, dim, out, ld, norms);
  } else {
    parallelFor(count, 256, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) std::copy(x + r * dim, x + (r + 1) * dim, out + r * ld);
    });
  }
  if (ld > dim)
    for (int64_t r = 0; r < count; ++r) std::fill(out + r * ld + dim, out + (r + 1) * ld, 0.0f);
}

Operands makeOperands(const LossSpec& spec, const LossInputs& in, const PreparedLoss& p, int nr, Workspace& ws) {
  Operands o(ws);
  const int64_t D = p.dim;
  o.ld = roundUp(D, nr);
  o.featuresPadded = roundUp(p.rows, kTile);
  o.features = in.features;
  if (spec.normalize || o.ld != D) {
    o.featureCopy.reset(static_cast<size_t>(p.rows * o.ld));
    if (spec.normalize) o.norms.reset(static_cast<size_t>(p.rows));
    copyRows(in.features, p.rows, D, o.ld, spec.normalize, o.norms.data(), o.featureCopy.data());
    o.features = o.featureCopy.data();
  }
  if (p.extraRows > 0) {
    o.extra = in.contrastFeatures;
    if (spec.normalize || o.ld != D) {
      o.extraCopy.reset(static_cast<size_t>(p.extraRows * o.ld));
      if (spec.normalize) o.extraNorms.reset(static_cast<size_t>(p.extraRows));
      copyRows(in.contrastFeatures, p.extraRows, D, o.ld, spec.normalize, o.extraNorms.data(), o.extraCopy.data());
      o.extra = o.extraCopy.data();
    }
  }
  o.anchors = o.features;
  if (p.oneMode) {
    o.anchorCopy.reset(static_cast<size_t>(p.anchors * o.ld));
    for (int64_t s = 0; s < p.anchors; ++s)
      std::copy(o.features + p.anchorRow[s] * o.ld, o.features + (p.anchorRow[s] + 1) * o.ld,
                o.anchorCopy.data() + s * o.ld);
    o.anchors = o.anchorCopy.data();
  }

  // Score operands and class ids in padded numbering.
  const int64_t extraPadded = roundUp(p.extraRows, kTile);
  o.contrastPanels.reset(static_cast<size_t>((o.featuresPadded + extraPadded) * D));
  packPanels(o.features, o.ld, p.rows, o.featuresPadded, D, nr, o.contrastPanels.data());
  if (p.extraRows > 0)
    packPanels(o.extra, o.ld, p.extraRows, extraPadded, D, nr, o.contrastPanels.data() + o.featuresPadded * D);
  o.contrastClass.reset(static_cast<size_t>(o.featuresPadded + extraPadded));
  std::fill(o.contrastClass.data(), o.contrastClass.data() + o.contrastClass.size(), kPaddingClass);
  std::copy(p.contrastClass.begin(), p.contrastClass.begin() + p.rows, o.contrastClass.data());
  std::copy(p.contrastClass.begin() + p.rows, p.contrastClass.end(), o.contrastClass.data() + o.featuresPadded);

  const int64_t anchorsPadded = roundUp(p.anchors, kTile);
  o.anchorPanel = o.contrastPanels.data();
  if (p.oneMode) {
    o.anchorPanels.reset(static_cast<size_t>(anchorsPadded * D));
    packPanels(o.anchors, o.ld, p.anchors, anchorsPadded, D, nr, o.anchorPanels.data());
    o.anchorPanel = o.anchorPanels.data();
  }
  o.anchorClass.reset(static_cast<size_t>(anchorsPadded));
  std::fill(o.anchorClass.data(), o.anchorClass.data() + anchorsPadded, kPaddingClass);
  std::copy(p.anchorClass.begin(), p.anchorClass.end(), o.anchorClass.data());
  return o;
}

// s[rows x cols] (row stride kTile) = (1/tau) A B^T for the score-operand panels starting at
// rows a0 (of `aPanels`) and b0 (of `bPanels`); whole kernel blocks past rows/cols are computed
// too (from the zero padding) and ignored.
void scoreTile(const KernelTable& kt, const float* aPanels, int64_t a0, int rows, const float* bPanels, int64_t b0,
               int cols, int64_t dim, float invT, float* s) {
  const int mr = kt.lossMr, nr = kt.lossNr;
  for (int jb = 0; jb < cols; jb += nr) {
    const float* b = bPanels + (b0 + jb) * dim;
    for (int ib = 0; ib < rows; ib += mr) {
      const int64_t row = a0 + ib;
      const float* a = aPanels + (row / nr) * nr * dim + row % nr;
      kt.lossTileKernel(dim, a, nr, b, nr, s + ib * kTile + jb, kTile, invT, 0.0f, mr, nr);
    }
  }
}

// Marks the columns [cols, roundUp(cols, kLossColumnPad)) of the tile's rows absent; returns
// the padded column count the epilogues take.
int padColumns(float* s, int rows, int cols) {
  const int padded = static_cast<int>(roundUp(cols, kLossColumnPad));
  for (int i = 0; i < rows; ++i) std::fill(s + i * kTile + cols, s + i * kTile + padded, kAbsent);
  return padded;
}

// dst [m rows, ld] = alpha * G B + beta * dst for a gradient tile g (row stride kTile) and
// B = rows [k][ld] row-major, K = kc: G itself (transposed = false, g[i][k]) or its transpose
// (g[k][i]). Neither needs a copy: the kernel reads A row by row or k-major.
void accumulateRows(const KernelTable& kt, const float* g, bool transposed, int64_t kc, int m, const float* b,
                    int64_t ld, float alpha, float* dst, float beta = 1.0f) {
  const int mr = kt.lossMr, nr = kt.lossNr;
  for (int64_t d0 = 0; d0 < ld; d0 += nr)
    for (int ib = 0; ib < m; ib += mr) {
      const int rows = std::min(mr, m - ib);
      if (transposed)
        kt.lossTileKernel(kc, g + ib, kTile, b + d0, ld, dst + ib * ld + d0, ld, alpha, beta, rows, nr);
      else
        kt.lossTileKernelRowsA(kc, g + ib * kTile, b + d0, ld, dst + ib * ld + d0, ld, alpha, beta, rows, nr);
    }
}

// Running forward statistics of the anchors (padded to whole tiles).
struct ForwardStats {
  explicit ForwardStats(Workspace& w) : ref(w), sum(w), refP(w), sumP(w), scoreSumP(w) {}
  Buffer<float> ref, sum, refP, sumP;
  Buffer<double> scoreSumP;
  void init(int64_t n, bool variantIn) {
    ref.reset(static_cast<size_t>(n));
    sum.reset(static_cast<size_t>(n), true);
    std::fill(ref.data(), ref.data() + n, kAbsent);
    if (variantIn) {
      refP.reset(static_cast<size_t>(n));
      sumP.reset(static_cast<size_t>(n), true);
      std::fill(refP.data(), refP.data() + n, kAbsent);
    } else {
      scoreSumP.reset(static_cast<size_t>(n), true);
    }
  }
  ForwardSide side(int64_t a0, const int32_t* classes) {
    ForwardSide f;
    f.ref = ref.data() + a0;
    f.sum = sum.data() + a0;
    if (refP.data()) {
      f.refP = refP.data() + a0;
      f.sumP = sumP.data() + a0;
    } else {
      f.scoreSumP = scoreSumP.data() + a0;
    }
    f.classes = classes + a0;
    return f;
  }
};

// One CPU call's problem: prepared once, shared by the forward and the backward of a
// forwardBackward call (one preparation, one layout of the operands).
struct CpuProblem {
  CpuProblem(const LossSpec& spec, const LossInputs& in, Workspace& w)
      : ws(w), p(prepare(spec, in, w)), o(makeOperands(spec, in, p, kernels().lossNr, w)) {}
  Workspace& ws;
  const PreparedLoss p;
  const Operands o;
};

// The forward: perAnchor and stats (4 floats per anchor, loss_internal.h) when non-null.
void forwardTiles(const LossSpec& spec, const CpuProblem& call, float* perAnchor, float* stats, ForwardResult* result) {
  Workspace& ws = call.ws;
  const PreparedLoss& p = call.p;
  const Operands& o = call.o;
  const KernelTable& kt = kernels();
  const int64_t D = p.dim;
  const float invT = p.invTemperature;
  const size_t tileFloats = static_cast<size_t>(kTile * kTile);

  ForwardStats st(ws);
  st.init(roundUp(p.anchors, kTile), p.variantIn);

  if (p.symmetric) {
    Blocks blocks(p.rows);
    runRounds(blocks.count, tileFloats, ws, [&](int64_t I, int64_t J, float* s) {
      const int64_t i0 = blocks.begin(I), j0 = blocks.begin(J);
      const int rows = blocks.len(I), cols = blocks.len(J);
      scoreTile(kt, o.contrastPanels.data(), i0, rows, o.contrastPanels.data(), j0, cols, D, invT, s);
      if (I == J)
        for (int i = 0; i < rows; ++i) s[i * kTile + i] = kAbsent;
      const int colsPadded = padColumns(s, rows, cols);
      ForwardSide rowSide = st.side(i0, o.contrastClass.data());
      ForwardSide colSide = st.side(j0, o.contrastClass.data());
      kt.forwardTile(s, kTile, rows, colsPadded, rowSide, o.contrastClass.data() + j0, I != J ? &colSide : nullptr);
    });
  } else {
    Blocks anchorBlocks(p.anchors);
    const int64_t contrastBlocks = (o.featuresPadded + roundUp(p.extraRows, kTile)) / kTile;
    std::atomic<bool> failed{false};
    parallelFor(anchorBlocks.count, 1, [&](int64_t b, int64_t e) {
      Buffer<float> s(ws);
      try {
        s.reset(tileFloats);
      } catch (...) {
        failed = true;
        return;
      }
      for (int64_t I = b; I < e; ++I) {
        const int64_t a0 = anchorBlocks.begin(I);
        const int rows = anchorBlocks.len(I);
        ForwardSide rowSide = st.side(a0, o.anchorClass.data());
        for (int64_t C = 0; C < contrastBlocks; ++C) {
          const int64_t c0 = C * kTile;
          const int cols = static_cast<int>(
              c0 < o.featuresPadded ? std::min(kTile, p.rows - c0) : std::min(kTile, o.featuresPadded + p.extraRows - c0));
          if (cols <= 0) continue;
          scoreTile(kt, o.anchorPanel, a0, rows, o.contrastPanels.data(), c0, cols, D, invT, s.data());
          for (int i = 0; i < rows; ++i) {  // self-contrast: the anchor's own row
            const int64_t col = p.anchorRow[a0 + i] - c0;
            if (col >= 0 && col < cols) s[i * kTile + col] = kAbsent;
          }
          const int colsPadded = padColumns(s.data(), rows, cols);
          kt.forwardTile(s.data(), kTile, rows, colsPadded, rowSide, o.contrastClass.data() + c0, nullptr);
        }
      }
    });
    if (failed) throw std::bad_alloc();
  }

  // Per-anchor statistics (m, log l, mP, log lP), and for L_out the mean score of the positives
  // (from the same float32 scores as the log-sum-exp, so that the two cancel exactly where they
  // should).
  const size_t A = static_cast<size_t>(p.anchors);
  CallVector<float> saved(stats ? 0 : A * kStatsPerAnchor, 0.0f, WorkspaceAllocator<float>(ws));
  float* out = stats ? stats : saved.data();
  CallVector<double> positiveMean(p.variantIn ? 0 : A, 0.0, WorkspaceAllocator<double>(ws));
  for (size_t s = 0; s < A; ++s) {
    float* o4 = out + kStatsPerAnchor * s;
    o4[0] = st.ref[s];
    o4[1] = std::log(st.sum[s]);
    o4[2] = o4[3] = 0.0f;
    if (p.variantIn && st.sumP[s] > 0) {
      o4[2] = st.refP[s];
      o4[3] = std::log(st.sumP[s]);
    }
    if (!p.variantIn && p.positives[s] > 0) positiveMean[s] = st.scoreSumP[s] / p.positives[s];
  }
  result->loss = reduceLoss(spec, p, out, positiveMean.data(), perAnchor);
  result->validAnchors = p.validAnchors;
}

// The backward: grad from the saved statistics and the upstream gradient.
// grad: dL/d(features) [N, D]; contrastGrad: dL/d(extra rows) [M, D], or nullptr (not computed).
void backwardTiles(const LossSpec& spec, const CpuProblem& call, const float* stats, const float* upstream,
                   float* grad, float* contrastGrad) {
  Workspace& ws = call.ws;
  const PreparedLoss& p = call.p;
  const Operands& o = call.o;
  const KernelTable& kt = kernels();
  const int64_t D = p.dim;
  const float invT = p.invTemperature;
  const int64_t ld = o.ld;

  // Per-anchor statistics and weights, padded to whole tiles (the epilogues read whole vectors).
  const int64_t anchorsPadded = roundUp(p.anchors, kTile);
  Buffer<float> st(static_cast<size_t>(anchorsPadded * kStatsPerAnchor), ws, true);
  Buffer<float> w(static_cast<size_t>(anchorsPadded), ws, true);
  std::copy(stats, stats + p.anchors * kStatsPerAnchor, st.data());
  {
    const CallVector<float> weights = anchorWeights(spec, p, upstream, ws);
    std::copy(weights.begin(), weights.end(), w.data());
  }
  auto anchorSide = [&](int64_t a0) {
    TileSide t;
    t.stats = st.data() + a0 * kStatsPerAnchor;
    t.weight = w.data() + a0;
    t.variantIn = p.variantIn;
    t.classes = o.anchorClass.data() + a0;
    return t;
  };

  // dz accumulates dL/dz of the feature rows (the normalized rows with normalize on), [N][ld].
  Buffer<float> dzOwn(ws);
  float* dz = grad;
  if (spec.normalize || ld != D) {
    dzOwn.reset(static_cast<size_t>(p.rows * ld));
    dz = dzOwn.data();
  }
  // dzExtra: the same for the extra rows [M][ld], when their gradient is wanted (general path).
  if (p.extraRows == 0) contrastGrad = nullptr;
  Buffer<float> dzExtraOwn(ws);
  float* dzExtra = contrastGrad;
  if (contrastGrad && (spec.normalize || ld != D)) {
    dzExtraOwn.reset(static_cast<size_t>(p.extraRows * ld));
    dzExtra = dzExtraOwn.data();
  }
  if (dzExtra) std::fill(dzExtra, dzExtra + p.extraRows * ld, 0.0f);
  const size_t tileFloats = static_cast<size_t>(kTile * kTile);

  if (p.symmetric) {
    // Round 0 holds every block's diagonal tile, its first write: that one overwrites (beta 0)
    // the whole [rows, ld] block, so dz needs no zeroing.
    Blocks blocks(p.rows);
    runRounds(blocks.count, tileFloats, ws, [&](int64_t I, int64_t J, float* s) {
      const int64_t i0 = blocks.begin(I), j0 = blocks.begin(J);
      const int rows = blocks.len(I), cols = blocks.len(J);
      scoreTile(kt, o.contrastPanels.data(), i0, rows, o.contrastPanels.data(), j0, cols, D, invT, s);
      if (I == J)
        for (int i = 0; i < rows; ++i) s[i * kTile + i] = kAbsent;
      const int colsPadded = padColumns(s, rows, cols);
      // H = G_IJ + G_JI^T: the row term and, since S_JI = S_IJ^T, the column term.
      const TileSide rowSide = anchorSide(i0), colSide = anchorSide(j0);
      kt.gradTile(s, kTile, rows, colsPadded, rowSide, &colSide);
      // dz_I += H Z_J / tau, dz_J += H^T Z_I / tau.
      accumulateRows(kt, s, false, cols, rows, o.features + j0 * ld, ld, invT, dz + i0 * ld, I == J ? 0.0f : 1.0f);
      if (I != J) accumulateRows(kt, s, true, rows, cols, o.features + i0 * ld, ld, invT, dz + j0 * ld);
    });
  } else {
    std::fill(dz, dz + p.rows * ld, 0.0f);
    Blocks anchorBlocks(p.anchors);
    const int64_t extraEnd = o.featuresPadded + p.extraRows;
    const int64_t contrastBlocks = (o.featuresPadded + roundUp(p.extraRows, kTile)) / kTile;
    auto blockCols = [&](int64_t c0) {
      return static_cast<int>(c0 < o.featuresPadded ? std::min(kTile, p.rows - c0) : std::min(kTile, extraEnd - c0));
    };
    // G for anchors [a0, a0+rows) x contrast rows [c0, c0+cols), in s.
    auto gradientTile = [&](int64_t a0, int rows, int64_t c0, int cols, float* s) {
      scoreTile(kt, o.anchorPanel, a0, rows, o.contrastPanels.data(), c0, cols, D, invT, s);
      for (int i = 0; i < rows; ++i) {
        const int64_t col = p.anchorRow[a0 + i] - c0;
        if (col >= 0 && col < cols) s[i * kTile + col] = kAbsent;
      }
      const int colsPadded = padColumns(s, rows, cols);
      TileSide columns;
      columns.variantIn = p.variantIn;
      columns.classes = o.contrastClass.data() + c0;
      kt.gradTile(s, kTile, rows, colsPadded, anchorSide(a0), &columns);
    };
    std::atomic<bool> failed{false};
    // dZ_A: anchors x all contrast blocks, parallel over anchor blocks.
    Buffer<float> dzAnchors(static_cast<size_t>(p.anchors * ld), ws, true);
    parallelFor(anchorBlocks.count, 1, [&](int64_t b, int64_t e) {
      Buffer<float> s(ws);
      try {
        s.reset(tileFloats, true);
      } catch (...) {
        failed = true;
        return;
      }
      for (int64_t I = b; I < e; ++I) {
        const int64_t a0 = anchorBlocks.begin(I);
        const int rows = anchorBlocks.len(I);
        for (int64_t C = 0; C < contrastBlocks; ++C) {
          const int64_t c0 = C * kTile;
          const int cols = blockCols(c0);
          if (cols <= 0) continue;
          gradientTile(a0, rows, c0, cols, s.data());
          accumulateRows(kt, s.data(), false, cols, rows, o.contrastRows(c0), ld, invT, dzAnchors.data() + a0 * ld);
        }
      }
    });
    if (failed) throw std::bad_alloc();
    // dZ_C for the feature rows, and the extra rows when asked: parallel over contrast blocks.
    const int64_t gradBlocks = dzExtra ? contrastBlocks : o.featuresPadded / kTile;
    parallelFor(gradBlocks, 1, [&](int64_t b, int64_t e) {
      Buffer<float> s(ws);
      try {
        s.reset(tileFloats, true);
      } catch (...) {
        failed = true;
        return;
      }
      for (int64_t J = b; J < e; ++J) {
        const int64_t c0 = J * kTile;
        const int cols = blockCols(c0);
        if (cols <= 0) continue;
        float* out = c0 < o.featuresPadded ? dz + c0 * ld : dzExtra + (c0 - o.featuresPadded) * ld;
        for (int64_t I = 0; I < anchorBlocks.count; ++I) {
          const int64_t a0 = anchorBlocks.begin(I);
          const int rows = anchorBlocks.len(I);
          gradientTile(a0, rows, c0, cols, s.data());
          accumulateRows(kt, s.data(), true, rows, cols, o.anchors + a0 * ld, ld, invT, out);
        }
      }
    });
    if (failed) throw std::bad_alloc();
    for (int64_t s = 0; s < p.anchors; ++s) {
      float* dst = dz + p.anchorRow[s] * ld;
      const float* src = dzAnchors.data() + s * ld;
      for (int64_t k = 0; k < D; ++k) dst[k] += src[k];
    }
  }

  // L_out positive terms through class sums: -w_i/|P_i| sum_{p in P(i)} (z_p as anchor side,
  // z_i as contrast side), both O(N D).
  if (!p.variantIn) {
    const int64_t C = p.numClasses;
    CallVector<double> sums(static_cast<size_t>(C * D), 0.0, WorkspaceAllocator<double>(ws));
    for (int64_t r = 0; r < p.contrastRows; ++r) {
      const int32_t c = p.contrastClass[r];
      if (c < 0) continue;
      const float* z = r < p.rows ? o.features + r * ld : o.extra + (r - p.rows) * ld;
      double* dst = sums.data() + c * D;
      for (int64_t k = 0; k < D; ++k) dst[k] += z[k];
    }
    CallVector<double> q(static_cast<size_t>(C * D), 0.0, WorkspaceAllocator<double>(ws));
    CallVector<double> coef(static_cast<size_t>(p.anchors), 0.0, WorkspaceAllocator<double>(ws));
    for (int64_t s = 0; s < p.anchors; ++s) {
      if (p.positives[s] == 0) continue;
      coef[s] = double(w[s]) / p.positives[s];
      const float* z = o.anchors + s * ld;
      double* qy = q.data() + p.anchorClass[s] * D;
      for (int64_t k = 0; k < D; ++k) qy[k] += coef[s] * z[k];
    }
    for (int64_t s = 0; s < p.anchors; ++s) {
      if (coef[s] == 0.0) continue;
      const float* z = o.anchors + s * ld;
      const double* cs = sums.data() + p.anchorClass[s] * D;
      float* dst = dz + p.anchorRow[s] * ld;
      // anchor side minus its own contrast-side self term (an anchor is not its own positive)
      for (int64_t k = 0; k < D; ++k)
        dst[k] -= static_cast<float>(invT * (coef[s] * (cs[k] - z[k]) - coef[s] * z[k]));
    }
    for (int64_t r = 0; r < p.rows; ++r) {
      const double* qy = q.data() + p.contrastClass[r] * D;
      float* dst = dz + r * ld;
      for (int64_t k = 0; k < D; ++k) dst[k] -= static_cast<float>(invT * qy[k]);
    }
    // Extra rows are positives of the anchors of their class (unlabeled ones, -1, of none).
    if (dzExtra)
      for (int64_t r = 0; r < p.extraRows; ++r) {
        const int32_t c = p.contrastClass[p.rows + r];
        if (c < 0) continue;
        const double* qy = q.data() + c * D;
        float* dst = dzExtra + r * ld;
        for (int64_t k = 0; k < D; ++k) dst[k] -= static_cast<float>(invT * qy[k]);
      }
  }

  if (spec.normalize) normalizeRowsBackward(o.features, o.norms.data(), p.rows, D, ld, dz);
  if (dz != grad)
    for (int64_t r = 0; r < p.rows; ++r) std::copy(dz + r * ld, dz + r * ld + D, grad + r * D);
  if (dzExtra) {
    if (spec.normalize) normalizeRowsBackward(o.extra, o.extraNorms.data(), p.extraRows, D, ld, dzExtra);
    if (dzExtra != contrastGrad)
      for (int64_t r = 0; r < p.extraRows; ++r) std::copy(dzExtra + r * ld, dzExtra + r * ld + D, contrastGrad + r * D);
  }
}

}  // namespace

Status forwardCpu(const LossSpec& spec, const LossInputs& in, float* perAnchor, float* stats,
                  ForwardResult* result) {
  Workspace ws;
  {
    const CpuProblem call(spec, in, ws);
    forwardTiles(spec, call, perAnchor, stats, result);
  }
  result->workspaceBytes = ws.peakBytes();
  return Status::ok();
}

Status backwardCpu(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                   float* grad, float* contrastGrad, BackwardResult* result) {
  Workspace ws;
  {
    const CpuProblem call(spec, in, ws);
    backwardTiles(spec, call, stats, upstream, grad, contrastGrad);
  }
  result->workspaceBytes = ws.peakBytes();
  return Status::ok();
}

Status forwardBackwardCpu(const LossSpec& spec, const LossInputs& in, float* perAnchor, float* grad,
                          float* contrastGrad, ForwardResult* result) {
  Workspace ws;
  {
    const CpuProblem call(spec, in, ws);
    Buffer<float> stats(static_cast<size_t>(statsSize(spec, in)), ws);
    Buffer<float> ones(static_cast<size_t>(spec.reduction == Reduction::kNone ? numAnchors(spec, in) : 1), ws);
    std::fill(ones.data(), ones.data() + ones.size(), 1.0f);
    forwardTiles(spec, call, perAnchor, stats.data(), result);
    backwardTiles(spec, call, stats.data(), ones.data(), grad, contrastGrad);
  }
  result->workspaceBytes = ws.peakBytes();
  return Status::ok();
}

}  // namespace detail
}  // namespace supcon
