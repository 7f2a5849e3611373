// Row movement for embeddings and MoE dispatch: GatherRows (dst[i,:] = src[idx[i],:], also from a BF16
// table, or from runs of consecutive rows: GatherRowBlocks) and the
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
//
// SortByExpert (MoE dispatch order) sorts the same kind of pairs, (expert, slot), on only the bits an
// expert index needs; each expert's run is then found by binary search in the sorted keys, the kept
// runs laid out by one small scan, and every kept pair placed. No host work, and the only result the
// host reads is the [E] counts.
#include <cub/cub.cuh>
#include <cuda_bf16.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kRowThreads = 128;

// Where gathered row i comes from: an index array, or runs of consecutive source rows (row blocks:
// table = first [blocks + 1] gathered row of each block, then src_row [blocks]).
struct IndexedRows {
  const int32_t* idx;
  __device__ int64_t operator()(int64_t i) const { return idx[i]; }
};
struct BlockRows {
  const int64_t* table;
  int64_t blocks;
  __device__ int64_t operator()(int64_t i) const {
    int64_t lo = 0, hi = blocks - 1;  // the last block whose first row is <= i
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (table[mid] <= i) lo = mid; else hi = mid - 1;
    }
    return table[blocks + 1 + lo] + i - table[lo];
  }
};

template <typename SourceRow>
__global__ void GatherRowsKernel(const float* __restrict__ src, SourceRow row_of, int64_t n, int64_t dim,
                                 float* __restrict__ dst) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* in = src + row_of(i) * dim;
    float* out = dst + i * dim;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) out[c] = in[c];
  }
}

// Same with 16-byte accesses (dim % 4 == 0 and 16-byte aligned bases).
template <typename SourceRow>
__global__ void GatherRowsKernel4(const float4* __restrict__ src, SourceRow row_of, int64_t n, int64_t dim4,
                                  float4* __restrict__ dst) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float4* in = src + row_of(i) * dim4;
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

// One block: expert e's sorted run is [starts[e], starts[e] + counts[e]) (binary searches in the
// sorted keys); kept_starts is the exclusive scan of the kept lengths min(count, capacity), in expert
// order by one thread (E is at most a few hundred).
__global__ void ExpertRunsKernel(const int32_t* __restrict__ keys, int64_t total, int64_t num_experts,
                                 int64_t capacity, int32_t* __restrict__ counts, int32_t* __restrict__ starts,
                                 int32_t* __restrict__ kept_starts) {
  auto lower_bound = [&](int64_t e) {
    int64_t lo = 0, hi = total;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (keys[mid] < e) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
  for (int64_t e = threadIdx.x; e < num_experts; e += blockDim.x) {
    const int64_t first = lower_bound(e);
    starts[e] = static_cast<int32_t>(first);
    counts[e] = static_cast<int32_t>(lower_bound(e + 1) - first);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t row = 0;
    for (int64_t e = 0; e < num_experts; ++e) {
      kept_starts[e] = static_cast<int32_t>(row);
      row += capacity < 0 || counts[e] < capacity ? counts[e] : capacity;
    }
  }
}

// Sorted position p holds slot order[p] of expert keys[p], the w-th of its run: kept when w < capacity,
// as row kept_starts[e] + w.
__global__ void PlaceKeptRowsKernel(const int32_t* __restrict__ keys, const int32_t* __restrict__ order,
                                    int64_t total, int64_t k, int64_t capacity, const int32_t* __restrict__ starts,
                                    const int32_t* __restrict__ kept_starts, int32_t* __restrict__ row_token,
                                    int32_t* __restrict__ row_slot) {
  for (int64_t p = GlobalThread(); p < total; p += GlobalStride()) {
    const int32_t e = keys[p];
    const int64_t w = p - starts[e];
    if (capacity >= 0 && w >= capacity) continue;
    const int64_t r = kept_starts[e] + w;
    row_slot[r] = order[p];
    row_token[r] = static_cast<int32_t>(order[p] / k);
  }
}

unsigned RowGrid(int64_t n) {
  return static_cast<unsigned>(n < kMaxBlocks * 4 ? (n < 1 ? 1 : n) : kMaxBlocks * 4);
}

// Byte offsets of the workspace of a sort of n (key, position) pairs on key bits [0, end_bit): keys_out,
// order_in, order_out, CUB's temp storage, then `extra_ints` more ints.
struct SortLayout {
  size_t keys_out = 0, order_in = 0, order_out = 0, cub = 0, cub_bytes = 0, extra = 0, total = 0;
  int end_bit = 32;
};

size_t Align256(size_t b) { return (b + 255) / 256 * 256; }

SortLayout Layout(int64_t n, int end_bit = 32, int64_t extra_ints = 0) {
  SortLayout l;
  l.end_bit = end_bit;
  const size_t ints = Align256(sizeof(int32_t) * static_cast<size_t>(n));
  l.keys_out = 0;
  l.order_in = ints;
  l.order_out = 2 * ints;
  l.cub = 3 * ints;
  cub::DeviceRadixSort::SortPairs(nullptr, l.cub_bytes, static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr),
                                  static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr), static_cast<int>(n), 0, end_bit);
  l.extra = l.cub + Align256(l.cub_bytes);
  l.total = l.extra + Align256(sizeof(int32_t) * static_cast<size_t>(extra_ints));
  return l;
}

