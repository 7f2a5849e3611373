// Sampler: deterministic windows, every window once per epoch, a pinned (platform-independent) order,
// and a global batch whose samples do not depend on how it is split over ranks and micro-batches.
#include "data/sampler.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moe::data {
namespace {

constexpr uint32_t kVocab = 1 << 20;
constexpr uint32_t kEod = kVocab - 1;

// A shard whose token at position p is p itself (except the EOD ending every 10-token document), so a
// window's contents reveal where it starts.
TokenShard PositionShard(const std::string& name, int64_t num_documents) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string prefix = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name, "_", ::getpid());
  auto writer = TokenShardWriter::Create(prefix, {kVocab, kEod, "test", "test"});
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (int64_t d = 0; d < num_documents; ++d) {
    std::vector<uint32_t> doc;
    for (int64_t i = 0; i < 9; ++i) doc.push_back(static_cast<uint32_t>(d * 10 + i));
    EXPECT_TRUE(writer->AddDocument(doc).ok());
  }
  EXPECT_TRUE(writer->Finish().ok());
  auto shard = TokenShard::Open(prefix);
  EXPECT_TRUE(shard.ok()) << shard.status();
  return std::move(*shard);
}

TEST(SamplerTest, WindowsCountAndFillContents) {
  const TokenShard shard = PositionShard("fill", 10);  // 100 tokens
  const int64_t T = 8;
  const Sampler sampler(&shard, T, 42);
  EXPECT_EQ(sampler.samples_per_epoch(), (100 - 1) / T);  // 12
  std::vector<int32_t> inputs(T), targets(T);
  for (int64_t i = 0; i < 30; ++i) {
    sampler.Fill(i, inputs.data(), targets.data());
    const int64_t start = sampler.WindowStart(i);
    ASSERT_EQ(start % T, 0);
    ASSERT_LE(start + T, shard.num_tokens() - 1);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = start + t;
      EXPECT_EQ(inputs[t], p % 10 == 9 ? static_cast<int32_t>(kEod) : p);
      EXPECT_EQ(targets[t], static_cast<int32_t>(shard.tokens()[p + 1]));
      if (t + 1 < T) {
        EXPECT_EQ(targets[t], inputs[t + 1]);
      }
    }
  }
}

TEST(SamplerTest, SameSeedSameSamplesDifferentSeedDifferentOrder) {
  const TokenShard shard = PositionShard("determinism", 100);  // 1000 tokens
  const Sampler a(&shard, 16, 7), b(&shard, 16, 7), c(&shard, 16, 8);
  int differences = 0;
  for (int64_t i = 0; i < 3 * a.samples_per_epoch(); ++i) {
    ASSERT_EQ(a.WindowStart(i), b.WindowStart(i));
    differences += a.WindowStart(i) != c.WindowStart(i);
  }
  EXPECT_GT(differences, a.samples_per_epoch());
  // Reading out of order (random access, epochs revisited) gives the same answers.
  for (int64_t i = 3 * a.samples_per_epoch() - 1; i >= 0; i -= 7) ASSERT_EQ(a.WindowStart(i), b.WindowStart(i));
}

TEST(SamplerTest, EveryWindowOncePerEpochInANewOrder) {
  const TokenShard shard = PositionShard("coverage", 100);
  const Sampler sampler(&shard, 10, 1234);
  const int64_t W = sampler.samples_per_epoch();
  ASSERT_EQ(W, 99);
  std::vector<std::vector<int64_t>> orders;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    std::vector<int64_t> order;
    for (int64_t j = 0; j < W; ++j) order.push_back(sampler.WindowStart(epoch * W + j) / 10);
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t k = 0; k < W; ++k) ASSERT_EQ(sorted[k], k) << "epoch " << epoch;
    orders.push_back(order);
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
}

TEST(SamplerTest, PermutationIsPinned) {
  // Golden values, computed independently (Python re-implementation of prng.h + Fisher-Yates). A change
  // here changes the data order of every run: do not update casually.
  EXPECT_EQ(EpochPermutation(10, 1234, 0), (std::vector<int64_t>{9, 5, 7, 0, 1, 6, 2, 3, 8, 4}));
  EXPECT_EQ(EpochPermutation(10, 1234, 1), (std::vector<int64_t>{7, 4, 1, 2, 8, 9, 3, 5, 0, 6}));
  EXPECT_EQ(EpochPermutation(10, 1235, 0), (std::vector<int64_t>{6, 0, 2, 7, 5, 4, 1, 3, 9, 8}));
  EXPECT_EQ(EpochPermutation(1, 99, 5), (std::vector<int64_t>{0}));
}

