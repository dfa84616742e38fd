// Host side of the CUDA loss: host-pointer API in, device work, host results out.
// Included by loss_cuda.cu (the library) and, with SUPCON_CUDA_EMULATION, by the emulator test,
// which runs this very code and the kernels on the CPU (emu/cuda_emu.h).
//
// Flow of one call (docs/cuda.md):
//   upload   features (+ extra contrast rows) into a padded [rows, ldz] buffer, normalize there if
//            asked, gather the anchors ('one' mode), make bf16 copies (kBf16), class ids, ...
//   forward  tile kernel -> per-split (max, sum) -> LSE, LSE^P per anchor; L_out positive means
//            through class sums; the host reduces (the same reduceLoss as the CPU path).
//   backward symmetric pass (H = G + G^T) or anchor pass + contrast pass; L_out positive terms
//            through class sums; backward through the normalization; download.
// Every device allocation belongs to a DeviceArena (freed on every return path); every CUDA
// error becomes a Status.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "loss_cuda.h"
#include "loss_internal.h"
#include "loss_kernels.cuh"
#include "portability.cuh"
#include "supcon/loss.h"
#include "supcon/status.h"

namespace supcon {
namespace SUPCON_CUDA_IMPL_NS {

namespace kern = ::supcon::SUPCON_KERNEL_NS;

using cuda::PhaseTiming;
using detail::PreparedLoss;

// Which arithmetic the tile kernels use.
enum class Engine { kSimt, kTf32, kBf16 };

inline const char* engineName(Engine e) {
  return e == Engine::kSimt ? "fp32-simt" : e == Engine::kTf32 ? "tf32-wmma" : "bf16-wmma";
}

// Why CUDA cannot be used, in words, for an error of device discovery.
inline std::string unavailableReason(cudaError_t e) {
  switch (e) {
    case cudaErrorInsufficientDriver:
      return "no usable CUDA driver (libcuda.so is missing or older than the CUDA runtime this was built with)";
    case cudaErrorNoDevice:
      return "no CUDA device is present";
    case cudaErrorStubLibrary:
      return "the CUDA driver found is a stub library (no real driver installed)";
    case cudaErrorSystemDriverMismatch:
      return "the CUDA driver and the kernel module versions do not match";
    case cudaErrorDevicesUnavailable:
      return "all CUDA devices are busy or unavailable (exclusive compute mode?)";
    default:
      return std::string("CUDA initialization failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  }
}

// A CUDA error as a Status: out-of-memory, unavailable device/driver/kernel image, or internal.
inline Status cudaStatus(cudaError_t e, const char* what) {
  const std::string detail = std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  switch (e) {
    case cudaErrorMemoryAllocation:
      return Status::outOfMemory("out of CUDA device memory (" + detail + ")");
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorStubLibrary:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorDevicesUnavailable:
    case cudaErrorCompatNotSupportedOnDevice:
      return Status::unavailable(unavailableReason(e) + " (" + detail + ")");
    case cudaErrorNoKernelImageForDevice:
      return Status::unavailable("this build has no kernel image for the GPU's architecture; rebuild with "
                                 "CMAKE_CUDA_ARCHITECTURES including it (" + detail + ")");
    default:
      return Status::internal("CUDA error in " + detail);
  }
}

#define SUPCON_CUDA_CHECK(expr, what)                          \
  do {                                                         \
    const cudaError_t supconCudaErr = (expr);                  \
    if (supconCudaErr != cudaSuccess) {                        \
      (void)cudaGetLastError(); /* clear a non-sticky error */ \
      return ::supcon::SUPCON_CUDA_IMPL_NS::cudaStatus(supconCudaErr, what); \
    }                                                          \
  } while (0)

// Device memory of one call. Every buffer lives until the arena dies (or release()); the peak
// is reported as workspaceBytes. SUPCON_CUDA_MEMORY_LIMIT (bytes) caps it, so tests can reach
// the out-of-memory path on any device.
class DeviceArena {
 public:
  DeviceArena() {
    if (const char* env = std::getenv("SUPCON_CUDA_MEMORY_LIMIT")) limit_ = std::atoll(env);
  }
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() {
    for (const Block& b : blocks_) cudaFree(b.ptr);
  }

  template <typename T>
  Status alloc(T** out, int64_t count, const char* what) {
    const int64_t bytes = std::max<int64_t>(count, 1) * int64_t(sizeof(T));
    if (limit_ > 0 && bytes_ + bytes > limit_)
      return Status::outOfMemory(std::string("out of CUDA device memory (") + what + ": " + std::to_string(bytes) +
                                 " bytes would exceed SUPCON_CUDA_MEMORY_LIMIT=" + std::to_string(limit_) + ")");
    void* p = nullptr;
    SUPCON_CUDA_CHECK(cudaMalloc(&p, size_t(bytes)), what);
    blocks_.push_back(Block{p, bytes});
    bytes_ += bytes;
    peak_ = std::max(peak_, bytes_);
    *out = static_cast<T*>(p);
    return Status::ok();
  }

  // Frees one buffer early (cudaFree waits for the device, so pending work on it is done).
  void release(void* p) {
    for (size_t i = 0; i < blocks_.size(); ++i)
      if (blocks_[i].ptr == p) {
        cudaFree(p);
        bytes_ -= blocks_[i].bytes;
        blocks_.erase(blocks_.begin() + long(i));
        return;
      }
  }

  int64_t peakBytes() const { return peak_; }

 private:
  struct Block {
    void* ptr;
    int64_t bytes;
  };
  std::vector<Block> blocks_;
  int64_t bytes_ = 0, peak_ = 0, limit_ = 0;
};

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Status create() {
    SUPCON_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate");
    return Status::ok();
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// Events bracketing the phases of a call; only created when timing is asked for.
class PhaseEvents {
 public:
  PhaseEvents() = default;
  PhaseEvents(const PhaseEvents&) = delete;
  PhaseEvents& operator=(const PhaseEvents&) = delete;
  ~PhaseEvents() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  Status mark(bool enabled, cudaStream_t s) {
    if (!enabled) return Status::ok();
    cudaEvent_t e = nullptr;
    SUPCON_CUDA_CHECK(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
    SUPCON_CUDA_CHECK(cudaEventRecord(e, s), "cudaEventRecord");
    return Status::ok();
  }
  double ms(size_t a, size_t b) const {
    if (b >= events_.size()) return 0;
    float t = 0;
    cudaEventElapsedTime(&t, events_[a], events_[b]);
    return t;
  }

 private:
  std::vector<cudaEvent_t> events_;
};

struct DeviceInfo {
  int index = 0;
  int multiProcessors = 1;
  int major = 0, minor = 0;
  int64_t sharedMemPerBlockOptin = 48 * 1024;
};

inline Status queryDevice(int index, DeviceInfo* out) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::unavailable("CUDA is unavailable: " + unavailableReason(e));
  }
  if (count == 0) return Status::unavailable("CUDA is unavailable: no CUDA device is present");
  if (index < 0 || index >= count)
    return Status::invalidArgument("cudaDevice", "a device index in [0, " + std::to_string(count) + ")",
                                   std::to_string(index));
  SUPCON_CUDA_CHECK(cudaSetDevice(index), "cudaSetDevice");
#if defined(SUPCON_CUDA_EMULATION)
  // The emulator's configuration changes between tests: no cache.
  cudaDeviceProp prop;
  SUPCON_CUDA_CHECK(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
#else
  // cudaGetDeviceProperties is slow (it fills every field): once per device.
  static std::mutex mu;
  static std::vector<std::pair<int, cudaDeviceProp>> cache;
  cudaDeviceProp prop{};
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = std::find_if(cache.begin(), cache.end(), [&](const auto& c) { return c.first == index; });
    if (it != cache.end()) {
      prop = it->second;
    } else {
      SUPCON_CUDA_CHECK(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
      cache.emplace_back(index, prop);
    }
  }
#endif
  out->index = index;
  out->multiProcessors = std::max(1, prop.multiProcessorCount);
  out->major = prop.major;
  out->minor = prop.minor;
  out->sharedMemPerBlockOptin = int64_t(prop.sharedMemPerBlockOptin);
  return Status::ok();
}

// Tensor cores need sm_80 (tf32 and bf16 wmma); older devices run the float32 engine.
inline Engine pickEngine(Precision precision, const DeviceInfo& dev) {
  if (precision == Precision::kFp32 || dev.major < 8) return Engine::kSimt;
  return precision == Precision::kTf32 ? Engine::kTf32 : Engine::kBf16;
}

inline int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceilDiv(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Grid of a grid-stride O(N D) kernel.
inline unsigned strideBlocks(int64_t n, const DeviceInfo& dev) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(ceilDiv(n, kern::kThreads), int64_t(dev.multiProcessors) * 16)));
}
// Grid of a warp-per-row kernel.
inline unsigned warpRowBlocks(int64_t rows) { return unsigned(std::max<int64_t>(1, ceilDiv(rows, kern::kThreads / 32))); }

// How many ways to split each row block's column range: enough blocks for about four per
// multiprocessor, at least 2 column tiles per split. SUPCON_CUDA_SPLITS forces a count (tests).
struct SplitPlan {
  int splits = 1, tilesPerSplit = 1;
};
inline SplitPlan planSplits(int64_t blocksPerSplit, int64_t colTiles, const DeviceInfo& dev) {
  int64_t want = 1;
  if (const char* env = std::getenv("SUPCON_CUDA_SPLITS")) {
    want = std::max<int64_t>(1, std::atoll(env));
  } else {
    const int64_t target = int64_t(dev.multiProcessors) * 4;
    if (blocksPerSplit < target) want = std::min(ceilDiv(target, blocksPerSplit), std::max<int64_t>(1, colTiles / 2));
  }
  want = std::min(want, std::max<int64_t>(colTiles, 1));
  want = std::min<int64_t>(want, 65535);
  SplitPlan plan;
  plan.tilesPerSplit = int(ceilDiv(colTiles, want));
  plan.splits = int(ceilDiv(colTiles, plan.tilesPerSplit));  // no empty split
  return plan;
}

// The problem on the device.
struct DeviceProblem {
  explicit DeviceProblem(Workspace& host) : p(host) {}
  PreparedLoss p;
  DeviceInfo dev;
  Engine engine = Engine::kSimt;
  cudaStream_t stream = nullptr;
  int ldz = 0;
  int64_t contrastPadded = 0, anchorsPadded = 0;
  float* zc = nullptr;  // [contrastPadded, ldz]: feature rows (memory order), then extra rows
  float* za = nullptr;  // anchors: zc itself ('all') or gathered rows ('one')
  double* norms = nullptr;  // ||x|| of every contrast row (normalize)
  kern::bf16* zcb = nullptr;
  kern::bf16* zab = nullptr;
  int32_t* contrastClass = nullptr;
  int32_t* anchorClass = nullptr;
  int32_t* anchorRow = nullptr;  // 'one' mode only (identity otherwise)
  int32_t* positives = nullptr;
};

template <typename T>
Status upload(DeviceArena& arena, T** dst, const T* src, int64_t count, cudaStream_t s, const char* what) {
  SUPCON_RETURN_IF_ERROR(arena.alloc(dst, count, what));
  SUPCON_CUDA_CHECK(cudaMemcpyAsync(*dst, src, size_t(count) * sizeof(T), cudaMemcpyHostToDevice, s), what);
  return Status::ok();
}

inline Status uploadProblem(const LossSpec& spec, const LossInputs& in, DeviceArena& arena, DeviceProblem* dp) {
  const PreparedLoss& p = dp->p;
  const cudaStream_t s = dp->stream;
  const int64_t D = p.dim;
  dp->ldz = int(roundUp(D, kern::kOperandAlign));
  dp->contrastPadded = roundUp(p.contrastRows, kern::kOperandRowPad);
  dp->anchorsPadded = roundUp(p.anchors, kern::kOperandRowPad);
  const size_t pitch = size_t(dp->ldz) * sizeof(float), rowBytes = size_t(D) * sizeof(float);

  SUPCON_RETURN_IF_ERROR(arena.alloc(&dp->zc, dp->contrastPadded * dp->ldz, "contrast rows"));
  SUPCON_CUDA_CHECK(cudaMemsetAsync(dp->zc, 0, size_t(dp->contrastPadded) * pitch, s), "cudaMemset");
  SUPCON_CUDA_CHECK(cudaMemcpy2DAsync(dp->zc, pitch, in.features, rowBytes, rowBytes, size_t(p.rows),
                                      cudaMemcpyHostToDevice, s),
                    "upload features");
  if (p.extraRows > 0)
    SUPCON_CUDA_CHECK(cudaMemcpy2DAsync(dp->zc + p.rows * dp->ldz, pitch, in.contrastFeatures, rowBytes, rowBytes,
                                        size_t(p.extraRows), cudaMemcpyHostToDevice, s),
                      "upload contrast features");
  if (spec.normalize) {
    SUPCON_RETURN_IF_ERROR(arena.alloc(&dp->norms, p.contrastRows, "row norms"));
    auto k = &kern::normalizeRowsKernel;
    SUPCON_LAUNCH(k, dim3(warpRowBlocks(p.contrastRows)), dim3(kern::kThreads), 0, s, dp->zc, dp->norms,
                  p.contrastRows, int(D), dp->ldz);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "normalize kernel launch");
  }

  SUPCON_RETURN_IF_ERROR(upload(arena, &dp->contrastClass, p.contrastClass.data(), p.contrastRows, s, "class ids"));
  SUPCON_RETURN_IF_ERROR(upload(arena, &dp->anchorClass, p.anchorClass.data(), p.anchors, s, "anchor class ids"));
  SUPCON_RETURN_IF_ERROR(upload(arena, &dp->positives, p.positives.data(), p.anchors, s, "positive counts"));

  dp->za = dp->zc;
  if (p.oneMode) {
    const detail::CallVector<int32_t> rows(p.anchorRow.begin(), p.anchorRow.end(),
                                           WorkspaceAllocator<int32_t>(p.anchorRow.get_allocator()));
    SUPCON_RETURN_IF_ERROR(upload(arena, &dp->anchorRow, rows.data(), p.anchors, s, "anchor rows"));
    SUPCON_RETURN_IF_ERROR(arena.alloc(&dp->za, dp->anchorsPadded * dp->ldz, "anchor rows"));
    SUPCON_CUDA_CHECK(cudaMemsetAsync(dp->za, 0, size_t(dp->anchorsPadded) * pitch, s), "cudaMemset");
    auto k = &kern::gatherRowsKernel;
    SUPCON_LAUNCH(k, dim3(strideBlocks(p.anchors * dp->ldz, dp->dev)), dim3(kern::kThreads), 0, s, dp->za, dp->zc,
                  dp->anchorRow, p.anchors, dp->ldz);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "gather kernel launch");
  }

