// RoPE frequencies with optional scaling (none / linear / YaRN, docs/model.md "YaRN") and the MLA softmax
// scale (docs/model.md "Softmax scale"). Angles are computed in FP64 before cos/sin (docs/model.md "RoPE
// frequencies and angles"); YaRN's attention factor `a` is folded into the tables so the kernels only
// rotate.
#pragma once

#include <cstdint>
#include <vector>

#include "base/buffer.h"
#include "kernels/backend.h"
#include "configs/config.pb.h"

namespace moe::model {

enum class RopeScalingType { kNone, kLinear, kYarn };

RopeScalingType ScalingTypeOf(const config::ModelConfig& m);

// θ'_i for i = 0 .. qk_rope_head_dim/2 - 1.
std::vector<double> RopeInverseFrequencies(const config::ModelConfig& m);

// YaRN's `m(s, c)`: 1 if s <= 1 else 0.1 c ln(s) + 1.
double YarnMscale(double factor, double c);

// The factor `a` multiplying cos/sin (1 unless YaRN).
double RopeAttentionFactor(const config::ModelConfig& m);

// dqk^{-1/2}, times m(s, mscale_all_dim)^2 when rope_scaling carries a non-zero mscale_all_dim.
double SoftmaxScale(const config::ModelConfig& m);

struct RopeTables {
  int64_t max_positions = 0;
  int64_t half_dim = 0;
  Buffer<float> cos;  // [max_positions, half_dim], times the attention factor (read by the RoPE op)
  Buffer<float> sin;  // [max_positions, half_dim], times the attention factor
};

// Computed on the host (FP64 angles) and copied in through `ops`, the backend whose memory holds them.
RopeTables BuildRopeTables(const config::ModelConfig& m, int64_t max_positions, kernels::Backend& ops);

}  // namespace moe::model
