// AdamW over the model's parameters with global-norm clipping (spec §6.4). Masters and moments are
// FP32; after the update the working copies are refreshed (BF16-rounded in BF16 mode).
//
// This is the single-process optimizer; the ZeRO-1 sharded version (parallel/) keeps the same step
// semantics on a DP shard of each tensor.
#pragma once

#include <cstdint>

#include "configs/config.pb.h"
#include "kernels/backend.h"
#include "model/params.h"

namespace moe::trainer {

struct OptimizerStepStats {
  double grad_norm = 0;  // global L2 norm before clipping
  double clip_coef = 1;  // factor applied to the gradients (1: no clipping)
};

// Global L2 norm of all trainable gradients, each parameter counted once (FP64 accumulation).
double GlobalGradNorm(kernels::Backend& ops, const model::ParamStore& params);

// Clips, applies AdamW with learning rate `lr` at 1-based step `step`, refreshes working copies.
// Gradients are left clipped (the caller zeroes them before the next step).
OptimizerStepStats AdamWStep(kernels::Backend& ops, const config::OptimizerConfig& opt, double lr,
                             int64_t step, bool bf16, model::ParamStore* params);

}  // namespace moe::trainer
