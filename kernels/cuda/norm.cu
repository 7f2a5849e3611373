// RMSNorm forward/backward over rows of x [rows, dim] (kernels/cpu/norm.cc is the twin):
//   r = 1 / sqrt(mean(x^2) + eps)  (FP64 statistics)    y = w * (x r), x r rounded to BF16 if asked
//   dx = r (w dy) - x r^3 (1/dim) sum_j w_j dy_j x_j   (written)
//   dw += sum_rows dy * (x r)                           (accumulated)
// One block per row for the row statistics. dw is a column reduction over all rows; to keep it
// deterministic and still parallel, rows are cut into fixed chunks of kDwChunk: each thread sums one
// column of one chunk in row order into a partial, and a second kernel adds the partials of each
// column in chunk order. The result depends on kDwChunk, never on scheduling.
#include <cuda_bf16.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kNormThreads = 256;
constexpr int kColThreads = 128;

__global__ void RmsNormForwardKernel(const float* __restrict__ x, const float* __restrict__ w,
                                     int64_t rows, int64_t dim, float eps, bool round_normalized,
                                     float* __restrict__ y, float* __restrict__ rstd) {
  __shared__ double scratch[32];
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const float* xr = x + i * dim;
    float* yr = y + i * dim;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const double v = xr[j];
      ss += v * v;
    }
    ss = BlockSum(ss, scratch);
    const float r = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(dim) + eps));
    if (threadIdx.x == 0) rstd[i] = r;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      float nx = xr[j] * r;
      if (round_normalized) nx = __bfloat162float(__float2bfloat16_rn(nx));
      yr[j] = w[j] * nx;
    }
  }
}

template <typename ReadX>
__global__ void RmsNormDxKernel(ReadX x, const float* __restrict__ w, const float* __restrict__ rstd,
                                const float* __restrict__ dy, int64_t rows, int64_t dim, float* __restrict__ dx) {
  __shared__ double scratch[32];
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const int64_t x0 = i * dim;
    const float* gr = dy + i * dim;
    float* dxr = dx + i * dim;
    const float r = rstd[i];
    double dot = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      dot += static_cast<double>(w[j]) * gr[j] * x(x0 + j);
    }
    dot = BlockSum(dot, scratch);
    const float coef =
        static_cast<float>(static_cast<double>(r) * r * r * dot / static_cast<double>(dim));
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      dxr[j] = r * (w[j] * gr[j]) - x(x0 + j) * coef;
    }
  }
}

// grid (column blocks, row chunks): partial[chunk, j] = sum over the chunk's rows of dy * (x r).
template <typename ReadX>
__global__ void RmsNormDwPartialKernel(ReadX x, const float* __restrict__ rstd, const float* __restrict__ dy,
                                       int64_t rows, int64_t dim, float* __restrict__ partial) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= dim) return;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * kDwChunk;
  const int64_t r1 = r0 + kDwChunk < rows ? r0 + kDwChunk : rows;
  float acc = 0.0f;
  for (int64_t i = r0; i < r1; ++i) acc += dy[i * dim + j] * (x(i * dim + j) * rstd[i]);
  partial[chunk * dim + j] = acc;
}

__global__ void RmsNormDwFinalKernel(const float* __restrict__ partial, int64_t chunks, int64_t dim,
                                     float* __restrict__ dw) {
  const int64_t j = GlobalThread();
  if (j >= dim) return;
  float acc = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[c * dim + j];
  dw[j] += acc;
}

unsigned RowBlocks(int64_t rows) {
  return static_cast<unsigned>(rows < kMaxBlocks * 8 ? rows : kMaxBlocks * 8);
}

}  // namespace

int64_t RmsNormDwChunks(int64_t rows) { return CeilDiv(rows, kDwChunk); }

void LaunchRmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                          bool round_normalized, float* y, float* rstd, cudaStream_t stream) {
  if (rows <= 0) return;
  MOE_CUDA_REQUIRE(dim > 0, "RmsNorm: dim must be positive");
  RmsNormForwardKernel<<<RowBlocks(rows), kNormThreads, 0, stream>>>(x, w, rows, dim, eps,
                                                                     round_normalized, y, rstd);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchRmsNormBackward(ValuesIn x, const float* w, const float* rstd, const float* dy,
                           int64_t rows, int64_t dim, float* dx, float* dw, float* partial,
                           cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  const int64_t chunks = RmsNormDwChunks(rows);
  MOE_CUDA_REQUIRE(chunks <= 65535, "RmsNorm backward: too many row chunks for grid.y");
  const dim3 grid(static_cast<unsigned>(CeilDiv(dim, kColThreads)), static_cast<unsigned>(chunks));
  WithReader(x, [&](auto read_x) {
    using ReadX = decltype(read_x);
    RmsNormDxKernel<ReadX><<<RowBlocks(rows), kNormThreads, 0, stream>>>(read_x, w, rstd, dy, rows, dim, dx);
    MOE_CUDA_CHECK_LAUNCH();
    RmsNormDwPartialKernel<ReadX><<<grid, kColThreads, 0, stream>>>(read_x, rstd, dy, rows, dim, partial);
    MOE_CUDA_CHECK_LAUNCH();
  });
  RmsNormDwFinalKernel<<<static_cast<unsigned>(CeilDiv(dim, kColThreads)), kColThreads, 0,
                         stream>>>(partial, chunks, dim, dw);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
