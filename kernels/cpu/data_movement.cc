// Data movement and per-row ops: Copy2D (strided copy or add), Fill, RowDot (FP64 per-row dot
// products) and ScaleRows. No op here races or reduces across threads, so every result is the same
// for any thread count; RowDot sums each row in 8 FP64 lanes (cpu_internal::LaneSum), a fixed order: a
// sequential FP64 chain was latency-bound (~0.85 ms per MoE layer on bench_wide).
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

using cpu_internal::kMinParallelElements;

void CpuBackend::CopyBf16(const uint16_t* src, uint16_t* dst, int64_t n) {
  const auto op_timer = TimeOp("copy_bf16");
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

void CpuBackend::Copy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
                        int64_t cols, bool accumulate) {
  const auto op_timer = TimeOp("copy2d");
  if (rows <= 0 || cols <= 0) return;
  if (rows == 1 || (src_ld == cols && dst_ld == cols)) {
    // One contiguous run (Copy of a whole tensor): split by elements, not by its one row.
    const int64_t n = rows * cols;
    if (accumulate) {
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
      for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
    } else {
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    }
    return;
  }
  MOE_CPU_CHECK(src_ld >= cols && dst_ld >= cols, "Copy2D leading dims must cover a row");
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (rows * cols >= kMinParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = src + r * src_ld;
    float* out = dst + r * dst_ld;
    if (accumulate) {
      for (int64_t c = 0; c < cols; ++c) out[c] += in[c];
    } else {
      std::memcpy(out, in, sizeof(float) * cols);
    }
  }
}

void CpuBackend::Fill(float* x, int64_t n, float value) {
  const auto op_timer = TimeOp("fill");
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

void CpuBackend::RowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out) {
  const auto op_timer = TimeOp("row_dot");
  cpu_internal::WithReader(b, [&](auto read_b) {
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (rows * dim >= kMinParallelElements)
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = a + r * dim;
      const int64_t r0 = r * dim;
      out[r] = static_cast<float>(cpu_internal::LaneSum(
          dim, [x, read_b, r0](int64_t j) { return static_cast<double>(x[j]) * read_b(r0 + j); }));
    }
  });
}

void CpuBackend::ScaleRows(float* x, const float* s, int64_t rows, int64_t dim) {
  const auto op_timer = TimeOp("scale_rows");
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (rows * dim >= kMinParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float sr = s[r];
    float* row = x + r * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] *= sr;
  }
}

}  // namespace moe::kernels
