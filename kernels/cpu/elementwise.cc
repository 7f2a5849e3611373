// Elementwise ops (BF16 rounding, add, scale, sum of squares, SwiGLU) and row movement (embedding,
// gather, scatter-add). Reductions use fixed-size chunks summed in order, so results do not depend
// on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

using cpu_internal::kMinParallelElements;

namespace {

// The BF16 conversions' loops, AVX-512 where the CPU has it (narrowing to 16 bits is one instruction).
MOE_CPU_SIMD_CLONES void RoundRange(float* x, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) x[i] = moe::RoundToBf16(x[i]);
}

MOE_CPU_SIMD_CLONES void PackRange(const float* __restrict__ x, uint16_t* __restrict__ bits, int64_t begin,
                                   int64_t end) {
  for (int64_t i = begin; i < end; ++i) bits[i] = moe::FloatToBf16Bits(x[i]);
}

MOE_CPU_SIMD_CLONES void RoundAndPackRange(float* __restrict__ x, uint16_t* __restrict__ bits, int64_t begin,
                                           int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    bits[i] = moe::FloatToBf16Bits(x[i]);
    x[i] = moe::Bf16BitsToFloat(bits[i]);
  }
}

MOE_CPU_SIMD_CLONES void AddAndRoundRange(const float* __restrict__ a, float* __restrict__ y, int64_t begin,
                                          int64_t end) {
  for (int64_t i = begin; i < end; ++i) y[i] = moe::RoundToBf16(y[i] + a[i]);
}

}  // namespace

void CpuBackend::RoundToBf16(float* x, int64_t n) {
  const auto op_timer = TimeOp("round_bf16");
  cpu_internal::ParallelRanges(num_threads_, n, [&](int64_t begin, int64_t end) { RoundRange(x, begin, end); });
}

void CpuBackend::PackBf16(const float* x, int64_t n, uint16_t* bits) {
  const auto op_timer = TimeOp("pack_bf16");
  cpu_internal::ParallelRanges(num_threads_, n, [&](int64_t begin, int64_t end) { PackRange(x, bits, begin, end); });
}

void CpuBackend::RoundAndPackBf16(float* x, int64_t n, uint16_t* bits) {
  const auto op_timer = TimeOp("round_pack_bf16");
  cpu_internal::ParallelRanges(num_threads_, n,
                               [&](int64_t begin, int64_t end) { RoundAndPackRange(x, bits, begin, end); });
}

void CpuBackend::UnpackBf16(const uint16_t* bits, int64_t n, float* x) {
  const auto op_timer = TimeOp("unpack_bf16");
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) x[i] = moe::Bf16BitsToFloat(bits[i]);
}

void CpuBackend::Add(const float* a, float* y, int64_t n) {
  const auto op_timer = TimeOp("add");
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) y[i] += a[i];
}

void CpuBackend::AddAndRoundToBf16(const float* a, float* y, int64_t n) {
  const auto op_timer = TimeOp("add_round_bf16");
  cpu_internal::ParallelRanges(num_threads_, n, [&](int64_t begin, int64_t end) { AddAndRoundRange(a, y, begin, end); });
}

void CpuBackend::Scale(float* x, int64_t n, float s) {
  const auto op_timer = TimeOp("scale");
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

double CpuBackend::SumSquares(const float* x, int64_t n) {
  const auto op_timer = TimeOp("sum_squares");
  if (n <= 0) return 0.0;
  // Fixed chunks, each a LaneSum, combined in order: the result is independent of the thread count.
  constexpr int64_t kChunk = 1 << 14;
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(num_chunks, 0.0);
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (num_chunks > 1)
  for (int64_t c = 0; c < num_chunks; ++c) {
    const float* xc = x + c * kChunk;
    partial[c] = cpu_internal::LaneSum(std::min(kChunk, n - c * kChunk), [xc](int64_t j) {
      const double v = xc[j];
      return v * v;
    });
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

// ---- Rows. ----

void CpuBackend::GatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim,
                            float* dst) {
  const auto op_timer = TimeOp("gather_rows");
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (n * dim >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(dst + i * dim, src + static_cast<int64_t>(idx[i]) * dim, sizeof(float) * dim);
  }
}

// Ops run on the calling thread: the data is there at once.
void CpuBackend::CopyFromHost(const void* src, size_t bytes, void* dst) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}
void CpuBackend::CopyToHost(const void* src, size_t bytes, void* dst) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void CpuBackend::GatherRowBlocks(const float* src, const std::vector<RowBlock>& blocks, int64_t dim, float* dst) {
  const auto op_timer = TimeOp("gather_row_blocks");
  std::vector<int64_t> first(blocks.size() + 1, 0);  // block b fills dst rows [first[b], first[b + 1])
  for (size_t b = 0; b < blocks.size(); ++b) first[b + 1] = first[b] + blocks[b].rows;
  const int64_t rows = first.back();
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (rows * dim >= kMinParallelElements)
  for (int64_t q = 0; q < rows; ++q) {  // by row, so one big block still spreads over the threads
    const int64_t b = std::upper_bound(first.begin(), first.end(), q) - first.begin() - 1;
    std::memcpy(dst + q * dim, src + (blocks[b].src_row + q - first[b]) * dim, sizeof(float) * dim);
  }
}

void CpuBackend::ScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                                int64_t dim, float* dst) {
  const auto op_timer = TimeOp("scatter_add_rows");
  cpu_internal::ScatterAddByColumns(num_threads_, src, idx, scale, n, dim, dst);
}

