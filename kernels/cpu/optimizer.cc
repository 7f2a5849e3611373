// AdamW with decoupled weight decay (docs/model.md "Optimizer step"), in place on FP32 masters and moments:
// g = grad * grad_scale (the clipping coefficient, 1 without clipping: the same FP32 product the separate
// scaling pass made, without its pass over the gradients), then
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mhat = m / (1-b1^t);  vhat = v / (1-b2^t)
//   p = p - lr (mhat / (sqrt(vhat) + eps) + wd p)        (the old p in the decay term)
// and, where asked, the working copy of the new p (BF16-rounded, with its bits) in the same pass.
#include <cmath>

#include "base/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

namespace {

// What the update loop also writes, fixed at compile time so that each variant's loop vectorises (the
// arrays never overlap: restrict spares the compiler alias checks it would otherwise give up on).
enum class WorkingOut { kNone, kFp32, kBf16, kBf16AndBits };

template <WorkingOut kOut>
void AdamWLoop(int threads, int64_t n, float b1, float b2, float bc1, float bc2, float lr, float eps,
               float wd, float gs, float* __restrict__ param, const float* __restrict__ grad,
               float* __restrict__ m, float* __restrict__ v, float* __restrict__ out,
               uint16_t* __restrict__ out_bits) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= cpu_internal::kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) {
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
    if constexpr (kOut == WorkingOut::kBf16 || kOut == WorkingOut::kBf16AndBits) {
      const uint16_t b = moe::FloatToBf16Bits(updated);
      out[i] = moe::Bf16BitsToFloat(b);
      if constexpr (kOut == WorkingOut::kBf16AndBits) out_bits[i] = b;
    }
  }
}

}  // namespace

void CpuBackend::AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
                       int64_t n, const AdamWWorking& working) {
  const auto op_timer = TimeOp("adamw");
  MOE_CPU_CHECK(p.step >= 1, "AdamW step is 1-based");
  MOE_CPU_CHECK(working.bits == nullptr || (working.values != nullptr && working.round_bf16),
                "AdamW: working bits need the rounded working values");
  const float b1 = p.beta1, b2 = p.beta2;
  const float bc1 =
      static_cast<float>(1.0 - std::pow(static_cast<double>(b1), static_cast<double>(p.step)));
  const float bc2 =
      static_cast<float>(1.0 - std::pow(static_cast<double>(b2), static_cast<double>(p.step)));
  const auto loop = working.values == nullptr ? AdamWLoop<WorkingOut::kNone>
                    : !working.round_bf16     ? AdamWLoop<WorkingOut::kFp32>
                    : working.bits == nullptr ? AdamWLoop<WorkingOut::kBf16>
                                              : AdamWLoop<WorkingOut::kBf16AndBits>;
  loop(num_threads_, n, b1, b2, bc1, bc2, p.lr, p.eps, p.weight_decay, p.grad_scale, param, grad, m, v,
       working.values, working.bits);
}

}  // namespace moe::kernels
