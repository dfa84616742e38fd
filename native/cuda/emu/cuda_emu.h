// A CPU emulator of the small subset of CUDA that the supcon kernels use, so that the kernel
// source itself (tiling, indexing, barriers, splits, epilogues, wmma usage) runs and is tested
// on machines without a GPU. It is a test tool: nothing in the library links it.
//
// Model:
//  - every CUDA thread of a block is a fiber (ucontext) with its own stack; blocks run one after
//    another on one OS thread. __syncthreads() is a real barrier: a fiber runs until it reaches
//    one, and the block continues only when every thread of the block has arrived. A barrier that
//    not all threads reach (divergence, early exit) aborts with a message.
//  - the order in which fibers run between barriers rotates (forward, reverse, shuffled), so a
//    missing barrier between a shared-memory write and a read by another thread shows up as a
//    wrong result instead of passing by luck of ordering.
//  - warp shuffles exchange through per-warp slots with warp-level barriers.
//  - dynamic shared memory is a fresh heap block per thread block, filled with 0xFF bytes (NaN
//    as float) so that reads of never-written shared memory poison the result.
//  - wmma fragments hold the whole 16x16 tile in every lane (the real layout is opaque anyway);
//    loads check the documented pointer (32-byte) and ldm (16-byte multiple) requirements, and
//    mma on tf32 inputs truncates the low 13 mantissa bits as the hardware does.
//  - device memory is host memory with a byte counter; a limit turns into
//    cudaErrorMemoryAllocation, and a "no device" switch makes the runtime answer like a machine
//    without a GPU.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define SUPCON_UNROLL

// Every emulated CUDA name lives in supcon_emu_api (made visible inside namespace supcon at the
// end), so that a test binary can link the real CUDA objects too without symbol clashes.
namespace supcon_emu_api {

// ---- basic vector types ------------------------------------------------------------------
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- bfloat16 ----------------------------------------------------------------------------
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return __nv_bfloat16{0x7fc0};
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) {
  uint32_t u = uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- runtime types -----------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorStubLibrary = 34,
  cudaErrorInsufficientDriver = 35,
  cudaErrorDevicesUnavailable = 46,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorLaunchFailure = 719,
  cudaErrorSystemDriverMismatch = 803,
  cudaErrorCompatNotSupportedOnDevice = 804,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
struct CUstream_st;
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
constexpr unsigned cudaStreamNonBlocking = 1;

struct cudaDeviceProp {
  char name[256];
  int major = 0, minor = 0;
  size_t totalGlobalMem = 0;
  int multiProcessorCount = 0;
  size_t sharedMemPerBlockOptin = 0;
};

}  // namespace supcon_emu_api

namespace supcon_emu {
using namespace ::supcon_emu_api;

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda emulator: %s\n", what);
  std::abort();
}

struct Config {
  bool deviceAbsent = false;                 // answer like a machine without a GPU
  int multiProcessors = 3;                   // small, so that column splits get exercised
  int major = 8, minor = 0;                  // compute capability reported
  size_t sharedMemPerBlockOptin = 99 * 1024; // the tightest sm_80+ part (sm_86/89)
  size_t memoryLimit = size_t(1) << 30;      // cudaMalloc fails past this many live bytes
};
inline Config& config() {
  static Config c;
  return c;
}

struct State {
  cudaError_t lastError = cudaSuccess;
  size_t liveBytes = 0, peakBytes = 0;
  std::map<void*, size_t> allocations;
  std::map<const void*, int> maxDynamicSmem;
  int64_t launches = 0;
  size_t hostToDeviceBytes = 0;  // bytes uploaded (tests check that a call uploads its inputs once)
};
inline State& state() {
  static State s;
  return s;
}

// ---- fibers ------------------------------------------------------------------------------
enum class FiberState { kReady, kBlockBarrier, kWarpBarrier, kDone };

struct Scheduler {
  static constexpr size_t kStackBytes = 256 * 1024;
  ucontext_t mainContext;
  std::vector<ucontext_t> contexts;
  std::vector<FiberState> states;
  std::vector<char*> stacks;
  int current = -1;
  int threads = 0;
  const std::function<void()>* body = nullptr;
  unsigned char* smem = nullptr;
  unsigned char exchange[32][32][8];  // shuffle slots [warp][lane]
  uint64_t rounds = 0;
  ~Scheduler() {
    for (char* s : stacks) std::free(s);
  }
};
inline Scheduler& scheduler() {
  static Scheduler s;
  return s;
}

