// Row movement for embeddings and MoE dispatch: GatherRows (dst[i,:] = src[idx[i],:], also from a BF16
// table) and the
// deterministic ScatterAddRows (dst[idx[i],:] += scale[i] * src[i,:]); per-row RowDot (FP64) and
// ScaleRows (CPU twins in kernels/cpu/elementwise.cc and data_movement.cc).
//
// RowDot: one warp per row up to kRowDotWarpMaxDim columns, one block per row beyond; each thread
// sums its strided share in FP64, then a fixed tree (WarpSum / BlockSum) combines them, so the
// result is the same bits on every run. Rounded to FP32 it matches the CPU's FP64 sum (8 lanes)
// except in the rare case where the two FP64 sums round to different floats.
//
// Determinism without atomics: the pairs (idx[i], i) are sorted by idx with CUB's stable radix sort,
// so each destination row's sources appear in ascending i; one block per destination row then adds
// them into dst in that order. Each element therefore receives exactly the CPU twin's sequence
// ((dst + s_i0 src_i0) + s_i1 src_i1) + ... (kernels/cpu/cpu_util.h ScatterAddByColumns), each step one
// fused multiply-add as GCC compiles the CPU twin (-mfma contracts `out += s * in`), so the two
// backends agree bit for bit. The number of destination rows is not
// known (the interface does not pass it), which sorting does not need.
#include <cub/cub.cuh>
#include <cuda_bf16.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kRowThreads = 128;

__global__ void GatherRowsKernel(const float* __restrict__ src, const int32_t* __restrict__ idx,
                                 int64_t n, int64_t dim, float* __restrict__ dst) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* in = src + static_cast<int64_t>(idx[i]) * dim;
    float* out = dst + i * dim;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) out[c] = in[c];
  }
}

// Same with 16-byte accesses (dim % 4 == 0 and 16-byte aligned bases).
__global__ void GatherRowsKernel4(const float4* __restrict__ src, const int32_t* __restrict__ idx,
                                  int64_t n, int64_t dim4, float4* __restrict__ dst) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float4* in = src + static_cast<int64_t>(idx[i]) * dim4;
    float4* out = dst + i * dim4;
    for (int64_t c = threadIdx.x; c < dim4; c += blockDim.x) out[c] = in[c];
  }
}

// GatherRowsKernel from a table of BF16 bits, unpacked to FP32 (exact).
__global__ void GatherRowsBf16Kernel(const __nv_bfloat16* __restrict__ src, const int32_t* __restrict__ idx,
                                     int64_t n, int64_t dim, float* __restrict__ dst) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const __nv_bfloat16* in = src + static_cast<int64_t>(idx[i]) * dim;
    float* out = dst + i * dim;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) out[c] = __bfloat162float(in[c]);
  }
}

constexpr int64_t kRowDotWarpMaxDim = 2048;

template <typename ReadB>
__global__ void RowDotWarpKernel(const float* __restrict__ a, ReadB b, int64_t rows, int64_t dim,
                                 float* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x >> 5;
  for (int64_t r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < rows;
       r += gridDim.x * warps_per_block) {
    const float* x = a + r * dim;
    double acc = 0.0;
    for (int64_t j = lane; j < dim; j += 32) acc += static_cast<double>(x[j]) * b(r * dim + j);
    acc = WarpSum(acc);
    if (lane == 0) out[r] = static_cast<float>(acc);
  }
}

template <typename ReadB>
__global__ void RowDotBlockKernel(const float* __restrict__ a, ReadB b, int64_t rows, int64_t dim,
                                  float* __restrict__ out) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = a + r * dim;
    double acc = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) acc += static_cast<double>(x[j]) * b(r * dim + j);
    acc = BlockSum(acc, scratch);
    if (threadIdx.x == 0) out[r] = static_cast<float>(acc);
  }
}

__global__ void ScaleRowsKernel(float* __restrict__ x, const float* __restrict__ s, int64_t rows,
                                int64_t dim) {
  for (GridWalk2D w(rows, dim); w.valid(); w.next()) x[w.r * dim + w.c] *= s[w.r];
}

__global__ void IotaKernel(int32_t* v, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) v[i] = static_cast<int32_t>(i);
}

