// RoPE on interleaved pairs (docs/model.md "RoPE on interleaved pairs", "Backward: RoPE"), in place over
// a strided RopeView. The attention factor is already folded into the cos/sin tables [max_pos, half_dim].
//   forward:  y0 = x0 cos - x1 sin     y1 = x0 sin + x1 cos
//   backward: the transposed rotation (same cos, negated sin).
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {
namespace {

// sign = +1 rotates by +phi (forward), -1 by the transpose (backward).
void Rotate(const RopeView& v, float sign, int threads) {
  const int64_t work = v.num_tokens * v.num_heads * v.half_dim * 2;
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (work >= cpu_internal::kMinParallelElements)
  for (int64_t t = 0; t < v.num_tokens; ++t) {
    const int64_t pos = v.positions[t];
    const float* cs = v.cos + pos * v.half_dim;
    const float* sn = v.sin + pos * v.half_dim;
    for (int64_t h = 0; h < v.num_heads; ++h) {
      float* x = v.x + t * v.token_stride + h * v.head_stride + v.offset;
      for (int64_t i = 0; i < v.half_dim; ++i) {
        const float c = cs[i];
        const float s = sign * sn[i];
        const float x0 = x[2 * i];
        const float x1 = x[2 * i + 1];
        x[2 * i] = x0 * c - x1 * s;
        x[2 * i + 1] = x0 * s + x1 * c;
      }
    }
  }
}

}  // namespace

void CpuBackend::RopeForward(const RopeView& v) {
  const auto op_timer = TimeOp("rope_fwd");
  Rotate(v, 1.0f, num_threads_);
}
void CpuBackend::RopeBackward(const RopeView& v) {
  const auto op_timer = TimeOp("rope_bwd");
  Rotate(v, -1.0f, num_threads_);
}

}  // namespace moe::kernels
