// Aligned, tracked host buffers. Every buffer the core allocates goes through here: the process
// total (currentBytes, which the leak tests watch) and, for buffers bound to a Workspace, the
// bytes of one call, so a call reports its own peak (ForwardResult::workspaceBytes) from real
// allocations, whatever runs beside it.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace supcon {
namespace memory {

// Bytes currently held by core buffers, process-wide.
int64_t currentBytes();

void* allocate(size_t bytes);  // 64-byte aligned; nullptr on failure
void release(void* p, size_t bytes);

}  // namespace memory

// The memory of one call: every buffer bound to it (from any thread of the call) adds to its
// current and peak bytes.
class Workspace {
 public:
  void add(int64_t bytes) {
    const int64_t now = current_.fetch_add(bytes) + bytes;
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }
  void remove(int64_t bytes) { current_.fetch_sub(bytes); }
  int64_t peakBytes() const { return peak_.load(); }

 private:
  std::atomic<int64_t> current_{0}, peak_{0};
};

// A std::allocator that counts into a Workspace, for the standard containers of a call.
template <typename T>
struct WorkspaceAllocator {
  using value_type = T;
  Workspace* workspace;
  explicit WorkspaceAllocator(Workspace& w) : workspace(&w) {}
  template <typename U>
  WorkspaceAllocator(const WorkspaceAllocator<U>& o) : workspace(o.workspace) {}
  T* allocate(size_t n) {
    void* p = memory::allocate(n * sizeof(T));
    if (!p) throw std::bad_alloc();
    workspace->add(static_cast<int64_t>(n * sizeof(T)));
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    memory::release(p, n * sizeof(T));
    workspace->remove(static_cast<int64_t>(n * sizeof(T)));
  }
  template <typename U>
  bool operator==(const WorkspaceAllocator<U>& o) const { return workspace == o.workspace; }
  template <typename U>
  bool operator!=(const WorkspaceAllocator<U>& o) const { return workspace != o.workspace; }
};

// Owning, move-only, 64-byte-aligned array of T (trivial types only). Not zeroed unless asked.
// Bound to a Workspace (the constructors taking one), its allocations count into that call.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n, bool zero = false) { reset(n, zero); }
  explicit Buffer(Workspace& w) : ws_(&w) {}
  Buffer(size_t n, Workspace& w, bool zero = false) : ws_(&w) { reset(n, zero); }
  ~Buffer() { free(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_), ws_(o.ws_) { o.p_ = nullptr; o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) { free(); p_ = o.p_; n_ = o.n_; ws_ = o.ws_; o.p_ = nullptr; o.n_ = 0; }
    return *this;
  }
  // Throws std::bad_alloc on failure; entry points catch it and return kOutOfMemory.
  void reset(size_t n, bool zero = false) {
    free();
    if (n == 0) return;
    p_ = static_cast<T*>(memory::allocate(n * sizeof(T)));
    if (!p_) throw std::bad_alloc();
    n_ = n;
    if (ws_) ws_->add(static_cast<int64_t>(n * sizeof(T)));
    if (zero) for (size_t i = 0; i < n; ++i) p_[i] = T();
  }
  // Grows (never shrinks) without keeping contents.
  void ensure(size_t n) { if (n > n_) reset(n); }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return p_[i]; }
  const T& operator[](size_t i) const { return p_[i]; }

 private:
  void free() {
    if (p_) {
      memory::release(p_, n_ * sizeof(T));
      if (ws_) ws_->remove(static_cast<int64_t>(n_ * sizeof(T)));
    }
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
  Workspace* ws_ = nullptr;
};

}  // namespace supcon
