// CPU emulation of the CUDA kernel execution model, for checking kernel LOGIC without a GPU
// (tests/gpu/emulation/README.md): one std::thread per CUDA thread, blocks run one after another,
// __syncthreads/__syncwarp are barriers, warp shuffles go through a per-warp exchange array,
// __shared__ arrays are statics (one block at a time), dynamic shared memory is filled with garbage.
// Launches are rewritten to EmuLaunch(kernel, grid, block, smem, stream, args...) by the script.
#pragma once
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct uint3_ { unsigned x, y, z; };
inline thread_local uint3_ threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __shared__ static
#define __grid_constant__
#define __align__(n)

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
struct CUstream_st;
typedef CUstream_st* cudaStream_t;
inline cudaError_t cudaGetLastError() { return 0; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu"; }
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T, cudaFuncAttribute, int) { return 0; }

// Managed memory is host memory here. g_emu_managed_limit caps the bytes held at once, so a test can
// make cudaMallocManaged fail (an emulated full GPU); g_emu_managed_sizes tracks what is held.
constexpr cudaError_t cudaErrorMemoryAllocation = 2;
enum cudaMemAttachFlags { cudaMemAttachGlobal = 1 };
inline size_t g_emu_managed_limit = SIZE_MAX;
inline size_t g_emu_managed_bytes = 0;
inline std::unordered_map<void*, size_t> g_emu_managed_sizes;
inline cudaError_t cudaMallocManaged(void** p, size_t bytes, unsigned = cudaMemAttachGlobal) {
  if (g_emu_managed_bytes + bytes > g_emu_managed_limit) return cudaErrorMemoryAllocation;
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (*p == nullptr) return cudaErrorMemoryAllocation;
  g_emu_managed_sizes[*p] = bytes;
  g_emu_managed_bytes += bytes;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  auto it = g_emu_managed_sizes.find(p);
  if (it != g_emu_managed_sizes.end()) {
    g_emu_managed_bytes -= it->second;
    g_emu_managed_sizes.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void Wait() {
    std::unique_lock<std::mutex> l(m_);
    const int gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(l, [&] { return gen_ != gen; });
    }
  }
 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0, gen_ = 0;
};

inline Barrier* g_block_barrier = nullptr;
inline std::vector<Barrier*> g_warp_barriers;
inline std::vector<uint64_t> g_shfl;  // [warps * 32]
inline std::vector<unsigned char> g_dyn_smem;

inline void __syncthreads() { g_block_barrier->Wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { g_warp_barriers[threadIdx.x / 32]->Wait(); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int off) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  g_shfl[w * 32 + lane] = bits;
  g_warp_barriers[w]->Wait();
  const uint64_t other = g_shfl[w * 32 + (lane ^ off)];
  g_warp_barriers[w]->Wait();
  T r;
  std::memcpy(&r, &other, sizeof(T));
  return r;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
#include <math.h>

template <typename K, typename... A>
void EmuLaunch(K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t, A... args) {
  gridDim = grid;
  blockDim = block;
  const int nt = block.x;
  const int warps = (nt + 31) / 32;
  g_dyn_smem.assign(smem + 16, 0xCD);  // garbage, like real shared memory
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      Barrier bb(nt);
      g_block_barrier = &bb;
      std::vector<Barrier*> wb;
      for (int w = 0; w < warps; ++w) wb.push_back(new Barrier(32));
      g_warp_barriers = wb;
      g_shfl.assign(warps * 32, 0);
      std::vector<std::thread> th;
      for (int t = 0; t < nt; ++t) {
        th.emplace_back([&, t] {
          threadIdx = {static_cast<unsigned>(t), 0, 0};
          blockIdx = {bx, by, 0};
          kernel(args...);
        });
      }
      for (auto& x : th) x.join();
      for (auto* b : wb) delete b;
    }
  }
}