  if (dp->engine == Engine::kBf16) {
    auto k = &kern::toBf16Kernel;
    const int64_t n = dp->contrastPadded * dp->ldz;
    SUPCON_RETURN_IF_ERROR(arena.alloc(&dp->zcb, n, "bf16 contrast rows"));
    SUPCON_LAUNCH(k, dim3(strideBlocks(n, dp->dev)), dim3(kern::kThreads), 0, s, dp->zcb, dp->zc, n);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "bf16 conversion launch");
    dp->zab = dp->zcb;
    if (p.oneMode) {
      const int64_t na = dp->anchorsPadded * dp->ldz;
      SUPCON_RETURN_IF_ERROR(arena.alloc(&dp->zab, na, "bf16 anchor rows"));
      SUPCON_LAUNCH(k, dim3(strideBlocks(na, dp->dev)), dim3(kern::kThreads), 0, s, dp->zab, dp->za, na);
      SUPCON_CUDA_CHECK(cudaGetLastError(), "bf16 conversion launch");
    }
  }
  return Status::ok();
}

// Sets the kernel's dynamic shared memory allowance and checks the device has it.
template <typename Kernel>
Status prepareKernel(Kernel kernel, size_t smem, const DeviceInfo& dev, const char* what) {
  if (int64_t(smem) > dev.sharedMemPerBlockOptin)
    return Status::unavailable(std::string(what) + " needs " + std::to_string(smem) +
                               " bytes of shared memory per block; the device allows " +
                               std::to_string(dev.sharedMemPerBlockOptin));
  if (smem > 48 * 1024)
    SUPCON_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)), what);
  return Status::ok();
}

