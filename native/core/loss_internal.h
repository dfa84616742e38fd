// Shared by the CPU and CUDA implementations of the loss: the problem in the form the kernels
// want (dense class ids, anchor rows, positive counts, weights), built once on the host in O(N+M),
// and the entry points of each device. They assume validate() passed: the public functions of
// loss.cpp check once, then call these.
#pragma once
#include <cstdint>
#include <vector>

#include "loss_pairs.h"
#include "memory.h"
#include "supcon/loss.h"

namespace supcon {
namespace detail {

// A std::vector whose memory counts into the call's Workspace.
template <typename T>
using CallVector = std::vector<T, WorkspaceAllocator<T>>;

struct PreparedLoss {
  explicit PreparedLoss(Workspace& w)
      : contrastClass(WorkspaceAllocator<int32_t>(w)),
        anchorClass(WorkspaceAllocator<int32_t>(w)),
        anchorRow(WorkspaceAllocator<int64_t>(w)),
        positives(WorkspaceAllocator<int32_t>(w)),
        bits(WorkspaceAllocator<uint64_t>(w)),
        setSize(WorkspaceAllocator<int32_t>(w)),
        sample(WorkspaceAllocator<int32_t>(w)),
        capKey(WorkspaceAllocator<int32_t>(w)),
        capThreshold(WorkspaceAllocator<int32_t>(w)) {}

  int64_t batch = 0, views = 1, dim = 0;
  int64_t rows = 0;          // N = batch * views feature rows (memory order r = b*views + v)
  int64_t extraRows = 0;     // M rows of the extra contrast set
  int64_t contrastRows = 0;  // N + M
  int64_t anchors = 0;       // anchor slots: slot = row ('all') or slot = b, row = b*views ('one')
  bool oneMode = false;
  bool symmetric = false;    // 'all', no extra contrast set, no cap: anchors == contrast rows, symmetric pairs
  bool variantIn = false;
  Denominator denominator = Denominator::kAll;
  // The relation needs pairWeight (label sets, or a cap): positive weights are summed by the
  // forward's tile passes instead of counted here, and the L_out positive term of the gradient
  // is formed in the tiles instead of through class sums.
  bool general = false;
  float invTemperature = 10.0f;  // float32 1/temperature, as every product uses it
  float lossScale = 1.0f;        // float32 temperature / baseTemperature
  // Dense class id of each contrast row (features first, then extra rows); extra rows without
  // labels get -1, which no anchor has.
  CallVector<int32_t> contrastClass;
  CallVector<int32_t> anchorClass;    // [anchors]
  CallVector<int64_t> anchorRow;      // [anchors]: the anchor's own row (its self-contrast column)
  CallVector<int32_t> positives;      // [anchors]: |P(i)| (class relation only; 0 when general)
  int32_t numClasses = 0;
  // The relation's arrays (loss_pairs.h), by contrast row: label sets as bitsets, the sample of
  // each row and the cap's order keys and per-anchor-row thresholds (empty when unused).
  int32_t words = 0;
  bool jaccard = false;
  bool capped = false;
  CallVector<uint64_t> bits;
  CallVector<int32_t> setSize, sample, capKey, capThreshold;

  // The relation over host memory.
  PairRelation relation() const {
    PairRelation r;
    r.classes = contrastClass.data();
    r.bits = bits.data();
    r.setSize = setSize.data();
    r.words = words;
    r.jaccard = jaccard ? 1 : 0;
    r.capped = capped ? 1 : 0;
    r.sample = sample.data();
    r.key = capKey.data();
    r.threshold = capThreshold.data();
    return r;
  }

