// Grouped GEMM: many independent row-major problems C_g[m_g, n_g] = alpha op(A_g) op(B_g) + beta C_g
// in ONE kernel launch (the routed experts: one problem per local expert, sizes set by routing).
//
// The problem table (pointers, sizes, leading dims, first tile) travels by value as the kernel's
// parameter (up to kMaxGroupedProblems problems, 64 bytes each: within CUDA 12.1+'s 32 KB parameter
// limit), so a launch needs no host-to-device copy and no synchronisation; more problems than that
// take one launch per kMaxGroupedProblems. The grid is the sum of all problems' 64 x 64 output tiles;
// each block finds its problem by a binary search over the table's first-tile offsets.
//
// Two arithmetic modes (GemmMath):
//   kFp32: FP32 operands, FP32 FMA on the SIMT cores (16 x 16 threads, 4 x 4 outputs each) — the
//          FP32 reference semantics, no TF32.
//   kBf16: operands rounded to BF16 (round to nearest even) while they are staged into shared
//          memory, products on the tensor cores through WMMA 16x16x16 BF16 fragments, FP32
//          accumulation, FP32 C. Exact for operands that are already BF16 values (the model's BF16
//          mode keeps them so).
// Both write each C element once from one thread: deterministic, no atomics. k == 0 yields
// C = beta C (beta == 0: zeros, C never read, as for every beta == 0 here).
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kTileM = 64, kTileN = 64;

struct Problem {
  const float* a;
  const float* b;
  float* c;
  int64_t lda, ldb, ldc;
  int32_t m, n, k;
  int32_t tile_begin;  // first global tile of this problem
};
static_assert(sizeof(Problem) == 64, "problem descriptor layout");

struct Table {
  Problem p[kMaxGroupedProblems];
  int32_t count;
};

