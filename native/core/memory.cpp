#include "memory.h"

#include <atomic>
#include <cstdlib>

namespace supcon {
namespace memory {
namespace {
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
}  // namespace

int64_t currentBytes() { return g_current.load(); }
int64_t peakBytes() { return g_peak.load(); }
void resetPeak() { g_peak.store(g_current.load()); }

void* allocate(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) return nullptr;
  int64_t now = g_current.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void release(void* p, size_t bytes) {
  std::free(p);
  g_current.fetch_sub(static_cast<int64_t>(bytes));
}

}  // namespace memory
}  // namespace supcon
