#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace moe::model {

RopeScalingType ScalingTypeOf(const config::ModelConfig& m) {
  if (!m.has_rope_scaling()) return RopeScalingType::kNone;
  const auto& rs = m.rope_scaling();
  const std::string& type = rs.has_rope_type() ? rs.rope_type() : rs.type();
  if (type == "yarn") return RopeScalingType::kYarn;
  if (type == "linear") return RopeScalingType::kLinear;
  return RopeScalingType::kNone;  // "none"/"default"; unknown types are refused by validation
}

double YarnMscale(double factor, double c) {
  return factor <= 1.0 ? 1.0 : 0.1 * c * std::log(factor) + 1.0;
}

std::vector<double> RopeInverseFrequencies(const config::ModelConfig& m) {
  const int64_t dr = m.qk_rope_head_dim();
  const int64_t half = dr / 2;
  const double base = m.rope_theta();
  std::vector<double> theta(half);
  for (int64_t i = 0; i < half; ++i) theta[i] = std::pow(base, -2.0 * i / dr);

  const RopeScalingType type = ScalingTypeOf(m);
  if (type == RopeScalingType::kNone) return theta;
  const double s = m.rope_scaling().factor();
  if (type == RopeScalingType::kLinear) {
    for (double& t : theta) t /= s;
    return theta;
  }
  // YaRN "NTK-by-parts": keep high-frequency pairs, divide low-frequency pairs by s, linear ramp
  // in the pair index between the floored/ceiled correction bounds (docs/model.md "YaRN" and "Decisions
  // where sources differ" (3)).
  const auto& rs = m.rope_scaling();
  const double l0 = static_cast<double>(rs.original_max_position_embeddings());
  auto corr = [&](double n) { return dr * std::log(l0 / (2.0 * M_PI * n)) / (2.0 * std::log(base)); };
  const double low = std::max(std::floor(corr(rs.beta_fast())), 0.0);
  double high = std::min(std::ceil(corr(rs.beta_slow())), static_cast<double>(dr - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    theta[i] = theta[i] * (1.0 - ramp) + (theta[i] / s) * ramp;
  }
  return theta;
}

double RopeAttentionFactor(const config::ModelConfig& m) {
  if (ScalingTypeOf(m) != RopeScalingType::kYarn) return 1.0;
  const auto& rs = m.rope_scaling();
  if (rs.has_attention_factor()) return rs.attention_factor();
  const double s = rs.factor();
  const bool both = rs.has_mscale() && rs.mscale() != 0 && rs.has_mscale_all_dim() &&
                    rs.mscale_all_dim() != 0;
  if (both) return YarnMscale(s, rs.mscale()) / YarnMscale(s, rs.mscale_all_dim());
  return YarnMscale(s, 1.0);
}

double SoftmaxScale(const config::ModelConfig& m) {
  const double dqk = static_cast<double>(m.qk_nope_head_dim() + m.qk_rope_head_dim());
  double scale = 1.0 / std::sqrt(dqk);
  // HF applies the temperature whenever rope_scaling carries mscale_all_dim (docs/model.md "Softmax scale").
  if (m.has_rope_scaling() && m.rope_scaling().mscale_all_dim() != 0) {
    const double ms = YarnMscale(m.rope_scaling().factor(), m.rope_scaling().mscale_all_dim());
    scale *= ms * ms;
  }
  return scale;
}

RopeTables BuildRopeTables(const config::ModelConfig& m, int64_t max_positions, kernels::Backend& ops) {
  RopeTables t;
  const std::vector<double> theta = RopeInverseFrequencies(m);
  const double a = RopeAttentionFactor(m);
  t.max_positions = max_positions;
  t.half_dim = static_cast<int64_t>(theta.size());
  const int64_t n = max_positions * t.half_dim;
  std::vector<float> cos(n), sin(n);
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < t.half_dim; ++i) {
      // FP64 angle (docs/model.md "RoPE frequencies and angles").
      const double phi = static_cast<double>(p) * theta[i];
      cos[p * t.half_dim + i] = static_cast<float>(a * std::cos(phi));
      sin[p * t.half_dim + i] = static_cast<float>(a * std::sin(phi));
    }
  }
  t.cos.resize(n);
  t.sin.resize(n);
  ops.CopyFromHost(cos.data(), sizeof(float) * cos.size(), t.cos.data());
  ops.CopyFromHost(sin.data(), sizeof(float) * sin.size(), t.sin.data());
  return t;
}

}  // namespace moe::model
