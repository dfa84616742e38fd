// Per-thread scratch memory of the nn kernels, kept between calls: a fresh multi-megabyte
// buffer costs more in first-touch page faults than the arithmetic that fills it.
#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "memory.h"
#include "nn_internal.h"

namespace supcon {
namespace nn {
namespace detail {
namespace {

struct ThreadScratch {
  Buffer<float> slots[kScratchSlots];
};

// Every thread's scratch, so releaseScratchMemory() can free them all.
struct Registry {
  std::mutex m;
  std::vector<ThreadScratch*> all;
};

Registry& registry() {
  static Registry* r = new Registry();  // leaked on purpose: threads may outlive static destructors
  return *r;
}

struct ThreadScratchHandle {
  ThreadScratch* s = new ThreadScratch();
  ThreadScratchHandle() {
    std::lock_guard<std::mutex> g(registry().m);
    registry().all.push_back(s);
  }
  ~ThreadScratchHandle() {
    std::lock_guard<std::mutex> g(registry().m);
    auto& all = registry().all;
    all.erase(std::remove(all.begin(), all.end(), s), all.end());
    delete s;
  }
};

}  // namespace

float* scratch(int slot, size_t count) {
  thread_local ThreadScratchHandle handle;
  Buffer<float>& b = handle.s->slots[slot];
  b.ensure(count);
  return b.data();
}

}  // namespace detail

void releaseScratchMemory() {
  detail::Registry& r = detail::registry();
  std::lock_guard<std::mutex> g(r.m);
  for (detail::ThreadScratch* s : r.all)
    for (auto& b : s->slots) b.reset(0);
}

}  // namespace nn
}  // namespace supcon
