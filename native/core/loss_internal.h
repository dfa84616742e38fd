// Shared by the CPU and CUDA implementations of the loss: the problem in the form the kernels
// want (dense class ids, anchor rows, positive counts, weights), built once on the host in O(N+M).
#pragma once
#include <cstdint>
#include <vector>

#include "supcon/loss.h"

namespace supcon {
namespace detail {

struct PreparedLoss {
  int64_t batch = 0, views = 1, dim = 0;
  int64_t rows = 0;          // N = batch * views feature rows (memory order r = b*views + v)
  int64_t extraRows = 0;     // M rows of the extra contrast set
  int64_t contrastRows = 0;  // N + M
  int64_t anchors = 0;       // anchor slots: slot = row ('all') or slot = b, row = b*views ('one')
  bool oneMode = false;
  bool symmetric = false;    // 'all' with no extra contrast set: anchors == contrast rows
  bool variantIn = false;
  float invTemperature = 10.0f;
  float lossScale = 1.0f;    // temperature / baseTemperature
  // Dense class id of each contrast row (features first, then extra rows); extra rows without
  // labels get -1, which no anchor has.
  std::vector<int32_t> contrastClass;
  std::vector<int32_t> anchorClass;    // [anchors]
  std::vector<int64_t> anchorRow;      // [anchors]: the anchor's own row (its self-contrast column)
  std::vector<int32_t> positives;      // [anchors]: |P(i)|
  int32_t numClasses = 0;
  int64_t validAnchors = 0;

  // View-major output index of an anchor slot (perAnchor and upstream use it).
  int64_t outputIndex(int64_t slot) const {
    if (oneMode) return slot;
    int64_t b = slot / views, v = slot % views;
    return v * batch + b;
  }
};

// Assumes validate() passed.
PreparedLoss prepare(const LossSpec& spec, const LossInputs& in);

// Per-anchor weights w_i of the gradient (semantics note): upstream x reduction weight x scale,
// 0 for anchors without positives. upstream: 1 value, or [anchors] in view-major order.
std::vector<float> anchorWeights(const LossSpec& spec, const PreparedLoss& p, const float* upstream,
                                 int64_t upstreamLength);

// Final per-anchor losses and the reduced loss from per-anchor log-sum-exp values.
//  lse[slot]: log-sum-exp over A(i); positiveMean[slot] (L_out): mean of s_ip over P(i);
//  lseP[slot] (L_in): log-sum-exp over P(i). Writes perAnchor (view-major) when non-null.
double reduceLoss(const LossSpec& spec, const PreparedLoss& p, const float* lse, const double* positiveMean,
                  const float* lseP, float* perAnchor);

// Row normalization: z = x / max(||x||, 1e-12) (as torch.nn.functional.normalize); norms out.
void normalizeRows(const float* x, int64_t rows, int64_t dim, float* z, float* norms);
// dx = (dz - z (z . dz)) / norm, in place on dz.
void normalizeRowsBackward(const float* z, const float* norms, int64_t rows, int64_t dim, float* dz);

Status forwardCpu(const LossSpec& spec, const LossInputs& in, float* perAnchor, float* stats,
                  ForwardResult* result);
Status backwardCpu(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                   int64_t upstreamLength, float* grad, BackwardResult* result);

#if defined(SUPCON_WITH_CUDA)
Status forwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                   float* stats, ForwardResult* result);
Status backwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                    const float* upstream, int64_t upstreamLength, float* grad, BackwardResult* result);
#endif

}  // namespace detail
}  // namespace supcon