void CpuBackend::EmbeddingForward(const int32_t* ids, int64_t n, const float* table, const uint16_t* table_bf16,
                                  int64_t dim, float* out) {
  const auto op_timer = TimeOp("embedding_fwd");
  if (table_bf16 == nullptr) return GatherRows(table, ids, n, dim, out);
#pragma omp parallel for num_threads(num_threads_) schedule(static) if (n * dim >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* in = table_bf16 + static_cast<int64_t>(ids[i]) * dim;
    float* row = out + i * dim;
#pragma omp simd
    for (int64_t c = 0; c < dim; ++c) row[c] = moe::Bf16BitsToFloat(in[c]);
  }
}

void CpuBackend::EmbeddingBackward(const int32_t* ids, int64_t n, const float* d_out, int64_t dim,
                                   float* d_table) {
  const auto op_timer = TimeOp("embedding_bwd");
  cpu_internal::ScatterAddByColumns(num_threads_, d_out, ids, nullptr, n, dim, d_table);
}

// ---- SwiGLU: m = silu(a) * c, silu(a) = a * sigmoid(a) (docs/model.md "Backward: SwiGLU"). ----

namespace {

template <typename WriteM>
MOE_CPU_SIMD_CLONES void SwigluForwardRange(const float* __restrict__ a, const float* __restrict__ c, WriteM write_m,
                                            int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float sig = 1.0f / (1.0f + cpu_internal::ExpF(-a[i]));
    write_m(i, a[i] * sig * c[i]);
  }
}

template <typename ReadA, typename ReadC, typename Write>
MOE_CPU_SIMD_CLONES void SwigluBackwardRange(ReadA read_a, ReadC read_c, const float* __restrict__ dm,
                                             Write write_da, Write write_dc, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float ai = read_a(i);
    const float sig = 1.0f / (1.0f + cpu_internal::ExpF(-ai));
    const float silu = ai * sig;
    const float dsilu = sig * (1.0f + ai * (1.0f - sig));
    const float g = dm[i];
    write_da(i, g * read_c(i) * dsilu);
    write_dc(i, g * silu);
  }
}

}  // namespace

void CpuBackend::SwigluForward(const float* a, const float* c, ValuesOut m, int64_t n) {
  const auto op_timer = TimeOp("swiglu_fwd");
  cpu_internal::WithWriter(m, [&](auto write_m) {
    cpu_internal::ParallelRanges(num_threads_, n,
                                 [&](int64_t begin, int64_t end) { SwigluForwardRange(a, c, write_m, begin, end); });
  });
}

void CpuBackend::SwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc,
                                int64_t n) {
  const auto op_timer = TimeOp("swiglu_bwd");
  MOE_CPU_CHECK((da.bf16 == nullptr) == (dc.bf16 == nullptr), "SwigluBackward: da and dc in different forms");
  cpu_internal::WithReader(a, [&](auto read_a) {
    cpu_internal::WithReader(c, [&](auto read_c) {
      cpu_internal::WithWriter(da, [&](auto write_da) {
        const auto write_dc = decltype(write_da)::Of(dc);
        cpu_internal::ParallelRanges(num_threads_, n, [&](int64_t begin, int64_t end) {
          SwigluBackwardRange(read_a, read_c, dm, write_da, write_dc, begin, end);
        });
      });
    });
  });
}

}  // namespace moe::kernels
