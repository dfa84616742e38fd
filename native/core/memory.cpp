#include "memory.h"

#include <atomic>
#include <cstdlib>

namespace supcon {
namespace memory {
namespace {
std::atomic<int64_t> g_current{0};
}  // namespace

int64_t currentBytes() { return g_current.load(); }

void* allocate(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) return nullptr;
  g_current.fetch_add(static_cast<int64_t>(bytes));
  return p;
}

void release(void* p, size_t bytes) {
  std::free(p);
  g_current.fetch_sub(static_cast<int64_t>(bytes));
}

}  // namespace memory
}  // namespace supcon