// Calls f(EngineTag{}) with the engine type for the chosen arithmetic.
template <typename T, typename F>
Status withEngine(Engine e, F&& f) {
  switch (e) {
    case Engine::kTf32:
      return f(kern::WmmaEngine<T, kern::Tf32Operands>{});
    case Engine::kBf16:
      return f(kern::WmmaEngine<T, kern::Bf16Operands>{});
    default:
      return f(kern::SimtEngine<T>{});
  }
}

inline kern::TileProblem tileOperands(const DeviceProblem& dp, bool rowsAreAnchors, bool colsAreAnchors) {
  kern::TileProblem t;
  t.rowZ = rowsAreAnchors ? dp.za : dp.zc;
  t.colZ = colsAreAnchors ? dp.za : dp.zc;
  t.rowZb = rowsAreAnchors ? dp.zab : dp.zcb;
  t.colZb = colsAreAnchors ? dp.zab : dp.zcb;
  t.ldz = dp.ldz;
  t.invTemperature = dp.p.invTemperature;
  t.variantIn = dp.p.variantIn ? 1 : 0;
  return t;
}

// Forward: the statistics [anchors] (device, (m, log l, mP, log lP) each) and, for L_out,
// positiveMean [anchors] (device).
inline Status runForward(const DeviceProblem& dp, DeviceArena& arena, float4* stats, double* positiveMean) {
  using T = kern::ForwardTile;
  const PreparedLoss& p = dp.p;
  const cudaStream_t s = dp.stream;
  kern::TileProblem t = tileOperands(dp, true, false);
  t.rows = p.anchors;
  t.cols = p.contrastRows;
  t.rowsPadded = roundUp(p.anchors, T::kRows);
  t.rowKey = dp.anchorRow;
  t.rowClass = dp.anchorClass;
  t.colClass = dp.contrastClass;
  t.colTiles = int(ceilDiv(p.contrastRows, T::kCols));
  const int64_t rowBlocks = t.rowsPadded / T::kRows;
  const SplitPlan plan = planSplits(rowBlocks, t.colTiles, dp.dev);
  t.tilesPerSplit = plan.tilesPerSplit;
  SUPCON_RETURN_IF_ERROR(arena.alloc(&t.partialStats, int64_t(plan.splits) * t.rowsPadded, "forward partial stats"));
  if (!p.variantIn)
    SUPCON_RETURN_IF_ERROR(
        arena.alloc(&t.partialScoreP, int64_t(plan.splits) * t.rowsPadded, "forward partial positive sums"));
  SUPCON_RETURN_IF_ERROR(withEngine<T>(dp.engine, [&](auto engine) -> Status {
    using E = decltype(engine);
    auto kernel = &kern::supconForwardKernel<T, E>;
    const size_t smem = sizeof(typename E::Shared);
    SUPCON_RETURN_IF_ERROR(prepareKernel(kernel, smem, dp.dev, "the forward kernel"));
    SUPCON_LAUNCH(kernel, dim3(unsigned(rowBlocks), unsigned(plan.splits)), dim3(kern::kThreads), smem, s, t);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "forward kernel launch");
    return Status::ok();
  }));
  // L_out's positive means come from the same float32 scores as the log-sum-exps (their
  // per-split sums), so the two cancel exactly where they should (docs/loss.md, "Numerics").
  auto combine = &kern::combineStatsKernel;
  SUPCON_LAUNCH(combine, dim3(unsigned(ceilDiv(p.anchors, kern::kThreads))), dim3(kern::kThreads), 0, s, stats,
                positiveMean, t.partialStats, t.partialScoreP, dp.positives, plan.splits, t.rowsPadded, p.anchors);
  SUPCON_CUDA_CHECK(cudaGetLastError(), "combine kernel launch");
  return Status::ok();
}

