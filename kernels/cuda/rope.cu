// RoPE on interleaved pairs over a strided view, in place (kernels/cpu/rope.cc is the twin):
//   forward  y0 = x0 c - x1 s,  y1 = x0 s + x1 c;   backward: the same with s negated.
// One thread per (token, head, pair); cos/sin tables [max_pos, half_dim] already hold YaRN's factor.
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

__global__ void RopeKernel(RopeView v, float sign) {
  const int64_t total = v.num_tokens * v.num_heads * v.half_dim;
  for (int64_t e = GlobalThread(); e < total; e += GlobalStride()) {
    const int64_t i = e % v.half_dim;
    const int64_t th = e / v.half_dim;
    const int64_t h = th % v.num_heads;
    const int64_t t = th / v.num_heads;
    const int64_t pos = v.positions[t];
    const float c = v.cos[pos * v.half_dim + i];
    const float s = sign * v.sin[pos * v.half_dim + i];
    float* x = v.x + t * v.token_stride + h * v.head_stride + v.offset + 2 * i;
    const float x0 = x[0], x1 = x[1];
    x[0] = x0 * c - x1 * s;
    x[1] = x0 * s + x1 * c;
  }
}

}  // namespace

void LaunchRope(const RopeView& v, bool backward, cudaStream_t stream) {
  const int64_t total = v.num_tokens * v.num_heads * v.half_dim;
  if (total <= 0) return;
  RopeKernel<<<GridFor(total), kThreads, 0, stream>>>(v, backward ? -1.0f : 1.0f);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