// Block per sorted position p: if p starts a run of equal keys, add the run's rows into dst[key] in
// ascending source order.
__global__ void SegmentAddKernel(const float* __restrict__ src, const int32_t* __restrict__ keys,
                                 const int32_t* __restrict__ order, const float* __restrict__ scale,
                                 int64_t n, int64_t dim, float* __restrict__ dst) {
  for (int64_t p = blockIdx.x; p < n; p += gridDim.x) {
    const int32_t row = keys[p];
    if (p > 0 && keys[p - 1] == row) continue;  // not the start of a run
    int64_t end = p + 1;
    while (end < n && keys[end] == row) ++end;
    float* out = dst + static_cast<int64_t>(row) * dim;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
      float acc = out[c];
      for (int64_t q = p; q < end; ++q) {
        const int64_t i = order[q];
        const float s = scale != nullptr ? scale[i] : 1.0f;
        acc = fmaf(s, src[i * dim + c], acc);  // fused, as GCC -mfma compiles the CPU twin
      }
      out[c] = acc;
    }
  }
}

unsigned RowGrid(int64_t n) {
  return static_cast<unsigned>(n < kMaxBlocks * 4 ? (n < 1 ? 1 : n) : kMaxBlocks * 4);
}

// Byte offsets of the scatter workspace: keys_out, order_in, order_out, then CUB's temp storage.
struct ScatterLayout {
  size_t keys_out = 0, order_in = 0, order_out = 0, cub = 0, cub_bytes = 0, total = 0;
};

size_t Align256(size_t b) { return (b + 255) / 256 * 256; }

ScatterLayout Layout(int64_t n) {
  ScatterLayout l;
  const size_t ints = Align256(sizeof(int32_t) * static_cast<size_t>(n));
  l.keys_out = 0;
  l.order_in = ints;
  l.order_out = 2 * ints;
  l.cub = 3 * ints;
  cub::DeviceRadixSort::SortPairs(nullptr, l.cub_bytes, static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr),
                                  static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr), static_cast<int>(n));
  l.total = l.cub + Align256(l.cub_bytes);
  return l;
}

}  // namespace

void LaunchGatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                      cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  if (dim % 4 == 0 && Aligned16(src) && Aligned16(dst)) {
    GatherRowsKernel4<<<RowGrid(n), kRowThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(src), idx, n, dim / 4, reinterpret_cast<float4*>(dst));
  } else {
    GatherRowsKernel<<<RowGrid(n), kRowThreads, 0, stream>>>(src, idx, n, dim, dst);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchGatherRowsBf16(const uint16_t* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                          cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  GatherRowsBf16Kernel<<<RowGrid(n), kRowThreads, 0, stream>>>(reinterpret_cast<const __nv_bfloat16*>(src), idx,
                                                               n, dim, dst);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchRowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out, cudaStream_t stream) {
  if (rows <= 0) return;
  WithReader(b, [&](auto read_b) {
    using ReadB = decltype(read_b);
    if (dim <= kRowDotWarpMaxDim) {
      RowDotWarpKernel<ReadB><<<GridFor(rows, kThreads / 32), kThreads, 0, stream>>>(a, read_b, rows, dim, out);
    } else {
      RowDotBlockKernel<ReadB><<<RowGrid(rows), kRowThreads, 0, stream>>>(a, read_b, rows, dim, out);
    }
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchScaleRows(float* x, const float* s, int64_t rows, int64_t dim, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  ScaleRowsKernel<<<GridFor(rows * dim), kThreads, 0, stream>>>(x, s, rows, dim);
  MOE_CUDA_CHECK_LAUNCH();
}

size_t ScatterAddWorkspaceBytes(int64_t n) { return n <= 0 ? 0 : Layout(n).total; }

void LaunchScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                          int64_t dim, float* dst, void* workspace, size_t workspace_bytes,
                          cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  MOE_CUDA_REQUIRE(n <= 0x7fffffff, "ScatterAddRows: more than 2^31-1 rows");
  const ScatterLayout l = Layout(n);
  MOE_CUDA_REQUIRE(workspace_bytes >= l.total, "ScatterAddRows: workspace too small");
  char* ws = static_cast<char*>(workspace);
  int32_t* keys_out = reinterpret_cast<int32_t*>(ws + l.keys_out);
  int32_t* order_in = reinterpret_cast<int32_t*>(ws + l.order_in);
  int32_t* order_out = reinterpret_cast<int32_t*>(ws + l.order_out);
  IotaKernel<<<GridFor(n), kThreads, 0, stream>>>(order_in, n);
  MOE_CUDA_CHECK_LAUNCH();
  size_t cub_bytes = l.cub_bytes;
  MOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ws + l.cub, cub_bytes, idx, keys_out, order_in,
                                                 order_out, static_cast<int>(n), 0,
                                                 static_cast<int>(sizeof(int32_t) * 8), stream));
  SegmentAddKernel<<<RowGrid(n), kRowThreads, 0, stream>>>(src, keys_out, order_out, scale, n, dim,
                                                           dst);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
