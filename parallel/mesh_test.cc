// Single-process tests of the layout checks: each bad layout is refused with one line naming the
// fields and their values.
#include "parallel/mesh.h"

#include "gtest/gtest.h"

namespace moe::parallel {
namespace {

moe::config::ModelConfig Model() {
  moe::config::ModelConfig m;
  m.set_num_attention_heads(16);
  m.set_intermediate_size(1024);
  m.set_moe_intermediate_size(256);
  m.set_n_shared_experts(2);
  m.set_n_routed_experts(64);
  return m;
}

std::string Error(const MeshShape& s, int world, const moe::config::ModelConfig& m = Model(),
                  int64_t micro_batch = 2, int64_t seq_len = 128) {
  const absl::Status st = ValidateLayout(s, world, m, micro_batch, seq_len);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  return std::string(st.message());
}

TEST(ValidateLayoutTest, AcceptsGoodLayouts) {
  EXPECT_TRUE(ValidateLayout({1, 1, 1}, 1, Model(), 1, 1).ok());
  EXPECT_TRUE(ValidateLayout({2, 2, 4}, 4, Model(), 2, 128).ok());
  EXPECT_TRUE(ValidateLayout({4, 1, 2}, 4, Model(), 1, 7).ok());
  EXPECT_TRUE(ValidateLayout({1, 4, 2}, 4, Model(), 1, 4).ok());
  EXPECT_TRUE(ValidateLayout({8, 2, 16}, 16, Model(), 1, 64).ok());
  // A dense model (no routed experts) allows any ep that divides the world.
  moe::config::ModelConfig dense = Model();
  dense.clear_n_routed_experts();
  dense.set_n_shared_experts(0);
  EXPECT_TRUE(ValidateLayout({2, 2, 4}, 4, dense, 2, 128).ok());
  EXPECT_TRUE(ValidateMeshShape({2, 2, 2}, 4).ok());
}

TEST(ValidateLayoutTest, WorldSize) {
  EXPECT_EQ(Error({2, 1, 1}, 4),
            "the world size (4 ranks) must equal parallel.dp (2) * parallel.tp (1) = 2");
  EXPECT_EQ(Error({0, 1, 1}, 4), "parallel.dp (0), parallel.tp (1) and parallel.ep (1) must all be >= 1");
  EXPECT_EQ(Error({2, 2, 0}, 4), "parallel.dp (2), parallel.tp (2) and parallel.ep (0) must all be >= 1");
}

TEST(ValidateLayoutTest, EpDividesWorld) {
  EXPECT_EQ(Error({2, 2, 3}, 4), "parallel.ep (3) must divide the world size dp*tp (4)");
  EXPECT_EQ(Error({2, 2, 8}, 4), "parallel.ep (8) must divide the world size dp*tp (4)");
  EXPECT_EQ(ValidateMeshShape({4, 1, 3}, 4).message(), "parallel.ep (3) must divide the world size dp*tp (4)");
}

TEST(ValidateLayoutTest, EpDividesExperts) {
  moe::config::ModelConfig m = Model();
  m.set_n_routed_experts(6);
  EXPECT_EQ(Error({4, 1, 4}, 4, m), "model.n_routed_experts (6) must be divisible by parallel.ep (4)");
}

TEST(ValidateLayoutTest, TpDividesHeadsAndWidths) {
  moe::config::ModelConfig m = Model();
  m.set_num_attention_heads(6);
  EXPECT_EQ(Error({1, 4, 1}, 4, m), "model.num_attention_heads (6) must be divisible by parallel.tp (4)");
  m = Model();
  m.set_intermediate_size(1026);
  EXPECT_EQ(Error({1, 4, 1}, 4, m), "model.intermediate_size (1026) must be divisible by parallel.tp (4)");
  m = Model();
  m.set_n_shared_experts(1);
  m.set_moe_intermediate_size(10);
  EXPECT_EQ(Error({1, 4, 1}, 4, m),
            "model.n_shared_experts (1) * model.moe_intermediate_size (10) = 10 must be divisible by "
            "parallel.tp (4)");
  // 2 shared experts of width 10 split evenly over tp = 4 (20 columns).
  m.set_n_shared_experts(2);
  EXPECT_TRUE(ValidateLayout({1, 4, 1}, 4, m, 1, 4).ok());
}

TEST(ValidateLayoutTest, MtpNeedsARealPositionOnEveryTpRank) {
  moe::config::ModelConfig m = Model();
  m.set_num_nextn_predict_layers(2);
  EXPECT_TRUE(ValidateLayout({1, 4, 1}, 4, m, 1, 12).ok());
  EXPECT_EQ(Error({1, 4, 1}, 4, m, 1, 8),
            "micro_batch_size (1) * seq_len (8) / parallel.tp (4) = 2 tokens per TP rank must exceed "
            "model.num_nextn_predict_layers (2)");
}

TEST(ValidateLayoutTest, TpDividesMicroBatchTokens) {
  EXPECT_EQ(Error({1, 4, 1}, 4, Model(), 1, 6),
            "micro_batch_size (1) * seq_len (6) = 6 tokens must be divisible by parallel.tp (4): "
            "sequence parallelism splits a micro-batch's tokens over TP");
  EXPECT_EQ(Error({1, 1, 1}, 1, Model(), 0, 6), "micro_batch_size (0) and seq_len (6) must be >= 1");
}

}  // namespace
}  // namespace moe::parallel
