// AdamW with decoupled weight decay (docs/model.md "Optimizer step"), in place on FP32 masters and moments:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mhat = m / (1-b1^t);  vhat = v / (1-b2^t)
//   p = p - lr (mhat / (sqrt(vhat) + eps) + wd p)        (the old p in the decay term)
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

void CpuBackend::AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
                       int64_t n) {
  const auto op_timer = TimeOp("adamw");
  MOE_CPU_CHECK(p.step >= 1, "AdamW step is 1-based");
  const float b1 = p.beta1, b2 = p.beta2;
  const float bc1 =
      static_cast<float>(1.0 - std::pow(static_cast<double>(b1), static_cast<double>(p.step)));
  const float bc2 =
      static_cast<float>(1.0 - std::pow(static_cast<double>(b2), static_cast<double>(p.step)));
  const float lr = p.lr, eps = p.eps, wd = p.weight_decay;
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (n >= cpu_internal::kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1;
    const float vhat = vi / bc2;
    param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * param[i]);
  }
}

}  // namespace moe::kernels
