// Internal C++ API of the CUDA loss beyond supcon/loss.h, for the benchmark and the tests:
// forward + backward in one upload with per-phase CUDA-event timing, and which kernel engine a
// precision resolves to on a device. Plain C++ (no CUDA headers).
#pragma once
#include <string>

#include "supcon/loss.h"
#include "supcon/status.h"

namespace supcon {
namespace cuda {

// Milliseconds per phase of one call, measured with CUDA events on the call's stream.
struct PhaseTiming {
  double uploadMs = 0;    // copies in, normalization, gathers, bf16 copies
  double forwardMs = 0;   // tile kernel, split merge, L_out positive means
  double backwardMs = 0;  // gradient passes, L_out positive terms, normalization backward
  double downloadMs = 0;  // gradient and statistics back to the host
};

// forward + backward on CUDA sharing one upload (upstream 1, or all ones for kNone). Inputs are
// validated like supcon::forward. grad may be nullptr (forward only, still timed).
Status forwardBackwardTimed(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                            float* grad, ForwardResult* result, PhaseTiming* timing);

// The tile-kernel engine a run resolves to: "fp32-simt", "tf32-wmma" or "bf16-wmma" (tensor
// cores need compute capability 8.0; older devices run fp32-simt whatever the precision), or
// an empty string when no device is usable.
std::string engineName(const RunOptions& run);

}  // namespace cuda
}  // namespace supcon
