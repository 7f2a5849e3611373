// Device-side helpers shared by the backend's .cu files: launch sizing, warp and block reductions.
// Reductions combine values in a fixed tree over fixed thread positions, so for a fixed launch shape
// every result is the same bits on every run (no atomics, no dependence on scheduling).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_check.h"

namespace moe::kernels::cuda {

inline constexpr int kThreads = 256;        // default block size of elementwise kernels
inline constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops cap the grid here

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n items with `threads` per block.
inline unsigned GridFor(int64_t n, int threads = kThreads) {
  int64_t blocks = CeilDiv(n, threads);
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned>(blocks);
}

__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GlobalStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Element i of a ValuesIn on the device, one reader per form: kernels are templated on the reader and
// launched through WithReader, so each form compiles to its own plain loads.
struct ReadF32 {
  const float* p;
  __device__ __forceinline__ float operator()(int64_t i) const { return p[i]; }
};
struct ReadBf16 {
  const __nv_bfloat16* p;
  __device__ __forceinline__ float operator()(int64_t i) const { return __bfloat162float(p[i]); }
};
template <typename Fn>
void WithReader(ValuesIn x, Fn&& fn) {
  if (x.bf16 != nullptr) {
    fn(ReadBf16{reinterpret_cast<const __nv_bfloat16*>(x.bf16)});
  } else {
    fn(ReadF32{x.f32});
  }
}

// Element i of a ValuesOut, one writer per form (the CPU twins are kernels/cpu/cpu_util.h's): BF16 bits
// are rounded to nearest even as they are written. W::Of(y) binds a second output of the same form.
struct WriteF32 {
  float* p;
  __device__ __forceinline__ void operator()(int64_t i, float v) const { p[i] = v; }
  static WriteF32 Of(ValuesOut o) { return {o.f32}; }
};
struct WriteBf16 {
  __nv_bfloat16* p;
  __device__ __forceinline__ void operator()(int64_t i, float v) const { p[i] = __float2bfloat16_rn(v); }
  static WriteBf16 Of(ValuesOut o) { return {reinterpret_cast<__nv_bfloat16*>(o.bf16)}; }
};
template <typename Fn>
void WithWriter(ValuesOut y, Fn&& fn) {
  if (y.bf16 != nullptr) {
    fn(WriteBf16{reinterpret_cast<__nv_bfloat16*>(y.bf16)});
  } else {
    fn(WriteF32{y.f32});
  }
}

// Lets `kernel` launch with `bytes` of dynamic shared memory: above the default 48 KiB a kernel must opt
// in (cudaFuncAttributeMaxDynamicSharedMemorySize); below it there is nothing to set.
template <typename Kernel>
void AllowDynamicSmem(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return;
  MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Grid-stride loop over a row-major [rows, cols] index space with 64-bit indices:
//   for (GridWalk2D w(rows, cols); w.valid(); w.next()) ... w.r, w.c ...
// Row and column advance by the stride's quotient and remainder, so a thread divides twice in all
// rather than per element (64-bit division is a long instruction sequence on the GPU).
struct GridWalk2D {
  int64_t r, c;
  __device__ __forceinline__ GridWalk2D(int64_t rows, int64_t cols)
      : r(GlobalThread() / cols),
        c(GlobalThread() % cols),
        cols_(cols),
        total_(rows * cols),
        e_(GlobalThread()),
        stride_(GlobalStride()),
        stride_r_(stride_ / cols),
        stride_c_(stride_ % cols) {}
  __device__ __forceinline__ bool valid() const { return e_ < total_; }
  __device__ __forceinline__ void next() {
    e_ += stride_;
    r += stride_r_;
    c += stride_c_;
    if (c >= cols_) {
      c -= cols_;
      ++r;
    }
  }

 private:
  int64_t cols_, total_, e_, stride_, stride_r_, stride_c_;
};

template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values of T in shared memory. Ends with a barrier, so it may be called again.
template <typename T>
__device__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  v = WarpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < num_warps ? scratch[lane] : T(0);
  total = WarpSum(total);
  __syncthreads();
  return total;
}

__device__ inline float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  v = WarpMax(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = lane < num_warps ? scratch[lane] : -__int_as_float(0x7f800000);
  m = WarpMax(m);
  __syncthreads();
  return m;
}

}  // namespace moe::kernels::cuda
