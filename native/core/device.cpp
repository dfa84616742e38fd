#include "supcon/device.h"

#include <cstdlib>

namespace supcon {

#if !defined(SUPCON_WITH_CUDA)
const CudaInfo& cudaInfo() {
  static const CudaInfo info = [] {
    CudaInfo i;
    i.compiled = false;
    i.reason = "not compiled: this build of supcon-native found no CUDA compiler (rebuild with nvcc on PATH)";
    return i;
  }();
  return info;
}
#endif

int64_t cudaAutoMinRows() {
  if (const char* env = std::getenv("SUPCON_CUDA_MIN_ROWS")) {
    long long v = std::atoll(env);
    if (v > 0) return v;
  }
  return 4096;
}

}  // namespace supcon
