// RoPE on interleaved pairs over a strided view (several heads, an offset inside each head vector):
// forward against the formula of docs/model.md "RoPE on interleaved pairs", backward by finite
// differences, backward o forward = identity for unit-magnitude tables, untouched elements outside the
// view.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::ExpectGradientMatches;
using testing::ProbeLoss;
using testing::RandomVector;

// Tokens of 3 heads x 10 floats; RoPE acts on the last 6 of each head (offset 4, half_dim 3).
struct RopeCase {
  static constexpr int64_t kTokens = 5, kHeads = 3, kHeadDim = 10, kOffset = 4, kHalf = 3,
                           kMaxPos = 16;
  std::vector<int32_t> positions = {0, 3, 7, 15, 3};
  std::vector<float> cos, sin;
  RopeCase(float magnitude) : cos(kMaxPos * kHalf), sin(kMaxPos * kHalf) {
    for (int64_t p = 0; p < kMaxPos; ++p) {
      for (int64_t i = 0; i < kHalf; ++i) {
        const double phi = p * std::pow(10000.0, -2.0 * i / (2 * kHalf));
        cos[p * kHalf + i] = static_cast<float>(magnitude * std::cos(phi));
        sin[p * kHalf + i] = static_cast<float>(magnitude * std::sin(phi));
      }
    }
  }
  RopeView View(float* x) const {
    RopeView v;
    v.x = x;
    v.num_tokens = kTokens;
    v.num_heads = kHeads;
    v.token_stride = kHeads * kHeadDim;
    v.head_stride = kHeadDim;
    v.offset = kOffset;
    v.half_dim = kHalf;
    v.positions = positions.data();
    v.cos = cos.data();
    v.sin = sin.data();
    return v;
  }
};

constexpr int64_t kSize = RopeCase::kTokens * RopeCase::kHeads * RopeCase::kHeadDim;

TEST(Rope, ForwardMatchesFormula) {
  CpuBackend be(2);
  RopeCase s(1.25f);
  auto x = RandomVector(kSize, 1);
  auto y = x;
  be.RopeForward(s.View(y.data()));
  for (int64_t t = 0; t < RopeCase::kTokens; ++t) {
    for (int64_t h = 0; h < RopeCase::kHeads; ++h) {
      const int64_t base = (t * RopeCase::kHeads + h) * RopeCase::kHeadDim;
      for (int64_t j = 0; j < RopeCase::kOffset; ++j) EXPECT_EQ(y[base + j], x[base + j]);
      for (int64_t i = 0; i < RopeCase::kHalf; ++i) {
        const float c = s.cos[s.positions[t] * RopeCase::kHalf + i],
                    sn = s.sin[s.positions[t] * RopeCase::kHalf + i];
        const float x0 = x[base + RopeCase::kOffset + 2 * i],
                    x1 = x[base + RopeCase::kOffset + 2 * i + 1];
        EXPECT_NEAR(y[base + RopeCase::kOffset + 2 * i], x0 * c - x1 * sn, 1e-6);
        EXPECT_NEAR(y[base + RopeCase::kOffset + 2 * i + 1], x0 * sn + x1 * c, 1e-6);
      }
    }
  }
}

TEST(Rope, BackwardFiniteDifferences) {
  CpuBackend be(2);
  RopeCase s(1.25f);  // a non-unit attention factor: the backward must scale too
  auto x = RandomVector(kSize, 2);
  auto probe = RandomVector(kSize, 3);
  auto dx = probe;
  be.RopeBackward(s.View(dx.data()));
  std::vector<float> y;
  ExpectGradientMatches("dx", x, dx, [&] {
    y = x;
    be.RopeForward(s.View(y.data()));
    return ProbeLoss(y.data(), probe);
  });
}

TEST(Rope, BackwardInvertsForwardForUnitMagnitude) {
  CpuBackend be(1);
  RopeCase s(1.0f);
  auto x = RandomVector(kSize, 4);
  auto y = x;
  be.RopeForward(s.View(y.data()));
  be.RopeBackward(s.View(y.data()));
  for (int64_t i = 0; i < kSize; ++i) EXPECT_NEAR(y[i], x[i], 1e-6);
}

}  // namespace
}  // namespace moe::kernels
