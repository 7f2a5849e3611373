// Elementwise CUDA kernels (BF16 rounding, packing and unpacking, add, scale, SwiGLU, AdamW, Copy2D, Fill), the FP64 sum of
// squares and the helpers the GEMM path needs (scaling C when k == 0, packing FP32 operands into
// BF16). Each op computes the CPU twin's expression in the same order (kernels/cpu/elementwise.cc,
// data_movement.cc, optimizer.cc), with IEEE division and square root (no fast-math) and expf for
// the sigmoid; results differ from the CPU only by the last-bit error of expf and by where the
// compilers fuse a multiply-add.
#include <cuda_bf16.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

__global__ void RoundToBf16Kernel(float* x, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    x[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
  }
}

__global__ void RoundAndPackBf16Kernel(float* x, int64_t n, __nv_bfloat16* bits) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    const __nv_bfloat16 b = __float2bfloat16_rn(x[i]);
    bits[i] = b;
    x[i] = __bfloat162float(b);
  }
}

__global__ void AddKernel(const float* __restrict__ a, float* __restrict__ y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) y[i] += a[i];
}

__global__ void AddAndRoundToBf16Kernel(const float* __restrict__ a, float* __restrict__ y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    y[i] = __bfloat162float(__float2bfloat16_rn(y[i] + a[i]));
  }
}

__global__ void ScaleKernel(float* x, int64_t n, float s) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) x[i] *= s;
}

__global__ void FillKernel(float* x, int64_t n, float value) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) x[i] = value;
}

__device__ __forceinline__ void AddInto(float& y, const float& a) { y += a; }
__device__ __forceinline__ void AddInto(float4& y, const float4& a) {
  y.x += a.x;
  y.y += a.y;
  y.z += a.z;
  y.w += a.w;
}

// dst[r*dst_ld + c] = (or +=) src[r*src_ld + c] over [rows, cols]; T is float or float4 (then
// cols and the leading dims count float4s).
template <typename T, bool kAccumulate>
__global__ void Copy2DKernel(const T* __restrict__ src, int64_t src_ld, T* __restrict__ dst,
                             int64_t dst_ld, int64_t rows, int64_t cols) {
  for (GridWalk2D w(rows, cols); w.valid(); w.next()) {
    const T v = src[w.r * src_ld + w.c];
    T& out = dst[w.r * dst_ld + w.c];
    if (kAccumulate) {
      AddInto(out, v);
    } else {
      out = v;
    }
  }
}

__device__ __forceinline__ float Sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

template <typename WriteM>
__global__ void SwigluForwardKernel(const float* __restrict__ a, const float* __restrict__ c, WriteM m, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    const float ai = a[i];
    m(i, ai * Sigmoid(ai) * c[i]);
  }
}

template <typename ReadA, typename ReadC, typename Write>
__global__ void SwigluBackwardKernel(ReadA a, ReadC c, const float* __restrict__ dm, Write da, Write dc, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    const float ai = a(i);
    const float sig = Sigmoid(ai);
    const float silu = ai * sig;
    const float dsilu = sig * (1.0f + ai * (1.0f - sig));
    const float g = dm[i];
    da(i, g * c(i) * dsilu);
    dc(i, g * silu);
  }
}

// One element's AdamW update (the CPU twin's arithmetic, in its order).
__device__ __forceinline__ void AdamWElement(int64_t i, float* __restrict__ param, const float* __restrict__ grad,
                                             float* __restrict__ m, float* __restrict__ v, float lr, float b1,
                                             float b2, float eps, float wd, float bc1, float bc2, float grad_scale,
                                             float* __restrict__ working, __nv_bfloat16* __restrict__ working_bits,
                                             bool round_bf16) {
  const float g = grad[i] * grad_scale;
  const float mi = b1 * m[i] + (1.0f - b1) * g;
  const float vi = b2 * v[i] + (1.0f - b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  const float mhat = mi / bc1;
  const float vhat = vi / bc2;
  const float p = param[i];
  const float updated = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
  param[i] = updated;
  const __nv_bfloat16 b = __float2bfloat16_rn(updated);
  if (working != nullptr) working[i] = round_bf16 ? __bfloat162float(b) : updated;
  if (working_bits != nullptr) working_bits[i] = b;
}

__global__ void AdamWKernel(float* __restrict__ param, const float* __restrict__ grad,
                            float* __restrict__ m, float* __restrict__ v, int64_t n, float lr,
                            float b1, float b2, float eps, float wd, float bc1, float bc2,
                            float grad_scale, float* __restrict__ working,
                            __nv_bfloat16* __restrict__ working_bits, bool round_bf16) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    AdamWElement(i, param, grad, m, v, lr, b1, b2, eps, wd, bc1, bc2, grad_scale, working, working_bits,
                 round_bf16);
  }
}