// The problem owning global tile t, and t's (row, column) tile within it.
__device__ __forceinline__ int FindProblem(const Table& tab, int32_t t) {
  int lo = 0, hi = tab.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (tab.p[mid].tile_begin <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Element (i, kk) of op(A) [m, k] and (kk, j) of op(B) [k, n], zero outside the matrix.
template <bool TA>
__device__ __forceinline__ float LoadA(const Problem& p, int64_t i, int64_t kk) {
  if (i >= p.m || kk >= p.k) return 0.0f;
  return TA ? p.a[kk * p.lda + i] : p.a[i * p.lda + kk];
}
template <bool TB>
__device__ __forceinline__ float LoadB(const Problem& p, int64_t kk, int64_t j) {
  if (kk >= p.k || j >= p.n) return 0.0f;
  return TB ? p.b[j * p.ldb + kk] : p.b[kk * p.ldb + j];
}

__device__ __forceinline__ void StoreC(const Problem& p, int64_t i, int64_t j, float acc,
                                       float alpha, float beta) {
  if (i >= p.m || j >= p.n) return;
  float* c = p.c + i * p.ldc + j;
  *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
}

// ---- FP32 SIMT: 64 x 64 tile, k step 16, 256 threads with 4 x 4 outputs each. ----
constexpr int kFpK = 16;
constexpr int kFpLd = kTileM + 4;  // keeps float4 rows 16-byte aligned

template <bool TA, bool TB>
__global__ void __launch_bounds__(256) GroupedGemmFp32(const __grid_constant__ Table tab,
                                                       float alpha, float beta) {
  __shared__ __align__(16) float as[kFpK][kFpLd];  // as[kk][i] = op(A)[m0 + i, k0 + kk]
  __shared__ __align__(16) float bs[kFpK][kFpLd];  // bs[kk][j] = op(B)[k0 + kk, n0 + j]
  const int32_t t = static_cast<int32_t>(blockIdx.x);
  const Problem& p = tab.p[FindProblem(tab, t)];
  const int32_t local = t - p.tile_begin;
  const int32_t tiles_n = (p.n + kTileN - 1) / kTileN;
  const int64_t m0 = static_cast<int64_t>(local / tiles_n) * kTileM;
  const int64_t n0 = static_cast<int64_t>(local % tiles_n) * kTileN;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;

  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += kFpK) {
    // 64 x 16 elements per operand, 4 per thread; the fastest-varying thread index walks the
    // operand's contiguous dimension so global reads coalesce.
#pragma unroll
    for (int e = tid; e < kTileM * kFpK; e += 256) {
      int i, kk;
      if (TA) { i = e % kTileM; kk = e / kTileM; } else { kk = e % kFpK; i = e / kFpK; }
      as[kk][i] = LoadA<TA>(p, m0 + i, k0 + kk);
      int j, kb;
      if (TB) { kb = e % kFpK; j = e / kFpK; } else { j = e % kTileN; kb = e / kTileN; }
      bs[kb][j] = LoadB<TB>(p, k0 + kb, n0 + j);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kFpK; ++kk) {
      const float4 av = *reinterpret_cast<const float4*>(&as[kk][ty * 4]);
      const float4 bv = *reinterpret_cast<const float4*>(&bs[kk][tx * 4]);
      const float a4[4] = {av.x, av.y, av.z, av.w}, b4[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a4[i], b4[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) StoreC(p, m0 + ty * 4 + i, n0 + tx * 4 + j, acc[i][j], alpha, beta);
}

// ---- BF16 tensor cores (WMMA): 64 x 64 tile, k step 32, 4 warps of 32 x 32 (2 x 2 fragments). ----
constexpr int kBfK = 32;
constexpr int kBfLdA = kBfK + 8;     // bf16 elements; multiple of 8 as WMMA requires
constexpr int kBfLdB = kTileN + 8;
constexpr int kBfLdC = kTileN + 4;   // floats; multiple of 4

template <bool TA, bool TB>
__global__ void __launch_bounds__(128) GroupedGemmBf16(const __grid_constant__ Table tab,
                                                       float alpha, float beta) {
  using namespace nvcuda;
  __shared__ __align__(32) __nv_bfloat16 as[kTileM * kBfLdA];  // [i][kk]
  __shared__ __align__(32) __nv_bfloat16 bs[kBfK * kBfLdB];    // [kk][j]
  __shared__ __align__(32) float cs[kTileM * kBfLdC];          // accumulators for the epilogue
  const int32_t t = static_cast<int32_t>(blockIdx.x);
  const Problem& p = tab.p[FindProblem(tab, t)];
  const int32_t local = t - p.tile_begin;
  const int32_t tiles_n = (p.n + kTileN - 1) / kTileN;
  const int64_t m0 = static_cast<int64_t>(local / tiles_n) * kTileM;
  const int64_t n0 = static_cast<int64_t>(local % tiles_n) * kTileN;
  const int tid = threadIdx.x, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;  // this warp's 32 x 32 quadrant

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < p.k; k0 += kBfK) {
    for (int e = tid; e < kTileM * kBfK; e += 128) {
      int i, kk;
      if (TA) { i = e % kTileM; kk = e / kTileM; } else { kk = e % kBfK; i = e / kBfK; }
      as[i * kBfLdA + kk] = __float2bfloat16_rn(LoadA<TA>(p, m0 + i, k0 + kk));
      int j, kb;
      if (TB) { kb = e % kBfK; j = e / kBfK; } else { j = e % kTileN; kb = e / kTileN; }
      bs[kb * kBfLdB + j] = __float2bfloat16_rn(LoadB<TB>(p, k0 + kb, n0 + j));
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBfK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> af[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> bf[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(af[i], as + (wm * 32 + i * 16) * kBfLdA + kk, kBfLdA);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(bf[j], bs + kk * kBfLdB + wn * 32 + j * 16, kBfLdB);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * kBfLdC + wn * 32 + j * 16, acc[i][j],
                              kBfLdC, wmma::mem_row_major);
    }
  __syncthreads();
  for (int e = tid; e < kTileM * kTileN; e += 128) {
    const int i = e / kTileN, j = e % kTileN;
    StoreC(p, m0 + i, n0 + j, cs[i * kBfLdC + j], alpha, beta);
  }
}

template <bool TA, bool TB>
void LaunchTable(const Table& tab, int32_t tiles, GemmMath math, float alpha, float beta,
                 cudaStream_t stream) {
  if (math == GemmMath::kBf16) {
    GroupedGemmBf16<TA, TB><<<tiles, 128, 0, stream>>>(tab, alpha, beta);
  } else {
    GroupedGemmFp32<TA, TB><<<tiles, 256, 0, stream>>>(tab, alpha, beta);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void Launch(bool ta, bool tb, const Table& tab, int32_t tiles, GemmMath math, float alpha,
            float beta, cudaStream_t stream) {
  if (ta) {
    if (tb) LaunchTable<true, true>(tab, tiles, math, alpha, beta, stream);
    else LaunchTable<true, false>(tab, tiles, math, alpha, beta, stream);
  } else {
    if (tb) LaunchTable<false, true>(tab, tiles, math, alpha, beta, stream);
    else LaunchTable<false, false>(tab, tiles, math, alpha, beta, stream);
  }
}

}  // namespace

void LaunchGroupedGemm(bool ta, bool tb, const GemmProblem* problems, int64_t count, float alpha,
                       float beta, GemmMath math, cudaStream_t stream) {
  Table tab;
  tab.count = 0;
  int64_t tiles = 0;
  for (int64_t g = 0; g < count; ++g) {
    const GemmProblem& q = problems[g];
    if (q.m <= 0 || q.n <= 0) continue;
    MOE_CUDA_REQUIRE(q.m <= 0x7fffffff && q.n <= 0x7fffffff && q.k <= 0x7fffffff,
                     "GroupedGemm: dimension above 2^31-1");
    const int64_t problem_tiles = CeilDiv(q.m, kTileM) * CeilDiv(q.n, kTileN);
    if (tab.count == kMaxGroupedProblems || tiles + problem_tiles > 0x7fffffff) {
      Launch(ta, tb, tab, static_cast<int32_t>(tiles), math, alpha, beta, stream);
      tab.count = 0;
      tiles = 0;
    }
    Problem& p = tab.p[tab.count++];
    p.a = q.a;
    p.b = q.b;
    p.c = q.c;
    p.lda = q.lda;
    p.ldb = q.ldb;
    p.ldc = q.ldc;
    p.m = static_cast<int32_t>(q.m);
    p.n = static_cast<int32_t>(q.n);
    p.k = static_cast<int32_t>(q.k > 0 ? q.k : 0);
    p.tile_begin = static_cast<int32_t>(tiles);
    tiles += problem_tiles;
  }
  if (tab.count > 0) Launch(ta, tb, tab, static_cast<int32_t>(tiles), math, alpha, beta, stream);
}

// ---- Padded batches (CudaBackend's GroupedGemmImpl::kCublasLtPadded). ----
namespace {

// Block blockIdx.y of the batch: dst[y][r, c] (dense rows x cols) = block y's value at (r, c) inside its
// [rows_y, cols_y], zero outside. Read and Write are device_util.cuh's readers and writers (FP32 words or
// BF16 bits; a BF16 writer rounds to nearest even).
template <typename Read, typename Write>
__global__ void PadBlocksKernel(const PaddedBlock* __restrict__ blocks, int64_t rows, int64_t cols, Write dst) {
  const PaddedBlock b = blocks[blockIdx.y];
  const Read read{static_cast<decltype(Read::p)>(b.data)};
  const Write write{dst.p + static_cast<int64_t>(blockIdx.y) * rows * cols};
  for (GridWalk2D w(rows, cols); w.valid(); w.next()) {
    write(w.r * cols + w.c, w.r < b.rows && w.c < b.cols ? read(w.r * b.ld + w.c) : 0.0f);
  }
}

// Block y's [rows_y, cols_y] (FP32 at data, leading dim ld) = padded[y]'s top-left corner + beta * itself
// (beta == 0: not read).
__global__ void UnpadBlocksKernel(const float* __restrict__ padded, const PaddedBlock* __restrict__ blocks,
                                  int64_t rows, int64_t cols, float beta) {
  const PaddedBlock b = blocks[blockIdx.y];
  float* c = static_cast<float*>(const_cast<void*>(b.data));
  const float* from = padded + static_cast<int64_t>(blockIdx.y) * rows * cols;
  for (GridWalk2D w(b.rows, b.cols); w.valid(); w.next()) {
    float& y = c[w.r * b.ld + w.c];
    const float v = from[w.r * cols + w.c];
    y = beta == 0.0f ? v : v + beta * y;
  }
}

dim3 BatchGrid(int64_t per_block_elements, int64_t count) {
  const unsigned per_block = GridFor(per_block_elements) / static_cast<unsigned>(std::max<int64_t>(count, 1));
  const unsigned x = std::max<unsigned>(1, per_block);
  return dim3(x, static_cast<unsigned>(count));
}

}  // namespace

void LaunchPadBlocks(const PaddedBlock* blocks, int64_t count, bool src_bf16, int64_t rows, int64_t cols, void* dst,
                     bool dst_bf16, cudaStream_t stream) {
  if (count <= 0 || rows <= 0 || cols <= 0) return;
  MOE_CUDA_REQUIRE(count <= 65535, "PadBlocks: more than 65535 blocks");
  const dim3 grid = BatchGrid(rows * cols, count);
  const WriteBf16 to_bf16{static_cast<__nv_bfloat16*>(dst)};
  const WriteF32 to_f32{static_cast<float*>(dst)};
  if (src_bf16 && dst_bf16) {
    PadBlocksKernel<ReadBf16, WriteBf16><<<grid, kThreads, 0, stream>>>(blocks, rows, cols, to_bf16);
  } else if (src_bf16) {
    PadBlocksKernel<ReadBf16, WriteF32><<<grid, kThreads, 0, stream>>>(blocks, rows, cols, to_f32);
  } else if (dst_bf16) {
    PadBlocksKernel<ReadF32, WriteBf16><<<grid, kThreads, 0, stream>>>(blocks, rows, cols, to_bf16);
  } else {
    PadBlocksKernel<ReadF32, WriteF32><<<grid, kThreads, 0, stream>>>(blocks, rows, cols, to_f32);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchUnpadBlocks(const float* padded, const PaddedBlock* blocks, int64_t count, int64_t rows, int64_t cols,
                       float beta, cudaStream_t stream) {
  if (count <= 0 || rows <= 0 || cols <= 0) return;
  MOE_CUDA_REQUIRE(count <= 65535, "UnpadBlocks: more than 65535 blocks");
  UnpadBlocksKernel<<<BatchGrid(rows * cols, count), kThreads, 0, stream>>>(padded, blocks, rows, cols, beta);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
