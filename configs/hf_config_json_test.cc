// The Hugging Face config.json reader and writer: the published DeepSeek-V3 and V2-Lite configs, the
// golden tiny config, newer key spellings, the YaRN factor rule and errors naming source and field.
#include <string>

#include "configs/config_loader.h"
#include "configs/test_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace moe::config {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::AllOf;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Hugging Face config.json.

constexpr char kV3Json[] = R"({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 129280,
 "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
 "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
 "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
 "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "topk_method": "noaux_tc",
 "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5, "first_k_dense_replace": 3,
 "moe_layer_freq": 1, "num_nextn_predict_layers": 1, "hidden_act": "silu", "rms_norm_eps": 1e-06,
 "rope_theta": 10000, "max_position_embeddings": 163840,
 "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                  "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
 "tie_word_embeddings": false, "attention_bias": false, "attention_dropout": 0.0, "initializer_range": 0.02,
 "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "bfloat16",
 "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                         "weight_block_size": [128, 128]}, "use_cache": true, "ep_size": 1,
 "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}})";

constexpr char kV2LiteJson[] = R"({"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": 102400,
 "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 27,
 "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": null, "kv_lora_rank": 512,
 "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
 "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 1, "topk_group": 1, "topk_method": "greedy",
 "scoring_func": "softmax", "norm_topk_prob": false, "routed_scaling_factor": 1.0, "first_k_dense_replace": 1,
 "moe_layer_freq": 1, "aux_loss_alpha": 0.001, "seq_aux": true, "hidden_act": "silu", "rms_norm_eps": 1e-06,
 "rope_theta": 10000, "max_position_embeddings": 163840,
 "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                  "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
 "tie_word_embeddings": false, "attention_bias": false, "initializer_range": 0.02,
 "bos_token_id": 100000, "eos_token_id": 100001, "torch_dtype": "bfloat16"})";

TEST(HfJson, SpecV3ConfigMatchesTheTextConfig) {
  absl::StatusOr<ModelConfig> m = ModelConfigFromHfJson(kV3Json, "v3.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->q_lora_rank(), 1536);
  EXPECT_EQ(EffectiveRopeScalingType(*m), "yarn");
  // The text config adds the project's training keys (alpha, gamma, lambda) on top of the published file.
  ModelConfig text = LoadOrDie("configs/deepseek_v3_671b.textproto").model();
  for (ModelConfig* x : {&text, &*m}) {
    x->clear_aux_loss_alpha();
    x->clear_seq_aux();
    x->clear_bias_update_speed();
    x->clear_mtp_loss_weight();
  }
  EXPECT_TRUE(MessageDifferencer::Equivalent(text, *m)) << text.DebugString() << "\nvs\n" << m->DebugString();
}

TEST(HfJson, V2LiteNullQLoraRankMeansUnset) {
  absl::StatusOr<ModelConfig> m = ModelConfigFromHfJson(kV2LiteJson, "v2lite.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->has_q_lora_rank());
  const ModelConfig text = LoadOrDie("configs/deepseek_v2_lite.textproto").model();
  EXPECT_TRUE(MessageDifferencer::Equivalent(text, *m)) << text.DebugString() << "\nvs\n" << m->DebugString();
  const std::string json = ModelConfigToHfJson(*m);
  EXPECT_THAT(json, AllOf(HasSubstr("\n  \"q_lora_rank\": null,\n"), HasSubstr("\n  \"model_type\": \"deepseek_v2\",\n"),
                          HasSubstr("\"DeepseekV2ForCausalLM\""), HasSubstr("\n    \"mscale\": 0.707,\n"),
                          HasSubstr("\"rms_norm_eps\": 1e-06,"), HasSubstr("\"rope_theta\": 10000.0,")));
}

TEST(HfJson, GoldenTinyConfigParses) {
  absl::StatusOr<ModelConfig> m =
      ModelConfigFromHfJson(ReadFile("tests/testdata/golden/tiny_fp32/config.json"), "tests/testdata/golden/tiny_fp32/config.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->vocab_size(), 256);
  EXPECT_EQ(m->q_lora_rank(), 32);
  EXPECT_EQ(m->rope_scaling().rope_type(), "yarn");
  EXPECT_DOUBLE_EQ(m->rope_scaling().factor(), 4.0);
  EXPECT_EQ(m->torch_dtype(), "float32");
  EXPECT_TRUE(LoadHfConfigJson("tests/testdata/golden/tiny_fp32/config.json").ok());
  EXPECT_EQ(LoadHfConfigJson("configs/testdata/none.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(HfJson, NewerSpellings) {
  const std::string json = R"({"model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_lora_rank": 16,
    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "max_position_embeddings": 256,
    "dtype": "bfloat16", "eos_token_id": [7, 8], "rope_scaling": null,
    "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                        "rope_theta": 50000.0, "beta_fast": 16}})";
  absl::StatusOr<ModelConfig> m = ModelConfigFromHfJson(json, "new.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->torch_dtype(), "bfloat16");
  EXPECT_EQ(m->eos_token_id(), 7);
  EXPECT_DOUBLE_EQ(m->rope_theta(), 50000.0);
  EXPECT_EQ(EffectiveRopeScalingType(*m), "yarn");
  EXPECT_DOUBLE_EQ(m->rope_scaling().beta_fast(), 16);
  EXPECT_FALSE(m->has_n_routed_experts());

  const std::string plain = R"({"model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_lora_rank": 16,
    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "max_position_embeddings": 256,
    "rope_parameters": {"rope_type": "default", "rope_theta": 20000.0}})";
  m = ModelConfigFromHfJson(plain, "plain.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->has_rope_scaling());
  EXPECT_DOUBLE_EQ(m->rope_theta(), 20000.0);
}

TEST(HfJson, YarnFactorMustMatchMaxPositions) {
  std::string json = ReadFile("tests/testdata/golden/tiny_fp32/config.json");
  const std::string from = "\"factor\": 4.0";
  ASSERT_NE(json.find(from), std::string::npos);
  json.replace(json.find(from), from.size(), "\"factor\": 8.0");
  absl::StatusOr<ModelConfig> m = ModelConfigFromHfJson(json, "tiny_bad.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()),
              AllOf(HasSubstr("tiny_bad.json: "), HasSubstr("rope_scaling.factor (8) disagrees"),
                    HasSubstr("(256 / 64 = 4)")));
}

TEST(HfJson, ErrorsNameTheSourceAndField) {
  absl::StatusOr<ModelConfig> m = ModelConfigFromHfJson("{\"vocab_size\": ", "broken.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("broken.json: not a valid JSON object"));

  m = ModelConfigFromHfJson(R"({"vocab_size": "many"})", "typed.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), AllOf(HasSubstr("typed.json"), HasSubstr("vocab_size")));

  std::string json = ReadFile("tests/testdata/golden/tiny_fp32/config.json");
  const std::string from = "\"n_group\": 2";
  json.replace(json.find(from), from.size(), "\"n_group\": 3");
  m = ModelConfigFromHfJson(json, "tiny3.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("tiny3.json: n_routed_experts (8) is not divisible by n_group (3)"));
}

}  // namespace
}  // namespace moe::config