inline void setThreadIndex(int linear) {
  threadIdx.x = unsigned(linear) % blockDim.x;
  threadIdx.y = (unsigned(linear) / blockDim.x) % blockDim.y;
  threadIdx.z = unsigned(linear) / (blockDim.x * blockDim.y);
}

inline int linearThread() { return int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }

inline void yieldWith(FiberState why) {
  Scheduler& s = scheduler();
  if (s.current < 0) fail("barrier outside a kernel");
  const int me = s.current;
  s.states[me] = why;
  swapcontext(&s.contexts[me], &s.mainContext);
  setThreadIndex(me);  // the scheduler ran other fibers meanwhile
}

inline void fiberEntry() {
  Scheduler& s = scheduler();
  (*s.body)();
  s.states[s.current] = FiberState::kDone;
  // returning resumes uc_link (the scheduler)
}

inline unsigned char* dynamicSmem() {
  if (!scheduler().smem) fail("dynamic shared memory used by a kernel launched with none");
  return scheduler().smem;
}

inline void runBlock(int threads) {
  Scheduler& s = scheduler();
  if (int(s.stacks.size()) < threads) {
    s.contexts.resize(threads);
    while (int(s.stacks.size()) < threads) {
      char* st = static_cast<char*>(std::malloc(Scheduler::kStackBytes));
      if (!st) fail("out of host memory for fiber stacks");
      s.stacks.push_back(st);
    }
  }
  s.states.assign(threads, FiberState::kReady);
  s.threads = threads;
  for (int t = 0; t < threads; ++t) {
    getcontext(&s.contexts[t]);
    s.contexts[t].uc_stack.ss_sp = s.stacks[t];
    s.contexts[t].uc_stack.ss_size = Scheduler::kStackBytes;
    s.contexts[t].uc_link = &s.mainContext;
    makecontext(&s.contexts[t], fiberEntry, 0);
  }
  std::vector<int> order(threads);
  const int warps = (threads + 31) / 32;
  for (;;) {
    // Run every ready fiber until it blocks or finishes; the order rotates between rounds.
    for (int i = 0; i < threads; ++i) order[i] = i;
    const uint64_t r = s.rounds++;
    if (r % 3 == 1) std::reverse(order.begin(), order.end());
    if (r % 3 == 2) {
      uint64_t x = r * 0x9E3779B97F4A7C15ull + 1;
      for (int i = threads - 1; i > 0; --i) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
        std::swap(order[i], order[int((x * 0x2545F4914F6CDD1Dull) % uint64_t(i + 1))]);
      }
    }
    for (int i : order) {
      if (s.states[i] != FiberState::kReady) continue;
      s.current = i;
      setThreadIndex(i);
      swapcontext(&s.mainContext, &s.contexts[i]);
    }
    s.current = -1;
    // Release warps whose lanes all wait at a warp barrier.
    bool released = false;
    for (int w = 0; w < warps; ++w) {
      const int lo = w * 32, hi = std::min(threads, lo + 32);
      bool all = true, any = false;
      for (int t = lo; t < hi; ++t) {
        all = all && s.states[t] == FiberState::kWarpBarrier;
        any = any || s.states[t] == FiberState::kWarpBarrier;
      }
      if (all) {
        for (int t = lo; t < hi; ++t) s.states[t] = FiberState::kReady;
        released = true;
      } else if (any) {
        for (int t = lo; t < hi; ++t)
          if (s.states[t] == FiberState::kDone || s.states[t] == FiberState::kBlockBarrier)
            fail("warp-level barrier (shuffle/__syncwarp) not reached by every lane of the warp");
      }
    }
    if (released) continue;
    int done = 0, atBarrier = 0;
    for (int t = 0; t < threads; ++t) {
      done += s.states[t] == FiberState::kDone;
      atBarrier += s.states[t] == FiberState::kBlockBarrier;
    }
    if (done == threads) return;
    if (atBarrier == threads) {
      for (int t = 0; t < threads; ++t) s.states[t] = FiberState::kReady;
      continue;
    }
    fail("__syncthreads() not reached by every thread of the block");
  }
}

