// CUDA unified (managed) memory as the process's memory space (base/buffer.h), so one Buffer is
// readable by the host (after Backend::Synchronize) and by the CUDA backend's kernels alike.
// kernels:backend_factory switches the process to it when it creates a CUDA backend. With
// SetCudaMemoryDeviceOnly (config cuda.memory: DEVICE) the same cache hands out device memory
// instead, which the host must not touch: the trainer then moves data only with the backend's copies.
//
// Allocation is cudaMallocManaged behind a caching layer: the model allocates per-call temporaries,
// and cudaFree synchronises the whole device, so freed blocks go to a free list (keyed by size
// class: powers of two up to 1 MiB, multiples of 2 MiB above) and are handed out again; nothing is
// returned to CUDA during the run, except that a failed cudaMallocManaged first releases every
// cached block (after synchronising the device) and tries once more. Blocks up to 1 MiB are carved
// from 2 MiB managed slabs, so small tensors do not each cost a CUDA allocation. Thread-safe.
//
// A cap: managed memory may be oversubscribed, but past the device's memory it pages between host
// and device, which is slow and can leave the GPU hung. So the cache reserves at most the device's
// memory less a margin (CudaUnifiedMemoryCapacity) for the context and the plain cudaMallocs (cuBLASLt
// workspace, scratch, NCCL). An allocation past it (after releasing the cache) prints what was asked,
// what is held and the cap on stderr, and fails: the Buffer throws std::bad_alloc.
//
// A freed block may be handed out again at once. Kernels on the backend's stream run in order, so
// reuse by later ops is safe (the side streams of the grouped GEMM and the NCCL communication streams
// are forked from and joined back into it by events, so their work is ordered with it too); but host code must not write into a NEW Buffer while an op that
// used memory freed before it was allocated may still be running: Synchronize first.
//
// New memory is not poisoned (poison_on_host = false): touching it from the host would migrate
// every page to the host only to move it back to the GPU at the first kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/buffer.h"

namespace moe::kernels {

const MemorySpace& CudaUnifiedMemorySpace();

struct UnifiedMemoryStats {
  size_t bytes_in_use = 0;       // size classes of the blocks handed out now
  size_t bytes_cached = 0;       // freed blocks held for reuse
  size_t peak_bytes_in_use = 0;  // high-water mark of bytes_in_use
  size_t bytes_reserved = 0;     // held from CUDA: in use + cached
  int64_t cuda_allocations = 0;  // cudaMallocManaged calls that succeeded (cache misses)
};
UnifiedMemoryStats CudaUnifiedMemoryStats();
// Whether the cache's new CUDA allocations are device memory (cudaMalloc: no page migration, but the
// host cannot touch it; the trainer moves data only with Backend::CopyFromHost / CopyToHost) or
// managed memory (the default). Blocks already cached keep what they are.
void SetCudaMemoryDeviceOnly(bool device_only);
// The bytes the cache may reserve on the current device: its memory less max(2 GiB, 1/32 of it).
size_t CudaUnifiedMemoryCapacity();
// Starts a new high-water mark: peak_bytes_in_use = bytes_in_use (a step's peak, say).
void ResetCudaUnifiedMemoryPeak();

}  // namespace moe::kernels
