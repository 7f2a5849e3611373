// RoPE scaling (docs/model.md "YaRN") and the MLA softmax scale (docs/model.md "Softmax scale") against
// values worked independently: every expected number below is a literal computed in float64 with
// Python's math module straight from those sections' formulas (corr/floor/ceil bounds, linear ramp in
// the pair index, m(s, c)), never by calling the code under test. The ramp bounds are not exposed, so
// they are pinned through θ':
// θ'_i = θ_i for i <= low (ramp 0), θ'_i = θ_i / s for i >= high (ramp 1), strictly between inside.
#include "model/rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "configs/config_loader.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace moe::model {
namespace {

using config::ModelConfig;

// Relative comparison for values computed in double on both sides (pow/log may differ by an ulp).
void ExpectRel(double expected, double actual, double rel = 1e-12) {
  EXPECT_NEAR(actual, expected, rel * std::abs(expected)) << "expected " << expected;
}

ModelConfig Load(const std::string& name) {
  absl::StatusOr<config::TrainConfig> cfg = config::LoadTrainConfig("configs/" + name + ".textproto");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return cfg.ok() ? cfg->model() : ModelConfig();
}

// A bare model block with the RoPE-relevant fields only.
ModelConfig Rope(int dr, int dn, double base) {
  ModelConfig m;
  m.set_qk_rope_head_dim(dr);
  m.set_qk_nope_head_dim(dn);
  m.set_rope_theta(base);
  return m;
}

void SetYarn(ModelConfig* m, double factor, int64_t l0) {
  auto* rs = m->mutable_rope_scaling();
  rs->set_type("yarn");
  rs->set_factor(factor);
  rs->set_original_max_position_embeddings(l0);
}

// Checks that the ramp runs from pair `low` (kept) to pair `high` (divided by s) and nowhere else.
void ExpectRampBounds(const ModelConfig& m, int low, int high) {
  const std::vector<double> th = RopeInverseFrequencies(m);
  const int64_t dr = m.qk_rope_head_dim();
  const double s = m.rope_scaling().factor();
  for (int i = 0; i < static_cast<int>(th.size()); ++i) {
    const double plain = std::pow(m.rope_theta(), -2.0 * i / dr);
    if (i <= low) {
      ExpectRel(plain, th[i]);
    } else if (i >= high) {
      ExpectRel(plain / s, th[i]);
    } else {
      EXPECT_LT(th[i], plain * (1 - 1e-9)) << "pair " << i << " should be inside the ramp";
      EXPECT_GT(th[i], plain / s * (1 + 1e-9)) << "pair " << i << " should be inside the ramp";
    }
  }
}

TEST(Rope, ScalingTypeOf) {
  ModelConfig m = Rope(8, 16, 1e4);
  EXPECT_EQ(ScalingTypeOf(m), RopeScalingType::kNone);
  m.mutable_rope_scaling()->set_type("none");
  EXPECT_EQ(ScalingTypeOf(m), RopeScalingType::kNone);
  m.mutable_rope_scaling()->set_type("default");
  EXPECT_EQ(ScalingTypeOf(m), RopeScalingType::kNone);
  m.mutable_rope_scaling()->set_type("linear");
  EXPECT_EQ(ScalingTypeOf(m), RopeScalingType::kLinear);
  m.mutable_rope_scaling()->clear_type();
  m.mutable_rope_scaling()->set_rope_type("yarn");  // the newer HF spelling
  EXPECT_EQ(ScalingTypeOf(m), RopeScalingType::kYarn);
}

TEST(Rope, YarnMscale) {
  EXPECT_EQ(YarnMscale(1.0, 1.0), 1.0);
  EXPECT_EQ(YarnMscale(0.5, 1.0), 1.0);
  ExpectRel(1.3688879454113936, YarnMscale(40, 1.0));    // 0.1 ln 40 + 1
  ExpectRel(1.2608037774058554, YarnMscale(40, 0.707));  // V2's 0.0707 ln 40 + 1
}

// No scaling: θ_i = base^(-2i/dr), a = 1, scale = dqk^-1/2.
TEST(Rope, NoScaling) {
  ModelConfig m = Rope(8, 16, 1e4);
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 4u);
  const double expected[] = {1, 0.10000000000000001, 0.01, 0.001};
  for (int i = 0; i < 4; ++i) ExpectRel(expected[i], th[i]);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.20412414523193151, SoftmaxScale(m));  // 24^-1/2
  // An explicit type "none" block changes nothing.
  m.mutable_rope_scaling()->set_type("none");
  const std::vector<double> th2 = RopeInverseFrequencies(m);
  for (int i = 0; i < 4; ++i) ExpectRel(expected[i], th2[i]);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.20412414523193151, SoftmaxScale(m));
}