// One gradient pass: out rows (rowMap) (= or +=) sum over columns of G . colZ.
template <typename T>
Status runGradPass(const DeviceProblem& dp, DeviceArena& arena, kern::TileProblem t, float* out,
                   const int32_t* rowMap, bool accumulate) {
  const cudaStream_t s = dp.stream;
  const int D = int(dp.p.dim);
  t.rowsPadded = roundUp(t.rows, T::kRows);
  t.colTiles = int(ceilDiv(t.cols, T::kCols));
  const int64_t rowBlocks = t.rowsPadded / T::kRows;
  const int dChunks = int(ceilDiv(D, T::kDChunk));
  t.ldPartial = int64_t(dChunks) * T::kDChunk;
  const SplitPlan plan = planSplits(rowBlocks * dChunks, t.colTiles, dp.dev);
  t.tilesPerSplit = plan.tilesPerSplit;
  SUPCON_RETURN_IF_ERROR(
      arena.alloc(&t.partialGrad, int64_t(plan.splits) * t.rowsPadded * t.ldPartial, "gradient partial sums"));
  SUPCON_RETURN_IF_ERROR(withEngine<T>(dp.engine, [&](auto engine) -> Status {
    using E = decltype(engine);
    auto kernel = &kern::supconGradKernel<T, E>;
    const size_t smem = sizeof(typename E::Shared);
    SUPCON_RETURN_IF_ERROR(prepareKernel(kernel, smem, dp.dev, "the gradient kernel"));
    SUPCON_LAUNCH(kernel, dim3(unsigned(rowBlocks), unsigned(dChunks), unsigned(plan.splits)), dim3(kern::kThreads),
                  smem, s, t);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "gradient kernel launch");
    return Status::ok();
  }));
  auto reduce = &kern::reduceSplitsKernel;
  SUPCON_LAUNCH(reduce, dim3(strideBlocks(t.rows * D, dp.dev)), dim3(kern::kThreads), 0, s, out, dp.ldz, rowMap,
                accumulate ? 1 : 0, t.partialGrad, plan.splits, t.rowsPadded, t.ldPartial, t.rows, D);
  SUPCON_CUDA_CHECK(cudaGetLastError(), "split reduction launch");
  arena.release(t.partialGrad);
  return Status::ok();
}

