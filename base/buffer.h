// Buffer<T>: the storage of every tensor the op backends read and write (parameters, gradients,
// optimizer state, activations). Unlike std::vector it lives in the process's memory space: host
// memory by default, CUDA unified memory once the CUDA backend is created (kernels/cuda), so the same
// model code runs on either backend.
//
// Rules (docs/architecture.md "Memory"):
//  - Contents are UNDEFINED after construction or growth; nothing is zero-filled. The host space fills
//    new memory with 0xFF bytes (NaN floats, -1 integers), so an op that reads before anything wrote
//    shows up as NaN in every CPU test instead of passing by luck on zero pages.
//  - resize() keeps the allocation when it shrinks or stays within capacity, and does NOT preserve
//    the contents when it grows. Buffers move but do not copy: copying tensor data is an op
//    (Backend::Copy), which runs where the data lives.
//  - Host code may touch a buffer that an op wrote only after Backend::Synchronize() (ops may run
//    asynchronously on a device stream); Backend::CopyFromHost / CopyToHost move data in and out in
//    op order without one (the training step's way).
// Each Buffer remembers the space it was allocated from, so switching spaces is always safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace moe {

struct MemorySpace {
  const char* name = "host";
  void* (*allocate)(size_t bytes) = nullptr;  // nullptr on failure
  void (*deallocate)(void* p, size_t bytes) = nullptr;
  bool poison_on_host = false;  // fill new memory with 0xFF from the host
};

namespace buffer_internal {
inline void* HostAllocate(size_t bytes) {
  return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
}
inline void HostDeallocate(void* p, size_t) { std::free(p); }
inline const MemorySpace kHost{"host", &HostAllocate, &HostDeallocate, true};
inline std::atomic<const MemorySpace*> current{&kHost};
}  // namespace buffer_internal

inline const MemorySpace& HostMemorySpace() { return buffer_internal::kHost; }
inline const MemorySpace& CurrentMemorySpace() { return *buffer_internal::current.load(); }
// New Buffers allocate from `space` (which must outlive them); existing ones keep theirs.
inline void SetMemorySpace(const MemorySpace& space) { buffer_internal::current.store(&space); }

template <typename T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds plain numbers");

 public:
  using value_type = T;

  Buffer() = default;
  explicit Buffer(int64_t n) { resize(n); }
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer(std::move(o)).swap(*this);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Contents undefined when n exceeds the capacity (see the rules above). A buffer that has to grow
  // again (e.g. expert rows that vary with the routing) grows by at least a quarter, so a caching
  // device allocator sees a few sizes, not one per step.
  void resize(int64_t n) {
    if (n > capacity_) {
      const int64_t want = capacity_ > 0 ? std::max(n, capacity_ + capacity_ / 4) : n;
      reset();
      const MemorySpace& space = CurrentMemorySpace();
      const size_t bytes = static_cast<size_t>(want) * sizeof(T);
      void* p = space.allocate(bytes);
      if (p == nullptr) throw std::bad_alloc();
      if (space.poison_on_host) std::memset(p, 0xFF, bytes);
      data_ = static_cast<T*>(p);
      space_ = &space;
      capacity_ = want;
    }
    size_ = n;
  }
  // Frees the memory.
  void reset() {
    if (data_ != nullptr) space_->deallocate(data_, static_cast<size_t>(capacity_) * sizeof(T));
    data_ = nullptr;
    space_ = nullptr;
    size_ = capacity_ = 0;
  }
  // Host-side fill from host values (only on a synchronised buffer).
  void AssignFromHost(const T* src, int64_t n) {
    resize(n);
    if (n > 0) std::memcpy(data_, src, static_cast<size_t>(n) * sizeof(T));
  }
  void swap(Buffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(space_, o.space_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  T* data_ = nullptr;
  const MemorySpace* space_ = nullptr;
  int64_t size_ = 0;
  int64_t capacity_ = 0;
};

}  // namespace moe
