// Shared by the CPU and CUDA implementations of the loss: the problem in the form the kernels
// want (dense class ids, anchor rows, positive counts, weights), built once on the host in O(N+M),
// and the entry points of each device. They assume validate() passed: the public functions of
// loss.cpp check once, then call these.
#pragma once
#include <cstdint>
#include <vector>

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
        positives(WorkspaceAllocator<int32_t>(w)) {}

  int64_t batch = 0, views = 1, dim = 0;
  int64_t rows = 0;          // N = batch * views feature rows (memory order r = b*views + v)
  int64_t extraRows = 0;     // M rows of the extra contrast set
  int64_t contrastRows = 0;  // N + M
  int64_t anchors = 0;       // anchor slots: slot = row ('all') or slot = b, row = b*views ('one')
  bool oneMode = false;
  bool symmetric = false;    // 'all' with no extra contrast set: anchors == contrast rows
  bool variantIn = false;
  float invTemperature = 10.0f;  // float32 1/temperature, as every product uses it
  float lossScale = 1.0f;        // float32 temperature / baseTemperature
  // Dense class id of each contrast row (features first, then extra rows); extra rows without
  // labels get -1, which no anchor has.
  CallVector<int32_t> contrastClass;
  CallVector<int32_t> anchorClass;    // [anchors]
  CallVector<int64_t> anchorRow;      // [anchors]: the anchor's own row (its self-contrast column)
  CallVector<int32_t> positives;      // [anchors]: |P(i)|
  int32_t numClasses = 0;
  int64_t validAnchors = 0;

  // View-major output index of an anchor slot (perAnchor and upstream use it).
  int64_t outputIndex(int64_t slot) const {
    if (oneMode) return slot;
    int64_t b = slot / views, v = slot % views;
    return v * batch + b;
  }
};

PreparedLoss prepare(const LossSpec& spec, const LossInputs& in, Workspace& workspace);

// Per-anchor weights w_i of the gradient (semantics note): upstream x reduction weight x scale,
// 0 for anchors without positives. upstream: 1 value, or [anchors] in view-major order.
CallVector<float> anchorWeights(const LossSpec& spec, const PreparedLoss& p, const float* upstream,
                                Workspace& workspace);

// Per-anchor statistics, 4 floats per anchor slot (the stats array of loss.h): the log-sum-exp
// over A(i) as (m, log l), then over P(i) as (mP, log lP) for L_in ((0, 0) otherwise).
constexpr int kStatsPerAnchor = 4;

// Final per-anchor losses and the reduced loss from per-anchor statistics (stats as above;
// positiveMean[slot] for L_out: the mean of s_ip over P(i)). The differences of large terms are
// taken first: l = (m - meanP) + log l, or (m - mP) + (log l - log lP) + log |P|. Writes
// perAnchor (view-major) when non-null.
double reduceLoss(const LossSpec& spec, const PreparedLoss& p, const float* stats, const double* positiveMean,
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