  // View-major output index of an anchor slot (perAnchor and upstream use it).
  int64_t outputIndex(int64_t slot) const {
    if (oneMode) return slot;
    int64_t b = slot / views, v = slot % views;
    return v * batch + b;
  }
};

PreparedLoss prepare(const LossSpec& spec, const LossInputs& in, Workspace& workspace);

// Per-anchor statistics, 8 floats per anchor slot (the stats array of loss.h), docs/loss.md
// ("Numerics"):
//   [0] m, [1] log l   the log-sum-exp over the denominator's rows D(i) (A(i) for kAll, the
//                      negatives otherwise); (0, -inf) when D(i) is empty
//   [2] mP, [3] log lP L_in: the log-sum-exp of log w + s over P(i) (kAll, kOnlyNegatives), or of
//                      log w + log sigma(s - LSE_N) (kOnePositive); (0, 0) otherwise
//   [4] W              the total positive weight sum_{p in P(i)} w_ip, 0 for an anchor without a
//                      loss (no positive; no negative with kOnlyNegatives)
//   [5] T              kOnePositive: the coefficient of the negatives' gradient, L_out
//                      (1/W) sum_p w_ip sigma(LSE_N - s_ip), L_in the sigma-weighted mean of the
//                      same; 0 otherwise
//   [6], [7]           0 (two float4 per anchor on CUDA)
constexpr int kStatsPerAnchor = 8;
enum StatSlot { kStatM = 0, kStatLogL = 1, kStatMP = 2, kStatLogLP = 3, kStatW = 4, kStatT = 5 };

// Per-anchor weights w_i of the gradient (semantics note): upstream x reduction weight x scale,
// 0 for anchors without a loss (W = 0 in their statistics). upstream: 1 value, or [anchors] in
// view-major order.
CallVector<float> anchorWeights(const LossSpec& spec, const PreparedLoss& p, const float* stats,
                                const float* upstream, Workspace& workspace);

// Anchors with a loss (W > 0 in their statistics).
int64_t countValid(const PreparedLoss& p, const float* stats);

// Final per-anchor losses and the reduced loss from per-anchor statistics (stats as above) and
// positiveTerm[slot] (double): for L_out with kAll / kOnlyNegatives the weighted mean of s over
// P(i), for L_out with kOnePositive the anchor's loss itself, (1/W) sum_p w softplus(LSE_N - s);
// unused for L_in. The differences of large terms are taken first: l = (m - meanP) + log l, or
// (m - mP) + (log l - log lP) + log W, or log W - (mP + log lP). Writes perAnchor (view-major)
// when non-null.
double reduceLoss(const LossSpec& spec, const PreparedLoss& p, const float* stats, const double* positiveTerm,
                  float* perAnchor);

// Row normalization z = x / max(||x||, eps), eps = kNormalizeEpsilon (as
// torch.nn.functional.normalize). Norms are computed in double, so any finite row works;
// norms[r] is ||x_r|| itself (unclamped). z has row stride ldz.
constexpr double kNormalizeEpsilon = 1e-12;
void normalizeRows(const float* x, int64_t rows, int64_t dim, float* z, int64_t ldz, double* norms);
// The gradient through it, in place on dz (row stride ldz): dx = (dz - z (z . dz)) / ||x|| where
// ||x|| >= eps, and dx = dz / eps where the norm is clamped (the derivative of x / eps).
void normalizeRowsBackward(const float* z, const double* norms, int64_t rows, int64_t dim, int64_t ldz, float* dz);

Status forwardCpu(const LossSpec& spec, const LossInputs& in, float* perAnchor, float* stats,
                  ForwardResult* result);
// contrastGrad: [contrastRows, dim] or nullptr (the extra rows' gradient is not computed).
Status backwardCpu(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                   float* grad, float* contrastGrad, BackwardResult* result);
// Both, sharing one preparation of the problem (upstream 1).
Status forwardBackwardCpu(const LossSpec& spec, const LossInputs& in, float* perAnchor, float* grad,
                          float* contrastGrad, ForwardResult* result);

#if defined(SUPCON_WITH_CUDA)
Status forwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                   float* stats, ForwardResult* result);
Status backwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                    const float* upstream, float* grad, float* contrastGrad, BackwardResult* result);
// Forward and backward sharing one upload (upstream 1); grad may be nullptr (then contrastGrad is).
Status forwardBackwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                           float* grad, float* contrastGrad, ForwardResult* result);
#endif

}  // namespace detail
}  // namespace supcon
