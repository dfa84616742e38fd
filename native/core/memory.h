// Aligned, tracked host buffers. Every buffer the core allocates goes through here, so a call
// can report its peak extra memory (ForwardResult::workspaceBytes) from real allocations.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>

namespace supcon {
namespace memory {

// Bytes currently held by core buffers, and the high-water mark since the last resetPeak().
int64_t currentBytes();
int64_t peakBytes();
void resetPeak();

void* allocate(size_t bytes);  // 64-byte aligned; nullptr on failure
void release(void* p, size_t bytes);

}  // namespace memory

// Owning, move-only, 64-byte-aligned array of T (trivial types only). Not zeroed unless asked.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n, bool zero = false) { reset(n, zero); }
  ~Buffer() { free(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) { free(); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
    return *this;
  }
  // Throws std::bad_alloc on failure; entry points catch it and return kOutOfMemory.
  void reset(size_t n, bool zero = false) {
    free();
    if (n == 0) return;
    p_ = static_cast<T*>(memory::allocate(n * sizeof(T)));
    if (!p_) throw std::bad_alloc();
    n_ = n;
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
  void free() { if (p_) memory::release(p_, n_ * sizeof(T)); p_ = nullptr; n_ = 0; }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace supcon