inline void launch(const void* kernel, dim3 grid, dim3 block, size_t smemBytes, const std::function<void()>& body) {
  State& st = state();
  ++st.launches;
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  int allowed = 48 * 1024;
  auto it = st.maxDynamicSmem.find(kernel);
  if (it != st.maxDynamicSmem.end()) allowed = std::max(allowed, it->second);
  if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
      grid.z > 65535 || smemBytes > size_t(allowed)) {
    st.lastError = cudaErrorInvalidConfiguration;
    return;
  }
  Scheduler& s = scheduler();
  blockDim = block;
  gridDim = grid;
  s.body = &body;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = dim3(x, y, z);
        s.smem = nullptr;
        if (smemBytes) {
          s.smem = static_cast<unsigned char*>(std::aligned_alloc(128, (smemBytes + 127) / 128 * 128));
          if (!s.smem) fail("out of host memory for shared memory");
          std::memset(s.smem, 0xFF, smemBytes);
        }
        runBlock(int(threads));
        std::free(s.smem);
        s.smem = nullptr;
      }
  s.body = nullptr;
}

}  // namespace supcon_emu

namespace supcon_emu_api {

// ---- device-side intrinsics --------------------------------------------------------------
inline void __syncthreads() { supcon_emu::yieldWith(supcon_emu::FiberState::kBlockBarrier); }
inline void __syncwarp(unsigned = 0xffffffffu) { supcon_emu::yieldWith(supcon_emu::FiberState::kWarpBarrier); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  if (mask != 0xffffffffu) supcon_emu::fail("only full-warp shuffles are emulated");
  auto& s = supcon_emu::scheduler();
  const int tid = supcon_emu::linearThread(), warp = tid / 32, lane = tid % 32;
  std::memcpy(s.exchange[warp][lane], &v, sizeof(T));
  __syncwarp();
  const int src = (lane & ~(width - 1)) | ((lane ^ laneMask) & (width - 1));
  T out;
  std::memcpy(&out, s.exchange[warp][src], sizeof(T));
  __syncwarp();
  return out;
}

inline float atomicAdd(float* p, float v) {
  float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  double old = *p;
  *p = old + v;
  return old;
}

// ---- runtime API -------------------------------------------------------------------------
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidValue: return "invalid argument";
    default: return "emulated CUDA error";
  }
}
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    default: return "cudaErrorUnknown";
  }
}
inline cudaError_t cudaGetLastError() {
  cudaError_t e = supcon_emu::state().lastError;
  supcon_emu::state().lastError = cudaSuccess;
  return e;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  if (supcon_emu::config().deviceAbsent) {
    *n = 0;
    return cudaErrorNoDevice;
  }
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  if (supcon_emu::config().deviceAbsent) return cudaErrorNoDevice;
  return d == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (supcon_emu::config().deviceAbsent) return cudaErrorNoDevice;
  if (d != 0) return cudaErrorInvalidDevice;
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "supcon CUDA emulator");
  p->major = supcon_emu::config().major;
  p->minor = supcon_emu::config().minor;
  p->totalGlobalMem = supcon_emu::config().memoryLimit;
  p->multiProcessorCount = supcon_emu::config().multiProcessors;
  p->sharedMemPerBlockOptin = supcon_emu::config().sharedMemPerBlockOptin;
  return cudaSuccess;
}
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  auto& st = supcon_emu::state();
  if (supcon_emu::config().deviceAbsent) return cudaErrorNoDevice;
  if (st.liveBytes + bytes > supcon_emu::config().memoryLimit) return cudaErrorMemoryAllocation;
  void* m = std::aligned_alloc(256, std::max<size_t>(256, (bytes + 255) / 256 * 256));
  if (!m) return cudaErrorMemoryAllocation;
  std::memset(m, 0xFF, bytes);  // fresh device memory is garbage, not zeros
  st.allocations[m] = bytes;
  st.liveBytes += bytes;
  st.peakBytes = std::max(st.peakBytes, st.liveBytes);
  *p = static_cast<T*>(m);
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  auto& st = supcon_emu::state();
  auto it = st.allocations.find(p);
  if (it == st.allocations.end()) supcon_emu::fail("cudaFree of a pointer cudaMalloc did not return");
  st.liveBytes -= it->second;
  st.allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* total) {
  *total = supcon_emu::config().memoryLimit;
  *freeBytes = *total - supcon_emu::state().liveBytes;
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t = nullptr) {
  if (bytes) std::memcpy(dst, src, bytes);
  if (k == cudaMemcpyHostToDevice) supcon_emu::state().hostToDeviceBytes += bytes;
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k) {
  return cudaMemcpyAsync(dst, src, bytes, k);
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                     size_t height, cudaMemcpyKind k, cudaStream_t = nullptr) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidValue;
  for (size_t r = 0; r < height; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  if (k == cudaMemcpyHostToDevice) supcon_emu::state().hostToDeviceBytes += width * height;
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t = nullptr) {
  std::memset(p, v, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = reinterpret_cast<cudaStream_t>(uintptr_t(1));
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st();
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute, int value) {
  supcon_emu::state().maxDynamicSmem[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}

// ---- wmma --------------------------------------------------------------------------------
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}

template <typename T> struct StorageOf { using type = T; };
template <> struct StorageOf<precision::tf32> { using type = float; };

template <typename Use, int M, int N, int K> struct Shape;
template <int M, int N, int K> struct Shape<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct Shape<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct Shape<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

// Every lane holds the whole tile: x[row * cols + col].
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  using storage_element_type = typename StorageOf<T>::type;
  static constexpr int rows = Shape<Use, M, N, K>::rows, cols = Shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  storage_element_type x[num_elements];
};

