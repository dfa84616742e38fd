// The fused SupCon loss: public C++ API of the core (no Node headers).
// Semantics, defaults and the ranges of valid input: docs/loss.md.
//
// Layout conventions
//  - features are [batch, views, dim] in memory (rank-2 input is views = 1). Row r = b*views + v.
//  - anchors are numbered view-major, as the semantics note says: anchor k = v*batch + b in
//    contrastMode 'all' (k < batch*views), anchor k = b in contrastMode 'one' (view 0 only).
//    perAnchor outputs and per-anchor upstream gradients use that numbering.
//  - the optional extra contrast set [contrastRows, dim] is contrasted against but is never an
//    anchor. Its gradient (the rows' part of dZ_C = G^T Z_A / tau, docs/loss.md) is computed only
//    when asked for (contrastGrad): a memory queue needs none, rows gathered from other workers
//    of a data-parallel step do (their owner adds it to its own gradient).
//
// Every entry point checks its arguments once (validate(), the safety net for C++ callers; the
// TypeScript layer checks the same rules first) and returns a Status; none throws or aborts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

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

// The names of the option values, spelled as the TypeScript API spells them. Options cross the
// N-API boundary by these names, never by position; a test compares them with the TypeScript
// lists (src/loss/options.ts), so the two cannot drift apart.
template <typename E>
struct EnumName {
  E value;
  const char* name;
};
inline constexpr EnumName<Variant> kVariantNames[] = {{Variant::kOut, "out"}, {Variant::kIn, "in"}};
inline constexpr EnumName<ContrastMode> kContrastModeNames[] = {{ContrastMode::kAll, "all"},
                                                                {ContrastMode::kOne, "one"}};
inline constexpr EnumName<Reduction> kReductionNames[] = {
    {Reduction::kMean, "mean"}, {Reduction::kSum, "sum"}, {Reduction::kNone, "none"}};
inline constexpr EnumName<Device> kDeviceNames[] = {
    {Device::kAuto, "auto"}, {Device::kCpu, "cpu"}, {Device::kCuda, "cuda"}};
inline constexpr EnumName<Precision> kPrecisionNames[] = {
    {Precision::kFp32, "fp32"}, {Precision::kTf32, "tf32"}, {Precision::kBf16, "bf16"}};

// The value named `name`, or false when no value has that name.
template <typename E, size_t N>
bool enumFromName(const EnumName<E> (&names)[N], const char* name, E* out) {
  for (const EnumName<E>& n : names)
    if (std::strcmp(n.name, name) == 0) {
      *out = n.value;
      return true;
    }
  return false;
}

struct LossSpec {
  float temperature = 0.1f;  // tau > 0
  // The loss is scaled by temperature / baseTemperature. Unset: the temperature itself (factor 1),
  // the documented default.
  std::optional<float> baseTemperature;
  Variant variant = Variant::kOut;
  ContrastMode contrastMode = ContrastMode::kAll;
  bool normalize = false;  // L2-normalize rows inside the op (gradient goes through it)
  Reduction reduction = Reduction::kMean;

  float effectiveBaseTemperature() const { return baseTemperature.value_or(temperature); }
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
  int cudaDevice = 0;  // CUDA device index (C++ callers; the TypeScript API uses device 0)
};

struct ForwardResult {
  double loss = 0;               // reduced loss (for kNone: the sum of perAnchor)
  int64_t validAnchors = 0;      // anchors with at least one positive
  // Peak bytes of every buffer the call allocated, counted per call: host buffers, plus the
  // device buffers on CUDA. The inputs and outputs the caller passes in are not counted.
  int64_t workspaceBytes = 0;
};

struct BackwardResult {
  int64_t workspaceBytes = 0;  // as ForwardResult::workspaceBytes
};

// Number of anchors: batch*views ('all') or batch ('one').
int64_t numAnchors(const LossSpec& spec, const LossInputs& in);
// Floats of saved statistics per call (forward writes them, backward reads them): 4 per anchor,
// the log-sum-exp over A(i) as a reference m and log of the sum of exp(s - m), then the same over
// P(i) for L_in (docs/loss.md, "Numerics": kept apart, p = exp((s - m) - log l) stays exact where
// |s| is so large that m + log l would round log l away).
int64_t statsSize(const LossSpec& spec, const LossInputs& in);

// Checks shapes, pointers and options, and that the problem stays inside float32's range
// (docs/loss.md, "Valid input"): finite features whose similarity scores, loss and gradient
// (for upstream 1) are finite in float32. One pass over the features.
Status validate(const LossSpec& spec, const LossInputs& in);
// The checks of a backward call: validate()'s, plus the upstream gradient (upstreamLength values,
// finite), the statistics (finite), and that the gradient stays inside float32's range.
Status validateBackward(const LossSpec& spec, const LossInputs& in, const float* stats, const float* upstream,
                        int64_t upstreamLength);

// Forward. perAnchor: [numAnchors] per-anchor losses l_i scaled by temperature/baseTemperature
// (0 for anchors without positives). stats: [statsSize] per-anchor log-sum-exp statistics for
// backward. Either output may be nullptr when not wanted (stats must be given to call backward).
Status forward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
               float* stats, ForwardResult* result);

// Backward. upstream: one float (reduction kMean/kSum) or [numAnchors] (kNone), finite.
// grad: [batch, views, dim], overwritten with dLoss/dFeatures. contrastGrad: [contrastRows, dim],
// overwritten with dLoss/dContrastFeatures, or nullptr when the extra rows' gradient is not wanted
// (it costs a pass of contrastRows x anchors tiles).
Status backward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                const float* upstream, int64_t upstreamLength, float* grad, float* contrastGrad,
                BackwardResult* result);
inline Status backward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                       const float* upstream, int64_t upstreamLength, float* grad, BackwardResult* result) {
  return backward(spec, in, run, stats, upstream, upstreamLength, grad, nullptr, result);
}

// Both in one call (upstream 1 for kMean/kSum, all ones for kNone): one validation, and on
// CUDA one upload. grad may be nullptr (forward only); contrastGrad as in backward (only with grad).
Status forwardBackward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                       float* grad, float* contrastGrad, ForwardResult* result);
inline Status forwardBackward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                              float* grad, ForwardResult* result) {
  return forwardBackward(spec, in, run, perAnchor, grad, nullptr, result);
}

}  // namespace supcon