// dz [gradRows, ldz] (device) = dLoss/dz of the first gradRows contrast rows (before the
// normalization backward): the feature rows (gradRows = rows), or all of them with the extra
// rows (gradRows = contrastRows, the general path only).
template <typename T>
Status runGradPasses(const DeviceProblem& dp, DeviceArena& arena, const float4* stats, const float* weight,
                     float* dz, int64_t gradRows) {
  const PreparedLoss& p = dp.p;
  if (p.symmetric) {
    kern::TileProblem t = tileOperands(dp, true, true);
    t.rows = t.cols = p.rows;
    t.rowClass = t.colClass = dp.contrastClass;
    t.rowStats = t.colStats = stats;
    t.rowWeight = t.colWeight = weight;
    return runGradPass<T>(dp, arena, t, dz, nullptr, false);
  }
  // Contrast pass: rows = feature rows (and extra rows when asked), columns = anchors (G^T Z_A).
  kern::TileProblem c = tileOperands(dp, false, true);
  c.rows = gradRows;
  c.cols = p.anchors;
  c.colKey = dp.anchorRow;
  c.rowClass = dp.contrastClass;
  c.colClass = dp.anchorClass;
  c.colStats = stats;
  c.colWeight = weight;
  SUPCON_RETURN_IF_ERROR(runGradPass<T>(dp, arena, c, dz, nullptr, false));
  // Anchor pass: rows = anchors, columns = every contrast row (G Z_C), added at the anchors' rows.
  kern::TileProblem a = tileOperands(dp, true, false);
  a.rows = p.anchors;
  a.cols = p.contrastRows;
  a.rowKey = dp.anchorRow;
  a.rowClass = dp.anchorClass;
  a.colClass = dp.contrastClass;
  a.rowStats = stats;
  a.rowWeight = weight;
  return runGradPass<T>(dp, arena, a, dz, dp.anchorRow, true);
}