// Linear (position interpolation): every θ_i divided by s, no temperature.
TEST(Rope, LinearScaling) {
  ModelConfig m = Rope(8, 16, 1e4);
  m.mutable_rope_scaling()->set_type("linear");
  m.mutable_rope_scaling()->set_factor(4);
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 4u);
  const double expected[] = {0.25, 0.025000000000000001, 0.0025000000000000001, 0.00025000000000000001};
  for (int i = 0; i < 4; ++i) ExpectRel(expected[i], th[i]);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.20412414523193151, SoftmaxScale(m));
  // Tables: p = 3, pair 0 -> angle 0.75.
  kernels::CpuBackend ops(1);
  const RopeTables t = BuildRopeTables(m, 4, ops);
  EXPECT_NEAR(t.cos[3 * 4 + 0], 0.7316888688738209, 1e-7);
  EXPECT_NEAR(t.sin[3 * 4 + 0], 0.6816387600233341, 1e-7);
}

// The worked values of docs/model.md "YaRN", DeepSeek-V3 (from the shipped config): low 10, high 23.
TEST(Rope, DeepSeekV3Yarn) {
  const ModelConfig m = Load("deepseek_v3_671b");
  ASSERT_EQ(ScalingTypeOf(m), RopeScalingType::kYarn);
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 32u);
  ExpectRel(1.0, th[0]);
  ExpectRel(0.074989420933245579, th[9]);
  ExpectRel(0.056234132519034911, th[10]);  // table: 0.0562341325
  ExpectRel(0.039006926567143857, th[11]);
  ExpectRel(0.0054999999999999997, th[16]);  // table: 0.0055
  ExpectRel(0.00017782794100389219, th[22]);
  ExpectRel(3.3338035804083099e-05, th[23]);  // table: 3.33380358e-5
  ExpectRel(2.5000000000000001e-05, th[24]);
  ExpectRel(3.3338035804083097e-06, th[31]);  // table: 3.33380358e-6
  ExpectRampBounds(m, 10, 23);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.13523377886088009, SoftmaxScale(m));  // table: 0.1352337789

  // cos/sin at p = 4095 (FP64 angles, then rounded to float).
  kernels::CpuBackend ops(1);
  const RopeTables t = BuildRopeTables(m, 4096, ops);
  ASSERT_EQ(t.half_dim, 32);
  const int64_t row = 4095 * 32;
  EXPECT_NEAR(t.cos[row + 0], -0.065975996558064895, 1e-7);  // table: -0.065975997
  EXPECT_NEAR(t.sin[row + 0], -0.99782121037697435, 1e-7);   // table: -0.997821210
  EXPECT_NEAR(t.cos[row + 10], -0.58776004520892455, 1e-7);
  EXPECT_NEAR(t.sin[row + 10], -0.80903530779317845, 1e-7);
  EXPECT_NEAR(t.cos[row + 16], -0.86212309249869534, 1e-7);
  EXPECT_NEAR(t.sin[row + 16], -0.50669889814414049, 1e-7);
  EXPECT_NEAR(t.cos[row + 23], 0.99069571049291782, 1e-7);
  EXPECT_NEAR(t.sin[row + 23], 0.13609558850650794, 1e-7);
  EXPECT_NEAR(t.cos[row + 31], 0.99990681391017322, 1e-7);  // table: 0.999906814
  EXPECT_NEAR(t.sin[row + 31], 0.013651501602613884, 1e-7);  // table: 0.013651502
  EXPECT_EQ(t.cos[0], 1.0f);
  EXPECT_EQ(t.sin[0], 0.0f);
}

// V2-Lite: same frequencies, mscale = mscale_all_dim = 0.707, so a = 1 and the temperature uses 0.0707 ln s.
TEST(Rope, DeepSeekV2LiteYarn) {
  const ModelConfig m = Load("deepseek_v2_lite");
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 32u);
  ExpectRel(0.056234132519034911, th[10]);
  ExpectRel(0.0054999999999999997, th[16]);
  ExpectRel(3.3338035804083099e-05, th[23]);
  ExpectRampBounds(m, 10, 23);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.11472138679292611, SoftmaxScale(m));  // table: 0.1147213868
}

