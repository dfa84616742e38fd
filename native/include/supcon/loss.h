// The fused SupCon loss: public C++ API of the core (no Node headers).
// Semantics: docs/loss.md (the project's contract, mirrored from the design note).
//
// Layout conventions
//  - features are [batch, views, dim] in memory (rank-2 input is views = 1). Row r = b*views + v.
//  - anchors are numbered view-major, as the semantics note says: anchor k = v*batch + b in
//    contrastMode 'all' (k < batch*views), anchor k = b in contrastMode 'one' (view 0 only).
//    perAnchor outputs and per-anchor upstream gradients use that numbering.
//  - the optional extra contrast set [contrastRows, dim] is contrasted against but gets no
//    gradient and is never an anchor.
#pragma once
#include <cstdint>

#include "supcon/status.h"

namespace supcon {

enum class Variant { kOut, kIn };
enum class ContrastMode { kAll, kOne };
enum class Reduction { kMean, kSum, kNone };
// kAuto: CUDA when compiled, a device is present and the problem has >= cudaAutoMinRows() rows.
enum class Device { kCpu, kCuda, kAuto };
// Arithmetic of the similarity products. kTf32/kBf16 use tensor cores on CUDA (float32
// accumulation); the CPU path always computes in float32 and ignores this field.
enum class Precision { kFp32, kTf32, kBf16 };

struct LossSpec {
  float temperature = 0.1f;
  float baseTemperature = 0.1f;  // the loss is scaled by temperature / baseTemperature
  Variant variant = Variant::kOut;
  ContrastMode contrastMode = ContrastMode::kAll;
  bool normalize = false;  // L2-normalize rows inside the op (gradient goes through it)
  Reduction reduction = Reduction::kMean;
};

struct LossInputs {
  const float* features = nullptr;  // [batch, views, dim]
  int64_t batch = 0;
  int64_t views = 1;
  int64_t dim = 0;
  // [batch] class ids, or nullptr for the self-supervised case (each sample is its own class).
  const int32_t* labels = nullptr;
  // Optional extra contrast set: [contrastRows, dim]; labels [contrastRows] required iff
  // `labels` is given (with no labels the extra rows are negatives of every anchor).
  const float* contrastFeatures = nullptr;
  const int32_t* contrastLabels = nullptr;
  int64_t contrastRows = 0;
};

struct RunOptions {
  Device device = Device::kCpu;
  Precision precision = Precision::kFp32;
  int cudaDevice = 0;
};

struct ForwardResult {
  double loss = 0;               // reduced loss (for kNone: the sum of perAnchor)
  int64_t validAnchors = 0;      // anchors with at least one positive
  int64_t workspaceBytes = 0;    // peak extra memory the call allocated (host, or device for CUDA)
};

struct BackwardResult {
  int64_t workspaceBytes = 0;
};

// Number of anchors: batch*views ('all') or batch ('one').
int64_t numAnchors(const LossSpec& spec, const LossInputs& in);
// Floats of saved statistics per call (forward writes them, backward reads them): 2 per anchor.
int64_t statsSize(const LossSpec& spec, const LossInputs& in);

// Checks shapes, options and that features/contrast contain no NaN/Inf.
Status validate(const LossSpec& spec, const LossInputs& in);

// Forward. perAnchor: [numAnchors] per-anchor losses l_i scaled by temperature/baseTemperature
// (0 for anchors without positives). stats: [statsSize] per-anchor log-sum-exp values for
// backward. Either output may be nullptr when not wanted (stats must be given to call backward).
Status forward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
               float* stats, ForwardResult* result);

// Backward. upstream: one float (reduction kMean/kSum) or [numAnchors] (kNone).
// grad: [batch, views, dim], overwritten with dLoss/dFeatures.
Status backward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                const float* upstream, int64_t upstreamLength, float* grad, BackwardResult* result);

// Both in one call (upstream 1 for kMean/kSum, all ones for kNone).
Status forwardBackward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                       float* grad, ForwardResult* result);

}  // namespace supcon
