// Parameter counts against the reference numbers and FLOPs per token against the formula worked by hand
// (docs/model.md "Reference configurations"), the per-rank memory estimate and the dry-run JSON.
#include "model/model_stats.h"

#include <string>

#include "configs/config_loader.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace moe::model {
namespace {

using moe::config::TrainConfig;

TrainConfig Load(const std::string& name) {
  absl::StatusOr<TrainConfig> cfg = moe::config::LoadTrainConfig("configs/" + name + ".textproto");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return cfg.ok() ? *cfg : TrainConfig();
}

TEST(CountParameters, DeepSeekV3) {
  const ParamCounts c = CountParameters(Load("deepseek_v3_671b").model());
  EXPECT_EQ(c.total, 671026404352);
  EXPECT_EQ(c.mtp, 11610067968);
  EXPECT_EQ(c.embedding, 129280LL * 7168);
  EXPECT_EQ(c.lm_head, 129280LL * 7168);
  // "37B activated": 36.6B counting lm_head but not the embedding table, 37.6B counting both.
  EXPECT_EQ(c.activated_without_embedding, 36625603584);
  EXPECT_EQ(c.activated_with_embedding, 37552282624);
  EXPECT_GT(c.activated_without_embedding, 36.6e9);
  EXPECT_LT(c.activated_with_embedding, 37.6e9);
  EXPECT_EQ(c.activated_with_embedding - c.activated_without_embedding, c.embedding);
  // Every parameter is in exactly one distribution class.
  EXPECT_EQ(c.replicated + c.tp_split + c.routed_experts, c.total + c.mtp);
}

TEST(CountParameters, DeepSeekV2Lite) {
  const ParamCounts c = CountParameters(Load("deepseek_v2_lite").model());
  EXPECT_EQ(c.total, 15706484224);
  EXPECT_EQ(c.mtp, 0);
  // "2.4B activated" (V2 report appendix B) counts lm_head, not the embedding.
  EXPECT_EQ(c.activated_without_embedding, 2451435008);
  EXPECT_EQ(c.replicated + c.tp_split + c.routed_experts, c.total);
}

TEST(CountParameters, TinyAndTinyMtp) {
  TrainConfig cfg = Load("tiny");
  ParamCounts c = CountParameters(cfg.model());
  EXPECT_EQ(c.total, 207952);
  EXPECT_EQ(c.mtp, 0);
  cfg.mutable_model()->set_num_nextn_predict_layers(1);
  c = CountParameters(cfg.model());
  EXPECT_EQ(c.total, 207952);
  EXPECT_EQ(c.mtp, 77168);
  EXPECT_EQ(c.total + c.mtp, 285120);
  // Hand count of tiny's activated parameters (d=64, V=256, H=4, rq=32, rkv=16, dqk=24, dv=16):
  // attention matrices per layer 2048 + 3072 + 1536 + 2048 + 4096 = 12800; dense FFN 24576; MoE router 512
  // + 2 experts 12288 + shared 6144 = 18944; lm_head 16384; norms 3 * (128 + 32 + 16) + 64 = 592.
  EXPECT_EQ(c.activated_matmul, 3 * 12800 + 24576 + 2 * 18944 + 16384);
  EXPECT_EQ(c.activated_without_embedding, c.activated_matmul + 592);
  EXPECT_EQ(c.activated_with_embedding, c.activated_without_embedding + 256 * 64);
}

TEST(CountParameters, Small1b) {
  const ParamCounts c = CountParameters(Load("small_1b").model());
  EXPECT_EQ(c.total, 910144512);
  EXPECT_EQ(c.embedding, 33554432);
  EXPECT_EQ(c.mtp, 57251584);
  EXPECT_EQ(c.total + c.mtp, 967396096);
  EXPECT_EQ(c.activated_without_embedding, 192394240);  // "~192M activated non-embedding"
}

TEST(CountParameters, BrownSmallIsSmall) {
  const ParamCounts c = CountParameters(Load("brown_small").model());
  EXPECT_EQ(c.total, 1086208);
  EXPECT_GE(c.total, 1000000);
  EXPECT_LE(c.total, 2000000);
}

TEST(CountParameters, NoQLoraAndDenseOnly) {
  moe::config::ModelConfig m = Load("tiny").model();
  const int64_t with_lora = CountParameters(m).total;
  m.clear_q_lora_rank();
  // q_a_proj [32,64] + q_a_layernorm [32] + q_b_proj [96,32] replaced by q_proj [96,64], in 3 layers.
  EXPECT_EQ(CountParameters(m).total, with_lora + 3 * (96 * 64 - (32 * 64 + 32 + 96 * 32)));
  m.clear_n_routed_experts();
  const ParamCounts dense = CountParameters(m);
  EXPECT_EQ(dense.routed_experts, 0);
  EXPECT_EQ(dense.activated_with_embedding, dense.total);
  EXPECT_FALSE(IsMoeLayer(m, 2));
}

TEST(IsMoeLayer, FollowsFirstKDenseAndFrequency) {
  moe::config::ModelConfig m = Load("deepseek_v3_671b").model();
  EXPECT_FALSE(IsMoeLayer(m, 2));
  EXPECT_TRUE(IsMoeLayer(m, 3));
  EXPECT_TRUE(IsMoeLayer(m, 61));  // the MTP layer
  m.set_moe_layer_freq(2);
  EXPECT_FALSE(IsMoeLayer(m, 3));
  EXPECT_TRUE(IsMoeLayer(m, 4));
}

TEST(TrainingFlopsPerToken, TinyByHand) {
  TrainConfig cfg = Load("tiny");
  // 6 * N_act_matmul + 6 * L * H * (T/2) * (dqk + dv) at T = 32.
  const double attention = 6.0 * 4 * 16 * (24 + 16);
  EXPECT_DOUBLE_EQ(TrainingFlopsPerToken(cfg.model(), 32, false), 6.0 * 117248 + 3 * attention);
  EXPECT_DOUBLE_EQ(TrainingFlopsPerToken(cfg.model(), 32, true), 6.0 * 117248 + 3 * attention);  // D = 0
  cfg.mutable_model()->set_num_nextn_predict_layers(1);
  // MTP: eh_proj 8192 + its MoE layer (12800 attention + 18944 MoE) + the shared head again 16384.
  EXPECT_DOUBLE_EQ(TrainingFlopsPerToken(cfg.model(), 32, true),
                   6.0 * (117248 + 8192 + 12800 + 18944 + 16384) + 4 * attention);
}

TEST(TrainingFlopsPerToken, DeepSeekV3) {
  const moe::config::ModelConfig m = Load("deepseek_v3_671b").model();
  // Norm weights per layer: 2 * 7168 + kv 512 + q 1536; plus the final norm.
  const int64_t norms = 61 * (2 * 7168 + 512 + 1536) + 7168;
  const double matmul = 36625603584.0 - norms;
  EXPECT_EQ(CountParameters(m).activated_matmul, static_cast<int64_t>(matmul));
  const double expected = 6.0 * matmul + 6.0 * 61 * 128 * 2048.0 * (192 + 128);
  EXPECT_DOUBLE_EQ(TrainingFlopsPerToken(m, 4096, false), expected);
  EXPECT_NEAR(expected, 2.5045e11, 1e8);
  EXPECT_GT(TrainingFlopsPerToken(m, 4096, true), expected);
}

TEST(EstimateMemoryPerRank, Small1bOnOneGpuIs18BytesPerParameter) {
  const TrainConfig cfg = Load("small_1b");
  const MemoryEstimate e = EstimateMemoryPerRank(cfg);
  const double params = 967396096.0;
  EXPECT_DOUBLE_EQ(e.weights_bytes, 2 * params);
  EXPECT_DOUBLE_EQ(e.grads_bytes, 4 * params);
  EXPECT_DOUBLE_EQ(e.optimizer_bytes, 12 * params);
  // 18 bytes per parameter: docs/model.md "Reference configurations".
  EXPECT_NEAR(e.weights_bytes + e.grads_bytes + e.optimizer_bytes, 17.4e9, 0.05e9);
  EXPECT_GT(e.activations_bytes, 0);
  EXPECT_DOUBLE_EQ(e.total_bytes, e.weights_bytes + e.grads_bytes + e.optimizer_bytes + e.activations_bytes);
  EXPECT_LT(e.total_bytes, 139e9);  // fits the H200 (fused attention on CUDA keeps no [T, T] matrices)
  TrainConfig cpu = cfg;
  cpu.set_device(moe::config::CPU);  // the CPU path keeps the FP32 probabilities: 16 heads * 8 * 4096^2 * 4 B
  EXPECT_NEAR(EstimateMemoryPerRank(cpu).activations_bytes - e.activations_bytes,
              17 * 4.0 * 16 * 8 * 4096 * (4096 - 1), 1e3);
}

TEST(EstimateMemoryPerRank, V3LayoutShardsExpertsTensorsAndOptimizer) {
  const TrainConfig cfg = Load("deepseek_v3_671b");
  const ParamCounts c = CountParameters(cfg.model());
  const MemoryEstimate e = EstimateMemoryPerRank(cfg);
  ASSERT_EQ(cfg.parallel().dp(), 32);
  ASSERT_EQ(cfg.parallel().tp(), 8);
  ASSERT_EQ(cfg.parallel().ep(), 256);
  const double dense_held = c.replicated + c.tp_split / 8.0;
  const double experts_held = c.routed_experts / 256.0;
  EXPECT_DOUBLE_EQ(e.weights_bytes, 2 * (dense_held + experts_held));
  EXPECT_DOUBLE_EQ(e.grads_bytes, 4 * (dense_held + experts_held));
  // ZeRO-1: non-expert state over DP (32), expert state over the expert-data-parallel group (256 / 256 = 1).
  EXPECT_DOUBLE_EQ(e.optimizer_bytes, 12 * (dense_held / 32 + experts_held / 1));
  // One expert per MoE layer per rank: 59 MoE layers (58 + MTP) * 3 * 2048 * 7168 = 2.6B parameters.
  EXPECT_DOUBLE_EQ(experts_held, 59.0 * 3 * 2048 * 7168);
  EXPECT_LT(e.total_bytes, 141e9);  // the shipped layout fits an H200 by this estimate
  // 64 ranks with 4 experts each would not: every rank then holds 4x the expert weights and their state.
  TrainConfig small_world = cfg;
  small_world.mutable_parallel()->set_dp(8);
  small_world.mutable_parallel()->set_ep(64);
  const MemoryEstimate e64 = EstimateMemoryPerRank(small_world);
  EXPECT_DOUBLE_EQ(e64.optimizer_bytes, 12 * (dense_held / 8 + c.routed_experts / 64.0));
  EXPECT_GT(e64.total_bytes, 200e9);
}

TEST(EstimateMemoryPerRank, TinyActivationsFollowTheDocumentedFormula) {
  TrainConfig cfg = Load("tiny");  // FP32, B = 4, T = 32: n = 128 tokens
  // Per layer: 4*64*128 + 64*128 + (2*32 + 2*16 + 8)*128 + 4*(48 + 32)*128 elements, FP32 probabilities
  // 4 heads * 4 * 32 * 32 * 4 bytes; dense 3*128*128; MoE 128*2*(64+96) + 3*32*128 and router 4*8*128 bytes.
  const double base = 32768 + 8192 + 13312 + 40960;
  const double probs = 4.0 * 4 * 4 * 32 * 32;
  const double layer0 = (base + 49152) * 4 + probs;
  const double moe_layer = (base + 40960 + 12288) * 4 + probs + 4.0 * 8 * 128;
  const double head = 64 * 128 * 4 + 4.0 * 256 * 128;
  MemoryEstimate e = EstimateMemoryPerRank(cfg);
  EXPECT_DOUBLE_EQ(e.activations_bytes, layer0 + 2 * moe_layer + head);
  EXPECT_DOUBLE_EQ(e.weights_bytes, 4 * 207952.0);  // FP32 working weights
  cfg.mutable_batch()->set_micro_batch_size(8);
  EXPECT_DOUBLE_EQ(EstimateMemoryPerRank(cfg).activations_bytes, 2 * e.activations_bytes);
  cfg.set_precision(moe::config::BF16);
  EXPECT_DOUBLE_EQ(EstimateMemoryPerRank(cfg).weights_bytes, 2 * 207952.0);
}

TEST(DryRunJson, IsOneValidObjectWithTheKeys) {
  const TrainConfig cfg = Load("deepseek_v3_671b");
  const std::string json = DryRunJson(cfg);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  google::protobuf::Struct s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  const auto& f = s.fields();
  EXPECT_EQ(f.at("model_type").string_value(), "deepseek_v3");
  EXPECT_EQ(f.at("total_params").number_value(), 671026404352.0);
  EXPECT_EQ(f.at("mtp_params").number_value(), 11610067968.0);
  EXPECT_EQ(f.at("activated_params_per_token").number_value(), 36625603584.0);
  EXPECT_EQ(f.at("activated_params_per_token_with_embedding").number_value(), 37552282624.0);
  EXPECT_NE(f.at("counting_rule").string_value().find("MTP"), std::string::npos);
  EXPECT_NEAR(f.at("training_flops_per_token").number_value(),
              TrainingFlopsPerToken(cfg.model(), 4096, true), 1.0);
  EXPECT_EQ(f.at("seq_len").number_value(), 4096);
  const auto& layout = f.at("layout").struct_value().fields();
  EXPECT_EQ(layout.at("dp").number_value(), 32);
  EXPECT_EQ(layout.at("tp").number_value(), 8);
  EXPECT_EQ(layout.at("ep").number_value(), 256);
  EXPECT_EQ(layout.at("world").number_value(), 256);
  const auto& mem = f.at("memory_per_rank_bytes").struct_value().fields();
  const MemoryEstimate e = EstimateMemoryPerRank(cfg);
  for (const char* key : {"weights", "grads", "optimizer", "activations", "total"}) {
    ASSERT_TRUE(mem.count(key)) << key;
  }
  EXPECT_NEAR(mem.at("total").number_value(), e.total_bytes, 1.0);
}

}  // namespace
}  // namespace moe::model
