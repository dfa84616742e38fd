#include "simd.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace supcon {
namespace {

bool cpuHas(const char* isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (std::strcmp(isa, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("fma");
  if (std::strcmp(isa, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return std::strcmp(isa, "generic") == 0;
}

const KernelTable& select() {
  if (const char* forced = std::getenv("SUPCON_SIMD")) {
    if (const KernelTable* t = kernelsByName(forced)) return *t;
  }
  for (const char* name : {"avx512", "avx2", "generic"})
    if (const KernelTable* t = kernelsByName(name)) return *t;
  return isa_generic::table();
}

}  // namespace

const KernelTable* kernelsByName(const char* name) {
#if defined(SUPCON_HAVE_X86_KERNELS)
  if (std::strcmp(name, "avx512") == 0) return cpuHas("avx512") ? &isa_avx512::table() : nullptr;
  if (std::strcmp(name, "avx2") == 0) return cpuHas("avx2") ? &isa_avx2::table() : nullptr;
#endif
  if (std::strcmp(name, "generic") == 0) return &isa_generic::table();
  (void)cpuHas;
  return nullptr;
}

const KernelTable& kernels() {
  static const KernelTable& t = select();
  return t;
}

}  // namespace supcon
