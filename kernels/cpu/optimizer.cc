// AdamW with decoupled weight decay (docs/model.md "Optimizer step"), in place on FP32 masters and moments:
// g = grad * grad_scale (the clipping coefficient, 1 without clipping: the same FP32 product the separate
// scaling pass made, without its pass over the gradients), then
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mhat = m / (1-b1^t);  vhat = v / (1-b2^t)
//   p = p - lr (mhat / (sqrt(vhat) + eps) + wd p)        (the old p in the decay term)
// and, where asked, the working copy of the new p (FP32, or BF16-rounded as FP32 words and/or bits) in the
// same pass.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "base/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

namespace {

// What the update loop also writes, fixed at compile time so that each variant's loop vectorises (the
// arrays never overlap: restrict spares the compiler alias checks it would otherwise give up on).
enum class WorkingOut { kNone, kFp32, kBf16, kBits, kBf16AndBits };

struct AdamWScalars {
  float b1, b2, bc1, bc2, lr, eps, wd, gs;
};

// Elements [begin, end), on the calling thread.
template <WorkingOut kOut>
void AdamWRange(int64_t begin, int64_t end, const AdamWScalars& k, float* __restrict__ param,
                const float* __restrict__ grad, float* __restrict__ m, float* __restrict__ v,
                float* __restrict__ out, uint16_t* __restrict__ out_bits) {
  const float b1 = k.b1, b2 = k.b2, bc1 = k.bc1, bc2 = k.bc2, lr = k.lr, eps = k.eps, wd = k.wd, gs = k.gs;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1;
    const float vhat = vi / bc2;
    const float updated = param[i] - lr * (mhat / (std::sqrt(vhat) + eps) + wd * param[i]);
    param[i] = updated;
    if constexpr (kOut == WorkingOut::kFp32) out[i] = updated;
    if constexpr (kOut == WorkingOut::kBf16 || kOut == WorkingOut::kBits || kOut == WorkingOut::kBf16AndBits) {
      const uint16_t b = moe::FloatToBf16Bits(updated);
      if constexpr (kOut != WorkingOut::kBits) out[i] = moe::Bf16BitsToFloat(b);
      if constexpr (kOut != WorkingOut::kBf16) out_bits[i] = b;
    }
  }
}

}  // namespace

void CpuBackend::AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
                       int64_t n, const AdamWWorking& working) {
  const auto op_timer = TimeOp("adamw");
  MOE_CPU_CHECK(p.step >= 1, "AdamW step is 1-based");
  MOE_CPU_CHECK(working.bits == nullptr || working.round_bf16, "AdamW: working bits need round_bf16");
  AdamWScalars k;
  k.b1 = p.beta1;
  k.b2 = p.beta2;
  k.bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step)));
  k.bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step)));
  k.lr = p.lr;
  k.eps = p.eps;
  k.wd = p.weight_decay;
  k.gs = p.grad_scale;
  const auto range = working.bits != nullptr ? (working.values == nullptr ? AdamWRange<WorkingOut::kBits>
                                                                          : AdamWRange<WorkingOut::kBf16AndBits>)
                     : working.values == nullptr ? AdamWRange<WorkingOut::kNone>
                     : working.round_bf16        ? AdamWRange<WorkingOut::kBf16>
                                                 : AdamWRange<WorkingOut::kFp32>;
  // A one-rank optimizer calls this once per tensor: small tensors skip the parallel region's cost.
  cpu_internal::ParallelRanges(num_threads_, n, [&](int64_t begin, int64_t end) {
    range(begin, end, k, param, grad, m, v, working.values, working.bits);
  });
}

}  // namespace moe::kernels
