// SplitMix64 must produce the published reference sequence (so data order is the same everywhere), and
// the bounded draw must be unbiased and in range.
#include "data/prng.h"

#include <vector>

#include "gtest/gtest.h"

namespace moe::data {
namespace {

TEST(SplitMix64Test, MatchesReferenceSequence) {
  // The reference outputs of Vigna's splitmix64.c for seed 1234567.
  SplitMix64 rng(1234567);
  EXPECT_EQ(rng.Next(), 6457827717110365317ull);
  EXPECT_EQ(rng.Next(), 3203168211198807973ull);
  EXPECT_EQ(rng.Next(), 9817491932198370423ull);
  EXPECT_EQ(rng.Next(), 4593380528125082431ull);
  EXPECT_EQ(rng.Next(), 16408922859458223821ull);
}

TEST(SplitMix64Test, UniformStaysInRangeAndCoversIt) {
  SplitMix64 rng(7);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t x = rng.Uniform(10);
    ASSERT_LT(x, 10u);
    ++counts[x];
  }
  for (int c : counts) EXPECT_NEAR(c, 1000, 150);
  EXPECT_EQ(rng.Uniform(1), 0u);
  for (int i = 0; i < 1000; ++i) {
    const double u = rng.UniformDouble();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(Fnv1a64Test, KnownValues) {
  EXPECT_EQ(Fnv1a64(""), 0xCBF29CE484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xAF63DC4C8601EC8Cull);
}

}  // namespace
}  // namespace moe::data
