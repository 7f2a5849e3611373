#include "trainer/optimizer.h"

#include <cmath>

namespace moe::trainer {

double GlobalGradNorm(kernels::Backend& ops, const model::ParamStore& params) {
  double sum = 0.0;
  params.ForEach([&](const model::Param& p) {
    if (p.trainable()) sum += ops.SumSquares(p.grad.data(), p.numel());
  });
  return std::sqrt(sum);
}

OptimizerStepStats AdamWStep(kernels::Backend& ops, const config::OptimizerConfig& opt, double lr,
                             int64_t step, bool bf16, model::ParamStore* params) {
  OptimizerStepStats stats;
  stats.grad_norm = GlobalGradNorm(ops, *params);
  if (opt.grad_clip() > 0) {
    const double coef = opt.grad_clip() / (stats.grad_norm + 1e-6);
    if (coef < 1.0) stats.clip_coef = coef;
  }
  kernels::AdamWParams ap;
  ap.lr = static_cast<float>(lr);
  ap.beta1 = static_cast<float>(opt.beta1());
  ap.beta2 = static_cast<float>(opt.beta2());
  ap.eps = static_cast<float>(opt.eps());
  ap.step = step;
  params->ForEach([&](model::Param& p) {
    if (!p.trainable()) return;
    if (stats.clip_coef != 1.0) ops.Scale(p.grad.data(), p.numel(), static_cast<float>(stats.clip_coef));
    ap.weight_decay = p.decays() ? static_cast<float>(opt.weight_decay()) : 0.0f;
    ops.AdamW(ap, p.master.data(), p.grad.data(), p.adam_m.data(), p.adam_v.data(), p.numel());
  });
  params->RefreshWorking(bf16);
  return stats;
}

}  // namespace moe::trainer