// Every piece's chunks in one grid: block b is chunk b - first_chunk of the last piece starting at
// or before b (an empty piece starts where the next one does).
__global__ void AdamWEachKernel(const AdamWPieceArgs* __restrict__ table, int64_t count, float lr, float b1,
                                float b2, float eps, float bc1, float bc2, float grad_scale) {
  const int64_t b = blockIdx.x;
  int64_t lo = 0, hi = count;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (table[mid].first_chunk <= b) lo = mid + 1; else hi = mid;
  }
  const AdamWPieceArgs x = table[lo - 1];
  const int64_t begin = (b - x.first_chunk) * kAdamWChunk;
  const int64_t end = begin + kAdamWChunk < x.n ? begin + kAdamWChunk : x.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    AdamWElement(i, x.param, x.grad, x.m, x.v, lr, b1, b2, eps, x.weight_decay, bc1, bc2, grad_scale, x.working,
                 reinterpret_cast<__nv_bfloat16*>(x.working_bits), x.round_bf16);
  }
}

// The FP64 sum of squares of chunk `chunk` (kSumChunk elements) of x[0..n), by one block: the fixed
// order every sum of squares uses (strided per thread, then BlockSum).
__device__ double ChunkSumSquares(const float* __restrict__ x, int64_t n, int64_t chunk, double* scratch) {
  const int64_t begin = chunk * kSumChunk;
  const int64_t end = begin + kSumChunk < n ? begin + kSumChunk : n;
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = x[i];
    acc += v * v;
  }
  return BlockSum(acc, scratch);
}

// The sum of in[0..n) by one block in a fixed order (per-thread strided sums, then a tree).
__device__ double BlockSumDoubles(const double* __restrict__ in, int64_t n, double* scratch) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += in[i];
  return BlockSum(acc, scratch);
}