// After the tile passes: the L_out positive terms and the normalization backward, in place on dz
// (its first gradRows contrast rows, as runGradPasses).
inline Status runBackwardTail(const DeviceProblem& dp, DeviceArena& arena, const float* weight, float* dz,
                              int64_t gradRows) {
  const PreparedLoss& p = dp.p;
  const cudaStream_t s = dp.stream;
  const int D = int(p.dim);
  if (!p.variantIn) {
    double *sums = nullptr, *q = nullptr;
    const int64_t n = int64_t(p.numClasses) * D;
    SUPCON_RETURN_IF_ERROR(arena.alloc(&sums, n, "class sums"));
    SUPCON_RETURN_IF_ERROR(arena.alloc(&q, n, "positive-term class sums"));
    SUPCON_CUDA_CHECK(cudaMemsetAsync(sums, 0, size_t(n) * sizeof(double), s), "cudaMemset");
    SUPCON_CUDA_CHECK(cudaMemsetAsync(q, 0, size_t(n) * sizeof(double), s), "cudaMemset");
    auto k = &kern::classSumsKernel;
    SUPCON_LAUNCH(k, dim3(strideBlocks(p.contrastRows * D, dp.dev)), dim3(kern::kThreads), 0, s, sums, dp.zc,
                  dp.contrastClass, nullptr, nullptr, p.contrastRows, D, dp.ldz);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "class sums launch");
    SUPCON_LAUNCH(k, dim3(strideBlocks(p.anchors * D, dp.dev)), dim3(kern::kThreads), 0, s, q, dp.za, dp.anchorClass,
                  weight, dp.positives, p.anchors, D, dp.ldz);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "positive-term sums launch");
    auto g = &kern::positiveGradKernel;
    SUPCON_LAUNCH(g, dim3(strideBlocks(gradRows * D, dp.dev)), dim3(kern::kThreads), 0, s, dz, dp.zc, sums, q,
                  dp.contrastClass, weight, dp.positives, gradRows, p.rows, int(p.views), p.oneMode ? 1 : 0, D,
                  dp.ldz, p.invTemperature);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "positive-term gradient launch");
  }
  if (dp.norms) {
    auto k = &kern::normalizeRowsBackwardKernel;
    SUPCON_LAUNCH(k, dim3(warpRowBlocks(gradRows)), dim3(kern::kThreads), 0, s, dz, dp.zc, dp.norms, gradRows, D,
                  dp.ldz);
    SUPCON_CUDA_CHECK(cudaGetLastError(), "normalize backward launch");
  }
  return Status::ok();
}

inline Status runBackward(const DeviceProblem& dp, DeviceArena& arena, const float4* stats, const float* weight,
                          float* dz, int64_t gradRows) {
  const int D = int(dp.p.dim);
  if (D <= 64) SUPCON_RETURN_IF_ERROR(runGradPasses<kern::GradTileD64>(dp, arena, stats, weight, dz, gradRows));
  else if (D <= 128) SUPCON_RETURN_IF_ERROR(runGradPasses<kern::GradTileD128>(dp, arena, stats, weight, dz, gradRows));
  else SUPCON_RETURN_IF_ERROR(runGradPasses<kern::GradTileD256>(dp, arena, stats, weight, dz, gradRows));
  return runBackwardTail(dp, arena, weight, dz, gradRows);
}

// Rows of dz a backward computes: the feature rows, then the extra rows when their gradient is
// wanted (the symmetric path has none).
inline int64_t gradientRows(const PreparedLoss& p, const float* contrastGrad) {
  return contrastGrad && p.extraRows > 0 ? p.contrastRows : p.rows;
}

// ---- the three entry points ------------------------------------------------------------------

// One call's resources. Its memory, counted per call: `host` (every host buffer) and `arena`
// (every device buffer); workspaceBytes reports the sum of their peaks.
struct CallContext {
  Workspace host;
  DeviceArena arena;
  Stream stream;
  PhaseEvents events;
  DeviceProblem dp{host};
  int64_t workspaceBytes() const { return host.peakBytes() + arena.peakBytes(); }
};

