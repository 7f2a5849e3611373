// The caching allocator behind CudaUnifiedMemorySpace (see unified_memory.h).
#include "kernels/cuda/unified_memory.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace moe::kernels {
namespace {

constexpr size_t kMinBlock = 256;                  // smallest class (cuBLASLt's preferred alignment)
constexpr size_t kSmallLimit = size_t{1} << 20;    // classes up to 1 MiB are powers of two,
constexpr size_t kLargeGranule = size_t{2} << 20;  // larger ones multiples of 2 MiB
constexpr size_t kSlabBytes = size_t{2} << 20;     // small classes are carved from 2 MiB slabs

size_t SizeClass(size_t bytes) {
  if (bytes > kSmallLimit) return (bytes + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
  size_t c = kMinBlock;
  while (c < bytes) c <<= 1;
  return c;
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by size class
  UnifiedMemoryStats stats;
  bool device_only = false;  // new allocations by cudaMalloc instead of cudaMallocManaged

  // Hands cached blocks of the large classes (each its own CUDA allocation) back to CUDA. Slab
  // pieces stay: their slab may be partly in use.
  void ReleaseLargeBlocks() {
    cudaDeviceSynchronize();  // cudaFree would wait anyway; do it once
    for (auto& [cls, blocks] : free_blocks) {
      if (cls <= kSmallLimit) continue;
      for (void* p : blocks) {
        if (cudaFree(p) != cudaSuccess) continue;
        stats.bytes_cached -= cls;
        stats.bytes_reserved -= cls;
      }
      blocks.clear();
    }
    cudaGetLastError();
  }

  // `bytes` of managed memory from CUDA within the cap, or nullptr (after one retry with the cache
  // released, and a message on stderr).
  void* CudaAllocate(size_t bytes) {
    const size_t capacity = CudaUnifiedMemoryCapacity();
    bool over_cap = false;
    for (int attempt = 0; attempt < 2; ++attempt) {
      void* p = nullptr;
      over_cap = stats.bytes_reserved + bytes > capacity;
      if (!over_cap) {
        const cudaError_t err = device_only ? cudaMalloc(&p, bytes) : cudaMallocManaged(&p, bytes, cudaMemAttachGlobal);
        if (err == cudaSuccess) {
          ++stats.cuda_allocations;
          stats.bytes_reserved += bytes;
          return p;
        }
        cudaGetLastError();  // so the next launch check does not report this failure
      }
      if (attempt == 0) ReleaseLargeBlocks();
    }
    std::fprintf(stderr,
                 "moe: CUDA memory: cannot allocate %.1f MB (%s): tensors hold %.1f MB, %.1f MB more is cached, "
                 "of the %.1f MB this device allows (its memory less a margin for the CUDA context, cuBLASLt, "
                 "scratch and NCCL). A smaller batch.micro_batch_size or batch.seq_len, "
                 "activation_recompute: true, or more GPUs (parallel.tp / parallel.ep) would fit.\n",
                 bytes / 1e6, over_cap ? "past that cap" : device_only ? "cudaMalloc failed" : "cudaMallocManaged failed",
                 stats.bytes_in_use / 1e6,
                 stats.bytes_cached / 1e6, capacity / 1e6);
    std::fflush(stderr);
    return nullptr;
  }

  void* Allocate(size_t bytes) {
    const size_t cls = SizeClass(bytes);
    std::lock_guard<std::mutex> lock(mu);
    std::vector<void*>& blocks = free_blocks[cls];
    if (blocks.empty()) {
      const size_t fresh = cls <= kSmallLimit ? kSlabBytes : cls;
      char* p = static_cast<char*>(CudaAllocate(fresh));
      if (p == nullptr) return nullptr;
      for (size_t off = fresh; off >= cls; off -= cls) blocks.push_back(p + off - cls);
      stats.bytes_cached += fresh;
    }
    void* p = blocks.back();
    blocks.pop_back();
    stats.bytes_cached -= cls;
    stats.bytes_in_use += cls;
    stats.peak_bytes_in_use = std::max(stats.peak_bytes_in_use, stats.bytes_in_use);
    return p;
  }

  void Deallocate(void* p, size_t bytes) {
    if (p == nullptr) return;
    const size_t cls = SizeClass(bytes);
    std::lock_guard<std::mutex> lock(mu);
    free_blocks[cls].push_back(p);
    stats.bytes_in_use -= cls;
    stats.bytes_cached += cls;
  }
};

// Never destroyed: Buffers with static lifetime may be freed after it would have been.
Cache& TheCache() {
  static Cache* cache = new Cache;
  return *cache;
}

void* Allocate(size_t bytes) { return TheCache().Allocate(bytes); }
void Deallocate(void* p, size_t bytes) { TheCache().Deallocate(p, bytes); }

}  // namespace

const MemorySpace& CudaUnifiedMemorySpace() {
  static const MemorySpace space{"cuda_unified", &Allocate, &Deallocate, false};
  return space;
}

size_t CudaUnifiedMemoryCapacity() {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return SIZE_MAX;  // no answer: no cap (cudaMallocManaged still fails when memory runs out)
  }
  const size_t margin = std::max(size_t{2} << 30, total_bytes / 32);
  return total_bytes > margin ? total_bytes - margin : 0;
}

UnifiedMemoryStats CudaUnifiedMemoryStats() {
  Cache& cache = TheCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  return cache.stats;
}

void SetCudaMemoryDeviceOnly(bool device_only) {
  Cache& cache = TheCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  cache.device_only = device_only;
}

void ResetCudaUnifiedMemoryPeak() {
  Cache& cache = TheCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  cache.stats.peak_bytes_in_use = cache.stats.bytes_in_use;
}

}  // namespace moe::kernels