// One block per chunk of kSumChunk elements: partial[chunk] = sum of squares in FP64.
__global__ void SumSquaresPartialKernel(const float* __restrict__ x, int64_t n,
                                        double* __restrict__ partial) {
  __shared__ double scratch[32];
  const double acc = ChunkSumSquares(x, n, blockIdx.x, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: out[0] = sum of in[0..n) in a fixed order.
__global__ void SumDoublesKernel(const double* __restrict__ in, int64_t n, double* __restrict__ out) {
  __shared__ double scratch[32];
  const double acc = BlockSumDoubles(in, n, scratch);
  if (threadIdx.x == 0) out[0] = acc;
}

// Every piece's chunks in one grid: block b is chunk b - first_partial of the piece whose partials
// hold b (the last piece starting at or before b: an empty piece starts where the next one does).
__global__ void SumSquaresEachPartialKernel(const SumSquaresPiece* __restrict__ table, int64_t count,
                                            double* __restrict__ partial) {
  __shared__ double scratch[32];
  const int64_t b = blockIdx.x;
  int64_t lo = 0, hi = count;  // upper bound of b among first_partial
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (table[mid].first_partial <= b) lo = mid + 1; else hi = mid;
  }
  const SumSquaresPiece piece = table[lo - 1];
  const double acc = ChunkSumSquares(piece.data, piece.n, b - piece.first_partial, scratch);
  if (threadIdx.x == 0) partial[b] = acc;
}

// Block i: out[i] = the sum of piece i's partials, as SumDoublesKernel sums them.
__global__ void SumSquaresEachTotalKernel(const SumSquaresPiece* __restrict__ table, int64_t count,
                                          int64_t total_partials, const double* __restrict__ partial,
                                          double* __restrict__ out) {
  __shared__ double scratch[32];
  const int64_t i = blockIdx.x;
  const int64_t first = table[i].first_partial;
  const int64_t end = i + 1 < count ? table[i + 1].first_partial : total_partials;
  const double acc = BlockSumDoubles(partial + first, end - first, scratch);
  if (threadIdx.x == 0) out[i] = acc;
}

// C[rows, cols] (leading dimension ld) = beta == 0 ? 0 : beta * C.
__global__ void ScaleMatrixKernel(float* c, int64_t rows, int64_t cols, int64_t ld, float beta) {
  for (GridWalk2D w(rows, cols); w.valid(); w.next()) {
    float* p = c + w.r * ld + w.c;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

// dst [rows, cols] BF16 (round to nearest even, leading dim dst_ld) from src [rows, cols] (ld).
__global__ void PackBf16Kernel(const float* __restrict__ src, int64_t rows, int64_t cols,
                               int64_t ld, __nv_bfloat16* __restrict__ dst, int64_t dst_ld) {
  for (GridWalk2D w(rows, cols); w.valid(); w.next()) dst[w.r * dst_ld + w.c] = __float2bfloat16_rn(src[w.r * ld + w.c]);
}

// dst [rows, cols] FP32 (dst_ld) = src [rows, cols] (ld) rounded to BF16 (nearest even), widened back.
__global__ void RoundToBf16IntoKernel(const float* __restrict__ src, int64_t rows, int64_t cols, int64_t ld,
                                      float* __restrict__ dst, int64_t dst_ld) {
  for (GridWalk2D w(rows, cols); w.valid(); w.next()) {
    dst[w.r * dst_ld + w.c] = __bfloat162float(__float2bfloat16_rn(src[w.r * ld + w.c]));
  }
}

__global__ void UnpackBf16Kernel(const uint16_t* __restrict__ bits, int64_t rows, int64_t cols, int64_t ld,
                                 float* __restrict__ dst, int64_t dst_ld) {
  for (GridWalk2D w(rows, cols); w.valid(); w.next()) {
    dst[w.r * dst_ld + w.c] = __int_as_float(static_cast<int>(static_cast<uint32_t>(bits[w.r * ld + w.c]) << 16));
  }
}

template <typename T>
void LaunchCopy2DAs(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows,
                    int64_t cols, bool accumulate, cudaStream_t stream) {
  const unsigned grid = GridFor(rows * cols);
  if (accumulate) {
    Copy2DKernel<T, true><<<grid, kThreads, 0, stream>>>(src, src_ld, dst, dst_ld, rows, cols);
  } else {
    Copy2DKernel<T, false><<<grid, kThreads, 0, stream>>>(src, src_ld, dst, dst_ld, rows, cols);
  }
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void LaunchRoundToBf16(float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  RoundToBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(x, n);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchRoundAndPackBf16(float* x, int64_t n, uint16_t* bits, cudaStream_t stream) {
  if (n <= 0) return;
  RoundAndPackBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, reinterpret_cast<__nv_bfloat16*>(bits));
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchAdd(const float* a, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  AddKernel<<<GridFor(n), kThreads, 0, stream>>>(a, y, n);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchAddAndRoundToBf16(const float* a, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  AddAndRoundToBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(a, y, n);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchScale(float* x, int64_t n, float s, cudaStream_t stream) {
  if (n <= 0) return;
  ScaleKernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, s);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchSwigluForward(const float* a, const float* c, ValuesOut m, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  WithWriter(m, [&](auto write_m) {
    using WriteM = decltype(write_m);
    SwigluForwardKernel<WriteM><<<GridFor(n), kThreads, 0, stream>>>(a, c, write_m, n);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchSwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc, int64_t n,
                          cudaStream_t stream) {
  if (n <= 0) return;
  MOE_CUDA_REQUIRE((da.bf16 == nullptr) == (dc.bf16 == nullptr), "SwigluBackward: da and dc in different forms");
  WithReader(a, [&](auto read_a) {
    WithReader(c, [&](auto read_c) {
      WithWriter(da, [&](auto write_da) {
        using ReadA = decltype(read_a);
        using ReadC = decltype(read_c);
        using Write = decltype(write_da);
        const Write write_dc = Write::Of(dc);
        SwigluBackwardKernel<ReadA, ReadC, Write><<<GridFor(n), kThreads, 0, stream>>>(read_a, read_c, dm, write_da, write_dc, n);
      });
    });
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchAdamW(const AdamWArgs& p, float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamWWorking& working, cudaStream_t stream) {
  if (n <= 0) return;
  AdamWKernel<<<GridFor(n), kThreads, 0, stream>>>(param, grad, m, v, n, p.lr, p.beta1, p.beta2,
                                                   p.eps, p.weight_decay, p.bias_correction1,
                                                   p.bias_correction2, p.grad_scale, working.values,
                                                   reinterpret_cast<__nv_bfloat16*>(working.bits),
                                                   working.round_bf16);
  MOE_CUDA_CHECK_LAUNCH();
}

int64_t AdamWChunks(int64_t n) { return n <= 0 ? 0 : CeilDiv(n, kAdamWChunk); }

void LaunchAdamWEach(const AdamWArgs& p, const AdamWPieceArgs* table, int64_t count, int64_t total_chunks,
                     cudaStream_t stream) {
  if (count <= 0 || total_chunks <= 0) return;
  MOE_CUDA_REQUIRE(total_chunks <= 0x7fffffff, "AdamWEach: too many chunks for one grid");
  AdamWEachKernel<<<static_cast<unsigned>(total_chunks), kThreads, 0, stream>>>(table, count, p.lr, p.beta1, p.beta2, p.eps, p.bias_correction1, p.bias_correction2, p.grad_scale);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchFill(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return;
  FillKernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, value);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchCopy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
                  int64_t cols, bool accumulate, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (rows == 1 || (src_ld == cols && dst_ld == cols)) {  // one contiguous run
    cols *= rows;
    rows = 1;
    src_ld = dst_ld = cols;
  }
  MOE_CUDA_REQUIRE(src_ld >= cols && dst_ld >= cols, "Copy2D leading dims must cover a row");
  if (Aligned16(src) && Aligned16(dst) && cols >= 4 &&
      (rows == 1 || (cols % 4 == 0 && src_ld % 4 == 0 && dst_ld % 4 == 0))) {
    // 16-byte accesses; a contiguous run's last cols % 4 elements go by a scalar launch.
    const int64_t cols4 = cols / 4, tail = cols - 4 * cols4;
    LaunchCopy2DAs(reinterpret_cast<const float4*>(src), src_ld / 4, reinterpret_cast<float4*>(dst),
                   dst_ld / 4, rows, cols4, accumulate, stream);
    if (tail > 0) {
      LaunchCopy2DAs(src + 4 * cols4, tail, dst + 4 * cols4, tail, 1, tail, accumulate, stream);
    }
    return;
  }
  LaunchCopy2DAs(src, src_ld, dst, dst_ld, rows, cols, accumulate, stream);
}

int64_t SumSquaresPartials(int64_t n) { return n <= 0 ? 0 : CeilDiv(n, kSumChunk); }

void LaunchSumSquares(const float* x, int64_t n, double* partials, double* out,
                      cudaStream_t stream) {
  const int64_t num = SumSquaresPartials(n);
  if (num > 0) {
    MOE_CUDA_REQUIRE(num <= 0x7fffffff, "SumSquares: too many chunks for one grid");
    SumSquaresPartialKernel<<<static_cast<unsigned>(num), kThreads, 0, stream>>>(x, n, partials);
    MOE_CUDA_CHECK_LAUNCH();
  }
  LaunchSumDoubles(partials, num, out, stream);
}

void LaunchSumSquaresEach(const SumSquaresPiece* table, int64_t count, int64_t total_partials,
                          double* partials, double* out, cudaStream_t stream) {
  if (count <= 0) return;
  if (total_partials > 0) {
    MOE_CUDA_REQUIRE(total_partials <= 0x7fffffff, "SumSquaresEach: too many chunks for one grid");
    SumSquaresEachPartialKernel<<<static_cast<unsigned>(total_partials), kThreads, 0, stream>>>(table, count, partials);
    MOE_CUDA_CHECK_LAUNCH();
  }
  MOE_CUDA_REQUIRE(count <= 0x7fffffff, "SumSquaresEach: too many pieces for one grid");
  SumSquaresEachTotalKernel<<<static_cast<unsigned>(count), 1024, 0, stream>>>(table, count, total_partials, partials, out);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchSumDoubles(const double* in, int64_t n, double* out, cudaStream_t stream) {
  SumDoublesKernel<<<1, 1024, 0, stream>>>(in, n, out);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchScaleMatrix(float* c, int64_t rows, int64_t cols, int64_t ld, float beta,
                       cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  ScaleMatrixKernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(c, rows, cols, ld, beta);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchUnpackBf16(const uint16_t* bits, int64_t rows, int64_t cols, int64_t ld, float* dst, int64_t dst_ld,
                      cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  UnpackBf16Kernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(bits, rows, cols, ld, dst, dst_ld);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchRoundToBf16Into(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst, int64_t dst_ld,
                           cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  RoundToBf16IntoKernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(src, rows, cols, ld, dst, dst_ld);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchPackBf16(const float* src, int64_t rows, int64_t cols, int64_t ld, void* dst,
                    int64_t dst_ld, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  PackBf16Kernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(
      src, rows, cols, ld, static_cast<__nv_bfloat16*>(dst), dst_ld);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
