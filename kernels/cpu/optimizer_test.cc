// AdamW: one and two steps against hand-computed values (bias correction, decoupled decay with the
// old parameter), zero decay, and the folded gradient scale.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace moe::kernels {
namespace {

TEST(AdamW, FirstStepByHand) {
  CpuBackend be(1);
  AdamWParams p;
  p.lr = 0.1f;
  p.beta1 = 0.9f;
  p.beta2 = 0.95f;
  p.eps = 1e-8f;
  p.weight_decay = 0.1f;
  p.step = 1;
  std::vector<float> param = {1.0f, -2.0f, 0.5f}, grad = {0.5f, -1.0f, 0.0f}, m(3, 0.0f),
                     v(3, 0.0f);
  be.AdamW(p, param.data(), grad.data(), m.data(), v.data(), 3, {});
  // m = 0.1 g, v = 0.05 g^2; mhat = g, vhat = g^2, so the step is lr (sign(g) + wd p_old).
  EXPECT_NEAR(m[0], 0.05, 1e-7);
  EXPECT_NEAR(v[0], 0.0125, 1e-8);
  EXPECT_NEAR(param[0], 1.0 - 0.1 * (1.0 + 0.1 * 1.0), 1e-6);     // 0.89
  EXPECT_NEAR(param[1], -2.0 - 0.1 * (-1.0 + 0.1 * -2.0), 1e-6);  // -1.88
  EXPECT_NEAR(param[2], 0.5 - 0.1 * (0.0 + 0.1 * 0.5), 1e-6);     // g = 0: decay only
}

TEST(AdamW, SecondStepByHand) {
  CpuBackend be(1);
  AdamWParams p;
  p.lr = 0.01f;
  p.beta1 = 0.9f;
  p.beta2 = 0.95f;
  p.eps = 1e-8f;
  p.weight_decay = 0.0f;
  p.step = 2;
  std::vector<float> param = {1.0f}, grad = {2.0f}, m = {0.1f}, v = {0.05f};  // state after g1 = 1
  be.AdamW(p, param.data(), grad.data(), m.data(), v.data(), 1, {});
  const double m2 = 0.9 * 0.1 + 0.1 * 2.0;     // 0.29
  const double v2 = 0.95 * 0.05 + 0.05 * 4.0;  // 0.2475
  const double mhat = m2 / (1 - 0.81), vhat = v2 / (1 - 0.9025);
  EXPECT_NEAR(m[0], m2, 1e-7);
  EXPECT_NEAR(v[0], v2, 1e-7);
  EXPECT_NEAR(param[0], 1.0 - 0.01 * mhat / (std::sqrt(vhat) + 1e-8), 1e-6);
}

// Smooth, deterministic parameters, gradients (times grad_amplitude) and moments of n elements.
struct State {
  std::vector<float> param, grad, m, v;
  State(int64_t n, float grad_amplitude) : param(n), grad(n), m(n), v(n) {
    for (int64_t i = 0; i < n; ++i) {
      param[i] = std::sin(0.001f * i);
      grad[i] = grad_amplitude * std::cos(0.003f * i);
      m[i] = 0.01f * std::sin(0.007f * i);
      v[i] = 0.001f + 0.0001f * std::cos(0.005f * i);
    }
  }
};

TEST(AdamW, LargeArrayMatchesScalarFormula) {
  CpuBackend be(2);
  const int64_t n = 100000;
  State st(n, 1.0f);
  auto& [param, grad, m, v] = st;
  auto p0 = param, m0 = m, v0 = v;
  AdamWParams p;
  p.lr = 1e-3f;
  p.weight_decay = 0.1f;
  p.step = 10;
  be.AdamW(p, param.data(), grad.data(), m.data(), v.data(), n, {});
  const double bc1 = 1 - std::pow(0.9, 10), bc2 = 1 - std::pow(0.95, 10);
  for (int64_t i = 0; i < n; i += 997) {
    const double mi = 0.9 * m0[i] + 0.1 * grad[i];
    const double vi = 0.95 * v0[i] + 0.05 * static_cast<double>(grad[i]) * grad[i];
    const double want = p0[i] - 1e-3 * (mi / bc1 / (std::sqrt(vi / bc2) + 1e-8) + 0.1 * p0[i]);
    ASSERT_NEAR(param[i], want, 1e-6) << i;
  }
}

// grad_scale (clipping folded into the step) gives bit for bit what scaling the gradient first did.
TEST(AdamW, GradScaleEqualsScalingTheGradientFirst) {
  CpuBackend be(2);
  const int64_t n = 70001;
  State st(n, 3.0f);
  auto& [param, grad, m, v] = st;
  auto param2 = param, m2 = m, v2 = v, scaled = grad;
  AdamWParams p;
  p.lr = 1e-3f;
  p.weight_decay = 0.1f;
  p.step = 4;
  be.Scale(scaled.data(), n, 0.3137f);
  be.AdamW(p, param.data(), scaled.data(), m.data(), v.data(), n, {});
  p.grad_scale = 0.3137f;
  be.AdamW(p, param2.data(), grad.data(), m2.data(), v2.data(), n, {});
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(param2[i], param[i]) << i;
    ASSERT_EQ(m2[i], m[i]) << i;
    ASSERT_EQ(v2[i], v[i]) << i;
  }
}

// The working copy written in the same pass: the new master itself (FP32), or rounded to BF16 with its
// bits, exactly what copying and RoundAndPackBf16 after the update give.
TEST(AdamW, WritesTheWorkingCopyInTheSamePass) {
  CpuBackend be(2);
  const int64_t n = 50003;
  std::vector<float> param(n), grad(n), m(n, 0.0f), v(n, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    param[i] = std::sin(0.013f * i);
    grad[i] = std::cos(0.003f * i);
  }
  AdamWParams p;
  p.lr = 1e-2f;
  p.weight_decay = 0.1f;
  for (const bool round : {false, true}) {
    auto master = param, mm = m, vv = v;
    std::vector<float> working(n, -7.0f);
    std::vector<uint16_t> bits(n, 0xABCD);
    AdamWWorking out;
    out.values = working.data();
    out.bits = round ? bits.data() : nullptr;
    out.round_bf16 = round;
    be.AdamW(p, master.data(), grad.data(), mm.data(), vv.data(), n, out);
    auto want = master;
    std::vector<uint16_t> want_bits(n);
    if (round) be.RoundAndPackBf16(want.data(), n, want_bits.data());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(working[i], want[i]) << i;
      if (round) {
        ASSERT_EQ(bits[i], want_bits[i]) << i;
      }
    }
    EXPECT_NE(master[1], param[1]);  // the master moved
    if (round) {
      EXPECT_NE(working[1], master[1]);  // and its working copy is rounded
    }
  }
}

}  // namespace
}  // namespace moe::kernels
