// What the build and the machine offer: SIMD path, threads, CUDA devices (or why none).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace supcon {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int computeMajor = 0, computeMinor = 0;
  int64_t totalMemoryBytes = 0;
  int multiprocessors = 0;
};

struct CudaInfo {
  bool compiled = false;             // built with a CUDA compiler
  std::vector<CudaDeviceInfo> devices;
  std::string reason;                // why CUDA is unavailable: not compiled, no driver, no device
  std::string runtimeVersion;        // e.g. "13.0"
};

// Queried once and cached (a CUDA driver probe costs tens of milliseconds).
const CudaInfo& cudaInfo();

// Problems with at least this many rows (anchors + contrast) go to CUDA under Device::kAuto
// when a device is present; smaller ones stay on the CPU, where the launch and copy costs
// would dominate. SUPCON_CUDA_MIN_ROWS overrides it.
int64_t cudaAutoMinRows();

}  // namespace supcon