inline void checkOperand(const void* p, unsigned ldm, size_t elementBytes) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) supcon_emu::fail("wmma pointer not 256-bit aligned");
  if ((size_t(ldm) * elementBytes) % 16 != 0) supcon_emu::fail("wmma ldm not a multiple of 16 bytes");
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, Layout>;
  static_assert(sizeof(P) == sizeof(typename F::storage_element_type), "element type");
  checkOperand(p, ldm, sizeof(P));
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) {
      const P& v = std::is_same<Layout, col_major>::value ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c];
      std::memcpy(&f.x[r * F::cols + c], &v, sizeof(P));
    }
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t l) {
  checkOperand(p, ldm, 4);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) f.x[r * N + c] = l == mem_col_major ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c];
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t l) {
  checkOperand(p, ldm, 4);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (l == mem_col_major ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c]) = f.x[r * N + c];
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, V v) {
  for (auto& e : f.x) e = static_cast<typename fragment<Use, M, N, K, T, Layout>::storage_element_type>(v);
}

inline float operandValue(float v) {  // tf32 operands: the hardware ignores the low 13 bits
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u &= ~0x1fffu;
  std::memcpy(&v, &u, 4);
  return v;
}
inline float operandValue(__nv_bfloat16 v) { return __bfloat162float(v); }

template <int M, int N, int K, typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; ++k) acc += operandValue(a.x[i * K + k]) * operandValue(b.x[k * N + j]);
      out[i * N + j] = acc;
    }
  std::memcpy(d.x, out, sizeof out);
}

inline float __float_to_tf32(float v) {  // cvt.rna.tf32.f32: round to nearest, ties away
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&v, &u, 4);
  return v;
}
}  // namespace wmma
}  // namespace nvcuda

}  // namespace supcon_emu_api

namespace supcon {
using namespace ::supcon_emu_api;
}

// ---- what the portability layer maps to ---------------------------------------------------
#define SUPCON_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(supcon_emu::dynamicSmem())
#define SUPCON_LAUNCH(kernel, grid, block, smem, stream, ...)                                         \
  do {                                                                                               \
    (void)(stream);                                                                                  \
    ::supcon_emu::launch(reinterpret_cast<const void*>(kernel), grid, block, smem,                   \
                         [&]() { kernel(__VA_ARGS__); });                                            \
  } while (0)
// exp of the kernels' hot loops (__expf on the GPU).
#define SUPCON_FAST_EXP(x) std::exp(x)