// The tiny model (configs/tiny.textproto; docs/model.md "YaRN"): dr 8, base 1e4, s 4, L0 64 -> low 0,
// high 2.
TEST(Rope, TinyYarn) {
  ModelConfig m = Rope(8, 16, 1e4);
  SetYarn(&m, 4, 64);
  m.mutable_rope_scaling()->set_mscale(1);
  m.mutable_rope_scaling()->set_mscale_all_dim(1);
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 4u);
  const double expected[] = {1, 0.0625, 0.0025000000000000001, 0.00025000000000000001};
  for (int i = 0; i < 4; ++i) ExpectRel(expected[i], th[i]);
  ExpectRampBounds(m, 0, 2);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.26464225796422669, SoftmaxScale(m));  // table: 0.2646422580
}

// mscale (1) != mscale_all_dim (0.707): a = m(4, 1) / m(4, 0.707) multiplies the tables and the softmax
// scale carries m(4, 0.707)^2. dr 16, dn 32 (dqk 48), L0 64 -> low 0, high 3.
TEST(Rope, YarnAttentionFactorNotOne) {
  ModelConfig m = Rope(16, 32, 1e4);
  SetYarn(&m, 4, 64);
  m.mutable_rope_scaling()->set_mscale(1);
  m.mutable_rope_scaling()->set_mscale_all_dim(0.707);
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 8u);
  const double expected[] = {1,
                             0.23717082451262847,
                             0.050000000000000003,
                             0.0079056941504209478,
                             0.0025000000000000001,
                             0.00079056941504209485,
                             0.00025000000000000001,
                             7.9056941504209485e-05};
  for (int i = 0; i < 8; ++i) ExpectRel(expected[i], th[i]);
  ExpectRampBounds(m, 0, 3);
  ExpectRel(1.036992729910394, RopeAttentionFactor(m));
  ExpectRel(0.17401743871138856, SoftmaxScale(m));
  kernels::CpuBackend ops(1);
  const RopeTables t = BuildRopeTables(m, 101, ops);
  EXPECT_NEAR(t.cos[100 * 8 + 3], 0.72946290813546133, 1e-6);  // a * cos(100 θ'_3)
  EXPECT_NEAR(t.sin[100 * 8 + 3], 0.73704666578281663, 1e-6);
  EXPECT_NEAR(t.cos[0], 1.036992729910394, 1e-6);  // p = 0: the factor itself

  // Without mscale/mscale_all_dim given: a = 0.1 ln s + 1, no temperature in the softmax scale.
  m.mutable_rope_scaling()->clear_mscale();
  m.mutable_rope_scaling()->clear_mscale_all_dim();
  ExpectRel(1.1386294361119891, RopeAttentionFactor(m));
  ExpectRel(0.14433756729740643, SoftmaxScale(m));  // 48^-1/2

  // An explicit attention_factor wins.
  m.mutable_rope_scaling()->set_attention_factor(0.75);
  EXPECT_EQ(RopeAttentionFactor(m), 0.75);
}

// low == high (both 0: corr(βs) = -0.196 ceils to 0, corr(βf) clamps to 0), so high becomes 0.001:
// pair 0 kept, every other pair divided by s. dr 8, base 1e4, s 4, L0 4.
TEST(Rope, YarnLowEqualsHigh) {
  ModelConfig m = Rope(8, 16, 1e4);
  SetYarn(&m, 4, 4);
  const std::vector<double> th = RopeInverseFrequencies(m);
  ASSERT_EQ(th.size(), 4u);
  const double expected[] = {1, 0.025000000000000001, 0.0025000000000000001, 0.00025000000000000001};
  for (int i = 0; i < 4; ++i) {
    ExpectRel(expected[i], th[i]);
    EXPECT_TRUE(std::isfinite(th[i]));
  }
  ExpectRampBounds(m, 0, 1);
}

// s = 1 is the identity for YaRN (m(1, c) = 1, θ_i / 1 = θ_i).
TEST(Rope, YarnFactorOneIsPlain) {
  ModelConfig m = Rope(8, 16, 1e4);
  SetYarn(&m, 1, 64);
  m.mutable_rope_scaling()->set_mscale(1);
  m.mutable_rope_scaling()->set_mscale_all_dim(1);
  const std::vector<double> th = RopeInverseFrequencies(m);
  const double expected[] = {1, 0.10000000000000001, 0.01, 0.001};
  for (int i = 0; i < 4; ++i) ExpectRel(expected[i], th[i]);
  EXPECT_EQ(RopeAttentionFactor(m), 1.0);
  ExpectRel(0.20412414523193151, SoftmaxScale(m));
}

}  // namespace
}  // namespace moe::model