// Sorts the pairs (keys[i], i) by key, stably, into the workspace's keys_out / order_out.
void SortPositionsByKey(const int32_t* keys, int64_t n, const SortLayout& l, char* ws, cudaStream_t stream) {
  int32_t* order_in = reinterpret_cast<int32_t*>(ws + l.order_in);
  IotaKernel<<<GridFor(n), kThreads, 0, stream>>>(order_in, n);
  MOE_CUDA_CHECK_LAUNCH();
  size_t cub_bytes = l.cub_bytes;
  MOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ws + l.cub, cub_bytes, keys, reinterpret_cast<int32_t*>(ws + l.keys_out),
                                                 order_in, reinterpret_cast<int32_t*>(ws + l.order_out),
                                                 static_cast<int>(n), 0, l.end_bit, stream));
}

// Bits an expert index in [0, E) needs (at least one).
int ExpertKeyBits(int64_t num_experts) {
  int bits = 1;
  while (bits < 31 && (int64_t{1} << bits) < num_experts) ++bits;
  return bits;
}

SortLayout ExpertSortLayout(int64_t total, int64_t num_experts) {
  return Layout(total, ExpertKeyBits(num_experts), 2 * num_experts);  // + starts, kept_starts
}

}  // namespace

template <typename SourceRow>
void LaunchGather(const float* src, SourceRow row_of, int64_t n, int64_t dim, float* dst, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  if (dim % 4 == 0 && Aligned16(src) && Aligned16(dst)) {
    GatherRowsKernel4<SourceRow><<<RowGrid(n), kRowThreads, 0, stream>>>(reinterpret_cast<const float4*>(src), row_of, n, dim / 4, reinterpret_cast<float4*>(dst));
  } else {
    GatherRowsKernel<SourceRow><<<RowGrid(n), kRowThreads, 0, stream>>>(src, row_of, n, dim, dst);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchGatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                      cudaStream_t stream) {
  LaunchGather(src, IndexedRows{idx}, n, dim, dst, stream);
}

void LaunchGatherRowBlocks(const float* src, const int64_t* table, int64_t blocks, int64_t rows, int64_t dim,
                           float* dst, cudaStream_t stream) {
  if (blocks <= 0) return;
  LaunchGather(src, BlockRows{table, blocks}, rows, dim, dst, stream);
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
  const SortLayout l = Layout(n);
  MOE_CUDA_REQUIRE(workspace_bytes >= l.total, "ScatterAddRows: workspace too small");
  char* ws = static_cast<char*>(workspace);
  SortPositionsByKey(idx, n, l, ws, stream);
  SegmentAddKernel<<<RowGrid(n), kRowThreads, 0, stream>>>(src, reinterpret_cast<const int32_t*>(ws + l.keys_out), reinterpret_cast<const int32_t*>(ws + l.order_out), scale, n, dim, dst);
  MOE_CUDA_CHECK_LAUNCH();
}

size_t SortByExpertWorkspaceBytes(int64_t total, int64_t num_experts) {
  return ExpertSortLayout(total, num_experts).total;
}

void LaunchSortByExpert(const int32_t* selected, int64_t total, int64_t k, int64_t num_experts, int64_t capacity,
                        int32_t* counts, int32_t* row_token, int32_t* row_slot, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream) {
  if (num_experts <= 0) return;
  MOE_CUDA_REQUIRE(total <= 0x7fffffff, "SortByExpert: more than 2^31-1 assignments");
  const SortLayout l = ExpertSortLayout(total, num_experts);
  MOE_CUDA_REQUIRE(workspace_bytes >= l.total, "SortByExpert: workspace too small");
  char* ws = static_cast<char*>(workspace);
  if (total > 0) SortPositionsByKey(selected, total, l, ws, stream);
  const int32_t* keys = reinterpret_cast<const int32_t*>(ws + l.keys_out);
  int32_t* starts = reinterpret_cast<int32_t*>(ws + l.extra);
  int32_t* kept_starts = starts + num_experts;
  ExpertRunsKernel<<<1, kThreads, 0, stream>>>(keys, total, num_experts, capacity, counts, starts, kept_starts);
  MOE_CUDA_CHECK_LAUNCH();
  if (total == 0) return;
  PlaceKeptRowsKernel<<<GridFor(total), kThreads, 0, stream>>>(keys, reinterpret_cast<const int32_t*>(ws + l.order_out), total, k, capacity, starts, kept_starts, row_token, row_slot);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
