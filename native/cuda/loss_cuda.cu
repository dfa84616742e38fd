// The CUDA implementation of the core's loss entry points (detail::forwardCuda/backwardCuda,
// declared in native/core/loss_internal.h), cudaInfo(), and the internal API of loss_cuda.h.
// The kernels are in loss_kernels.cuh, the host orchestration in loss_cuda_impl.h.
#include <string>

#include "guarded.h"
#include "loss_cuda.h"
#include "loss_cuda_impl.h"
#include "supcon/device.h"

namespace supcon {

namespace detail {

Status forwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor, float* stats,
                   ForwardResult* result) {
  return cuda_impl::forward(spec, in, run, perAnchor, stats, result);
}

Status backwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                    const float* upstream, float* grad, float* contrastGrad, BackwardResult* result) {
  return cuda_impl::backward(spec, in, run, stats, upstream, grad, contrastGrad, result);
}

Status forwardBackwardCuda(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                           float* grad, float* contrastGrad, ForwardResult* result) {
  return cuda_impl::forwardBackward(spec, in, run, perAnchor, grad, contrastGrad, result, nullptr);
}

}  // namespace detail

namespace cuda {

Status forwardBackwardTimed(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                            float* grad, ForwardResult* result, PhaseTiming* timing) {
  SUPCON_RETURN_IF_ERROR(validate(spec, in));
  ForwardResult local;
  return guarded("supcon loss (CUDA)",
                 [&] { return cuda_impl::forwardBackward(spec, in, run, perAnchor, grad, nullptr, result ? result : &local, timing); });
}

std::string engineName(const RunOptions& run) {
  cuda_impl::DeviceInfo dev;
  if (!cuda_impl::queryDevice(run.cudaDevice, &dev).isOk()) return "";
  return cuda_impl::engineName(cuda_impl::pickEngine(run.precision, dev));
}

}  // namespace cuda

const CudaInfo& cudaInfo() {
  static const CudaInfo info = [] {
    CudaInfo i;
    i.compiled = true;
    int runtime = 0;
    if (cudaRuntimeGetVersion(&runtime) == cudaSuccess)
      i.runtimeVersion = std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10);
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      i.reason = cuda_impl::unavailableReason(e);
      return i;
    }
    if (count == 0) {
      i.reason = "no CUDA device is present";
      return i;
    }
    for (int d = 0; d < count; ++d) {
      cudaDeviceProp prop;
      if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
        (void)cudaGetLastError();
        continue;
      }
      CudaDeviceInfo dev;
      dev.index = d;
      dev.name = prop.name;
      dev.computeMajor = prop.major;
      dev.computeMinor = prop.minor;
      dev.totalMemoryBytes = int64_t(prop.totalGlobalMem);
      dev.multiprocessors = prop.multiProcessorCount;
      i.devices.push_back(dev);
    }
    if (i.devices.empty()) i.reason = "CUDA devices are present but none could be queried";
    return i;
  }();
  return info;
}

}  // namespace supcon