TEST(SamplerTest, SequentialOrderForValidation) {
  const TokenShard shard = PositionShard("sequential", 10);
  const Sampler sampler(&shard, 8, 42, SampleOrder::kSequential);
  const int64_t W = sampler.samples_per_epoch();
  for (int64_t i = 0; i < 3 * W; ++i) EXPECT_EQ(sampler.WindowStart(i), (i % W) * 8);
}

TEST(SamplerTest, ShardTooSmallIsAnError) {
  const TokenShard shard = PositionShard("small", 1);  // 10 tokens
  EXPECT_TRUE(Sampler::Create(&shard, 9, 1).ok());
  auto too_long = Sampler::Create(&shard, 10, 1);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find(shard.prefix()), std::string::npos) << too_long.status();
  EXPECT_FALSE(Sampler::Create(&shard, 0, 1).ok());
  EXPECT_DEATH(Sampler(&shard, 10, 1), "fewer than one window");
}

// The concatenation, in (dp_rank, micro-batch, row) order, of what every rank reads at a step.
std::vector<int64_t> StepSamples(int64_t step, int64_t G, int64_t D, int64_t M) {
  const GlobalBatch layout{G, D, M};
  EXPECT_TRUE(layout.Validate().ok()) << layout.Validate();
  std::vector<int64_t> samples;
  for (int64_t r = 0; r < D; ++r) {
    for (int64_t m = 0; m < layout.num_micro_batches(); ++m) {
      for (int64_t row = 0; row < M; ++row) {
        const int64_t index = SampleIndex(step, G, r, D, m, M, row);
        EXPECT_EQ(index, layout.SampleIndex(step, r, m, row));
        samples.push_back(index);
      }
    }
  }
  return samples;
}

TEST(GlobalBatchTest, LayoutDoesNotChangeTheGlobalBatch) {
  const int64_t G = 16;
  for (int64_t step : {0, 1, 5}) {
    std::vector<int64_t> expected(G);
    for (int64_t k = 0; k < G; ++k) expected[k] = step * G + k;
    EXPECT_EQ(StepSamples(step, G, 1, 16), expected);
    EXPECT_EQ(StepSamples(step, G, 1, 4), expected);  // gradient accumulation over 4 micro-batches
    EXPECT_EQ(StepSamples(step, G, 2, 8), expected);
    EXPECT_EQ(StepSamples(step, G, 2, 2), expected);
    EXPECT_EQ(StepSamples(step, G, 4, 4), expected);
    EXPECT_EQ(StepSamples(step, G, 4, 1), expected);
  }
  // DP=2: rank 1 holds the second half; its micro-batch 1 (M=2) rows are samples 12, 13 at step 0.
  EXPECT_EQ(SampleIndex(0, 16, 1, 2, 2, 2, 0), 12);
  EXPECT_EQ(SampleIndex(3, 16, 1, 2, 2, 2, 1), 3 * 16 + 13);
}

TEST(GlobalBatchTest, SameTokensUnderEveryLayout) {
  const TokenShard shard = PositionShard("layout", 50);
  const Sampler sampler(&shard, 12, 3);
  const int64_t G = 8, T = 12;
  auto batch_tokens = [&](int64_t D, int64_t M) {
    std::vector<int32_t> all;
    std::vector<int32_t> in(T), tg(T);
    for (int64_t index : StepSamples(2, G, D, M)) {
      sampler.Fill(index, in.data(), tg.data());
      all.insert(all.end(), in.begin(), in.end());
      all.insert(all.end(), tg.begin(), tg.end());
    }
    return all;
  };
  const std::vector<int32_t> one = batch_tokens(1, 8);
  EXPECT_EQ(batch_tokens(2, 4), one);
  EXPECT_EQ(batch_tokens(4, 1), one);
}

TEST(GlobalBatchTest, ValidateNamesTheValues) {
  EXPECT_TRUE((GlobalBatch{8, 2, 2}.Validate().ok()));
  const absl::Status not_divisible = GlobalBatch{10, 4, 1}.Validate();
  EXPECT_FALSE(not_divisible.ok());
  EXPECT_NE(not_divisible.message().find("global batch 10"), std::string::npos) << not_divisible;
  EXPECT_FALSE((GlobalBatch{8, 2, 3}.Validate().ok()));
  EXPECT_FALSE((GlobalBatch{0, 1, 1}.Validate().ok()));
  EXPECT_DEATH(SampleIndex(0, 8, 2, 2, 0, 1, 0), "out of range");
}

}  // namespace
}  // namespace moe::data
