// RMSNorm over rows (docs/model.md "RMSNorm", "Backward: RMSNorm"):
//   r = 1 / sqrt(mean(x^2) + eps)    y = w * (x r)    (x r rounded to BF16 when round_normalized)
//   dw += sum_rows dy * x r          dx = r (w dy) - x r^3 (1/n) sum_j w_j dy_j x_j
// The backward treats the BF16 rounding as the identity (straight-through). Row statistics
// accumulate in FP64; dw sums the rows in fixed chunks of Backend::kRmsNormDwChunk (each in row
// order, then the chunks in order, as the CUDA twin does), so it is independent of the thread count.
// Row sums are cpu_internal::LaneSum (fixed FP64 lanes, vectorised).
#include <algorithm>
#include <cmath>
#include <vector>

#include "base/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

using cpu_internal::kMinParallelElements;

namespace {

// Row i of the forward.
MOE_CPU_SIMD_CLONES void RmsNormForwardRow(const float* __restrict__ xr, const float* __restrict__ w, int64_t dim,
                                           float eps, bool round_normalized, float* __restrict__ yr, float* rstd) {
  const double ss = cpu_internal::LaneSum(dim, [xr](int64_t j) {
    const double v = xr[j];
    return v * v;
  });
  const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
  *rstd = r;
  if (round_normalized) {
    for (int64_t j = 0; j < dim; ++j) yr[j] = w[j] * moe::RoundToBf16(xr[j] * r);
  } else {
    for (int64_t j = 0; j < dim; ++j) yr[j] = w[j] * (xr[j] * r);
  }
}

// Rows [r0, r1) of the backward: their dx rows, and their dw terms summed in row order into acc [dim].
template <typename ReadX>
MOE_CPU_SIMD_CLONES void RmsNormBackwardRows(ReadX read_x, const float* __restrict__ w, const float* rstd,
                                             const float* __restrict__ dy, int64_t dim, float* __restrict__ dx,
                                             float* __restrict__ acc, int64_t r0, int64_t r1) {
  std::fill(acc, acc + dim, 0.0f);
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t x0 = i * dim;
    const float* gr = dy + i * dim;
    float* dxr = dx + i * dim;
    const float r = rstd[i];
    const double dot = cpu_internal::LaneSum(dim, [w, gr, read_x, x0](int64_t j) {  // sum_j w_j dy_j x_j
      return static_cast<double>(w[j]) * gr[j] * read_x(x0 + j);
    });
    const float coef = static_cast<float>(static_cast<double>(r) * r * r * dot / static_cast<double>(dim));
    for (int64_t j = 0; j < dim; ++j) {
      const float xj = read_x(x0 + j);
      dxr[j] = r * (w[j] * gr[j]) - xj * coef;
      acc[j] += gr[j] * (xj * r);
    }
  }
}

}  // namespace

// x, y [rows, dim]; w [dim]; rstd [rows].
void CpuBackend::RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim,
                                float eps, bool round_normalized, float* y, float* rstd) {
  const auto op_timer = TimeOp("rmsnorm_fwd");
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (rows * dim >= kMinParallelElements)
  for (int64_t i = 0; i < rows; ++i) {
    RmsNormForwardRow(x + i * dim, w, dim, eps, round_normalized, y + i * dim, rstd + i);
  }
}

// dx written, dw accumulated (+=).
void CpuBackend::RmsNormBackward(ValuesIn x, const float* w, const float* rstd, const float* dy,
                                 int64_t rows, int64_t dim, float* dx, float* dw) {
  const auto op_timer = TimeOp("rmsnorm_bwd");
  if (rows <= 0 || dim <= 0) return;
  const bool parallel = rows * dim >= kMinParallelElements;
  // One pass over x and dy: each chunk of kRmsNormDwChunk rows writes its dx rows and sums its dw
  // partial while the rows are in cache; the partials are then added per column in chunk order.
  const int64_t chunks = (rows + kRmsNormDwChunk - 1) / kRmsNormDwChunk;
  thread_local std::vector<float> partial;
  partial.resize(chunks * dim);
  float* part = partial.data();
  cpu_internal::WithReader(x, [&](auto read_x) {
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (parallel)
    for (int64_t c = 0; c < chunks; ++c) {
      RmsNormBackwardRows(read_x, w, rstd, dy, dim, dx, part + c * dim, c * kRmsNormDwChunk,
                          std::min(rows, (c + 1) * kRmsNormDwChunk));
    }
  });
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (parallel)
  for (int64_t j = 0; j < dim; ++j) {
    float sum = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) sum += part[c * dim + j];
    dw[j] += sum;
  }
}

}  // namespace moe::kernels
