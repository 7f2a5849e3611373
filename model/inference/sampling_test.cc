// Greedy and top-p sampling: argmax with ties to the lower id, a tiny top_p is greedy, the same seed gives
// the same draws, and the empirical frequencies follow the tempered distribution over the nucleus.
#include "model/inference/sampling.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace moe::inference {
namespace {

TEST(SampleToken, GreedyTakesTheArgmaxAndTheLowerIdOnTies) {
  data::SplitMix64 rng(1);
  EXPECT_EQ(SampleToken({0.1f, 3.0f, -2.0f, 3.0f}, {0.0, 0.95}, &rng), 1);
  EXPECT_EQ(SampleToken({5.0f}, {1.0, 0.5}, &rng), 0);
}

TEST(SampleToken, TinyTopPIsGreedy) {
  data::SplitMix64 rng(2);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(SampleToken({0.0f, 1.0f, 0.5f, 0.9f}, {1.0, 1e-6}, &rng), 1);
}

TEST(SampleToken, SameSeedSameTokens) {
  const std::vector<float> logits = {0.3f, 0.1f, 0.2f, 0.0f, 0.25f};
  data::SplitMix64 a(42), b(42);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 100; ++i) {
    ta.push_back(SampleToken(logits, {0.8, 0.95}, &a));
    tb.push_back(SampleToken(logits, {0.8, 0.95}, &b));
  }
  EXPECT_EQ(ta, tb);
}

TEST(SampleToken, FrequenciesFollowTheNucleus) {
  // p ∝ exp(z): 0.5, 0.3, 0.2 (approximately); top_p = 0.75 keeps the first two, renormalised 0.625/0.375.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  data::SplitMix64 rng(7);
  std::vector<int> counts(3, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[SampleToken(logits, {1.0, 0.75}, &rng)];
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / static_cast<double>(n), 0.625, 0.015);
  EXPECT_NEAR(counts[1] / static_cast<double>(n), 0.375, 0.015);
}

TEST(ValidateSamplingOptions, RefusesBadValues) {
  EXPECT_TRUE(ValidateSamplingOptions({0.0, 1.0}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({-0.1, 0.9}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({1.0, 0.0}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({1.0, 1.5}).ok());
}

}  // namespace
}  // namespace moe::inference
