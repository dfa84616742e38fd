// The one place where the kernels meet the CUDA toolchain. Real builds (nvcc) get the CUDA
// headers; the CPU emulator build (SUPCON_CUDA_EMULATION, tests only) gets emu/cuda_emu.h, which
// provides the same names, so the kernel and host-orchestration source is shared verbatim.
#pragma once

#if defined(SUPCON_CUDA_EMULATION)
#include "emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#define SUPCON_UNROLL _Pragma("unroll")
// Dynamic shared memory of a kernel, as a typed pointer (16-byte aligned for float4 and wmma).
#define SUPCON_DYNAMIC_SMEM(T, name)                                     \
  extern __shared__ __align__(128) unsigned char supconDynamicSmem[]; \
  T* name = reinterpret_cast<T*>(supconDynamicSmem)
// kernel must be a plain name (a function pointer variable for template instances).
#define SUPCON_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
// exp of the kernels' hot loops: ex2.approx with a multiply, relative error ~2^-21 over the
// range the loss uses (arguments <= 0), far inside the 1e-5 loss tolerance.
#define SUPCON_FAST_EXP(x) __expf(x)
#endif

// Namespaces of the kernels and of the host orchestration: distinct in the emulator build so
// that a test binary can hold both the emulated and the real implementation.
// A kernel development file (dev/) picks its own names before including anything.
#if !defined(SUPCON_KERNEL_NS)
#if defined(SUPCON_CUDA_EMULATION)
#define SUPCON_KERNEL_NS cuda_kernels_emu
#else
#define SUPCON_KERNEL_NS cuda_kernels
#endif
#endif
#if !defined(SUPCON_CUDA_IMPL_NS)
#if defined(SUPCON_CUDA_EMULATION)
#define SUPCON_CUDA_IMPL_NS cuda_emu
#else
#define SUPCON_CUDA_IMPL_NS cuda_impl
#endif
#endif

// Tensor-core (wmma tf32/bf16) code exists only for sm_80 and newer device passes; the host
// never launches those kernels on older devices (docs/cuda.md, "Precision").
#if defined(SUPCON_CUDA_EMULATION) || !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SUPCON_HAS_TENSOR_CORES 1
#else
#define SUPCON_HAS_TENSOR_CORES 0
#endif