inline Status begin(const LossSpec& spec, const LossInputs& in, const RunOptions& run, CallContext& cx) {
  SUPCON_RETURN_IF_ERROR(queryDevice(run.cudaDevice, &cx.dp.dev));
  cx.dp.p = detail::prepare(spec, in, cx.host);
  cx.dp.engine = pickEngine(run.precision, cx.dp.dev);
  SUPCON_RETURN_IF_ERROR(cx.stream.create());
  cx.dp.stream = cx.stream.get();
  return Status::ok();
}

inline Status finish(CallContext& cx) {
  SUPCON_CUDA_CHECK(cudaStreamSynchronize(cx.dp.stream), "the SupCon kernels");
  SUPCON_CUDA_CHECK(cudaGetLastError(), "the SupCon kernels");
  return Status::ok();
}

// The loss from device statistics: downloads them, fills stats/perAnchor, reduces on the host.
inline Status finishForward(const LossSpec& spec, CallContext& cx, const float4* statsDev, const double* posMeanDev,
                            float* perAnchor, float* stats, ForwardResult* result) {
  const PreparedLoss& p = cx.dp.p;
  const size_t A = size_t(p.anchors);
  detail::CallVector<float> host(A * detail::kStatsPerAnchor, 0.0f, WorkspaceAllocator<float>(cx.host));
  detail::CallVector<double> positiveMean(p.variantIn ? 0 : A, 0.0, WorkspaceAllocator<double>(cx.host));
  const cudaStream_t s = cx.dp.stream;
  SUPCON_CUDA_CHECK(cudaMemcpyAsync(host.data(), statsDev, A * sizeof(float4), cudaMemcpyDeviceToHost, s), "download");
  if (!p.variantIn)
    SUPCON_CUDA_CHECK(
        cudaMemcpyAsync(positiveMean.data(), posMeanDev, A * sizeof(double), cudaMemcpyDeviceToHost, s), "download");
  SUPCON_RETURN_IF_ERROR(finish(cx));
  if (stats) std::copy(host.begin(), host.end(), stats);
  result->loss = detail::reduceLoss(spec, p, host.data(), positiveMean.data(), perAnchor);
  result->validAnchors = p.validAnchors;
  return Status::ok();
}

// grad [rows, dim] from dz's feature rows; contrastGrad [extraRows, dim] from the rows after them
// when given.
inline Status downloadGrad(CallContext& cx, const float* dz, float* grad, float* contrastGrad) {
  const PreparedLoss& p = cx.dp.p;
  const size_t rowBytes = size_t(p.dim) * sizeof(float), pitch = size_t(cx.dp.ldz) * sizeof(float);
  SUPCON_CUDA_CHECK(cudaMemcpy2DAsync(grad, rowBytes, dz, pitch, rowBytes, size_t(p.rows), cudaMemcpyDeviceToHost,
                                      cx.dp.stream),
                    "download gradient");
  if (contrastGrad && p.extraRows > 0)
    SUPCON_CUDA_CHECK(cudaMemcpy2DAsync(contrastGrad, rowBytes, dz + p.rows * cx.dp.ldz, pitch, rowBytes,
                                        size_t(p.extraRows), cudaMemcpyDeviceToHost, cx.dp.stream),
                      "download contrast gradient");
  return Status::ok();
}

inline Status forward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                      float* stats, ForwardResult* result) {
  CallContext cx;
  SUPCON_RETURN_IF_ERROR(begin(spec, in, run, cx));
  SUPCON_RETURN_IF_ERROR(uploadProblem(spec, in, cx.arena, &cx.dp));
  const int64_t A = cx.dp.p.anchors;
  float4* st = nullptr;
  double* posMean = nullptr;
  SUPCON_RETURN_IF_ERROR(cx.arena.alloc(&st, A, "log-sum-exp statistics"));
  SUPCON_RETURN_IF_ERROR(cx.arena.alloc(&posMean, A, "positive means"));
  SUPCON_RETURN_IF_ERROR(runForward(cx.dp, cx.arena, st, posMean));
  SUPCON_RETURN_IF_ERROR(finishForward(spec, cx, st, posMean, perAnchor, stats, result));
  result->workspaceBytes = cx.workspaceBytes();
  return Status::ok();
}

inline Status backward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, const float* stats,
                       const float* upstream, float* grad, float* contrastGrad, BackwardResult* result) {
  CallContext cx;
  SUPCON_RETURN_IF_ERROR(begin(spec, in, run, cx));
  const PreparedLoss& p = cx.dp.p;
  SUPCON_RETURN_IF_ERROR(uploadProblem(spec, in, cx.arena, &cx.dp));
  const size_t A = size_t(p.anchors);
  const detail::CallVector<float> w = detail::anchorWeights(spec, p, upstream, cx.host);
  float4* st = nullptr;
  float *weight = nullptr, *dz = nullptr;
  const cudaStream_t s = cx.dp.stream;
  static_assert(detail::kStatsPerAnchor * sizeof(float) == sizeof(float4), "one float4 of statistics per anchor");
  SUPCON_RETURN_IF_ERROR(upload(cx.arena, &st, reinterpret_cast<const float4*>(stats), int64_t(A), s, "log-sum-exp statistics"));
  SUPCON_RETURN_IF_ERROR(upload(cx.arena, &weight, w.data(), int64_t(A), s, "anchor weights"));
  const int64_t gradRows = gradientRows(p, contrastGrad);
  SUPCON_RETURN_IF_ERROR(cx.arena.alloc(&dz, gradRows * cx.dp.ldz, "gradient"));
  SUPCON_CUDA_CHECK(cudaMemsetAsync(dz, 0, size_t(gradRows) * cx.dp.ldz * sizeof(float), s), "cudaMemset");
  SUPCON_RETURN_IF_ERROR(runBackward(cx.dp, cx.arena, st, weight, dz, gradRows));
  SUPCON_RETURN_IF_ERROR(downloadGrad(cx, dz, grad, contrastGrad));
  SUPCON_RETURN_IF_ERROR(finish(cx));
  result->workspaceBytes = cx.workspaceBytes();
  return Status::ok();
}

// Forward and backward in one upload (upstream 1, or all ones for kNone), with per-phase timing.
// The benchmark's entry point; also what a caller holding both halves would use.
inline Status forwardBackward(const LossSpec& spec, const LossInputs& in, const RunOptions& run, float* perAnchor,
                              float* grad, float* contrastGrad, ForwardResult* result, PhaseTiming* timing) {
  CallContext cx;
  SUPCON_RETURN_IF_ERROR(begin(spec, in, run, cx));
  const bool timed = timing != nullptr;
  const cudaStream_t s = cx.dp.stream;
  SUPCON_RETURN_IF_ERROR(cx.events.mark(timed, s));
  SUPCON_RETURN_IF_ERROR(uploadProblem(spec, in, cx.arena, &cx.dp));
  const PreparedLoss& p = cx.dp.p;
  const int64_t A = p.anchors;
  const detail::CallVector<float> ones(size_t(spec.reduction == Reduction::kNone ? A : 1), 1.0f,
                                       WorkspaceAllocator<float>(cx.host));
  const detail::CallVector<float> w = detail::anchorWeights(spec, p, ones.data(), cx.host);
  float4* st = nullptr;
  float *weight = nullptr, *dz = nullptr;
  double* posMean = nullptr;
  SUPCON_RETURN_IF_ERROR(cx.arena.alloc(&st, A, "log-sum-exp statistics"));
  SUPCON_RETURN_IF_ERROR(cx.arena.alloc(&posMean, A, "positive means"));
  SUPCON_RETURN_IF_ERROR(upload(cx.arena, &weight, w.data(), A, s, "anchor weights"));
  const int64_t gradRows = gradientRows(p, grad ? contrastGrad : nullptr);
  SUPCON_RETURN_IF_ERROR(cx.arena.alloc(&dz, gradRows * cx.dp.ldz, "gradient"));
  SUPCON_CUDA_CHECK(cudaMemsetAsync(dz, 0, size_t(gradRows) * cx.dp.ldz * sizeof(float), s), "cudaMemset");
  SUPCON_RETURN_IF_ERROR(cx.events.mark(timed, s));
  SUPCON_RETURN_IF_ERROR(runForward(cx.dp, cx.arena, st, posMean));
  SUPCON_RETURN_IF_ERROR(cx.events.mark(timed, s));
  SUPCON_RETURN_IF_ERROR(runBackward(cx.dp, cx.arena, st, weight, dz, gradRows));
  SUPCON_RETURN_IF_ERROR(cx.events.mark(timed, s));
  if (grad) SUPCON_RETURN_IF_ERROR(downloadGrad(cx, dz, grad, contrastGrad));
  SUPCON_RETURN_IF_ERROR(cx.events.mark(timed, s));
  SUPCON_RETURN_IF_ERROR(finishForward(spec, cx, st, posMean, perAnchor, nullptr, result));
  if (timed) {
    timing->uploadMs = cx.events.ms(0, 1);
    timing->forwardMs = cx.events.ms(1, 2);
    timing->backwardMs = cx.events.ms(2, 3);
    timing->downloadMs = cx.events.ms(3, 4);
  }
  result->workspaceBytes = cx.workspaceBytes();
  return Status::ok();
}

}  // namespace SUPCON_CUDA_IMPL_NS
}  // namespace supcon
