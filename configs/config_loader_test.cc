// Tests for config loading, --set overrides and validation (one case per rule, each checking that the
// message names the field); the Hugging Face config.json tests are in hf_config_json_test.cc.
#include "configs/config_loader.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

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
// The shipped configs.

class ShippedConfigTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ShippedConfigTest, LoadsAndValidates) {
  const std::string path = std::string("configs/") + GetParam() + ".textproto";
  absl::StatusOr<TrainConfig> cfg = LoadTrainConfig(path);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(ValidateTrainConfig(*cfg).ok()) << ValidateTrainConfig(*cfg);
  EXPECT_EQ(cfg->name(), GetParam());
  EXPECT_TRUE(ResolveTrainConfig(path, {}).ok());
}

TEST_P(ShippedConfigTest, ModelRoundTripsThroughHfJson) {
  const TrainConfig cfg = LoadOrDie(std::string("configs/") + GetParam() + ".textproto");
  const std::string json = ModelConfigToHfJson(cfg.model());
  absl::StatusOr<ModelConfig> back = ModelConfigFromHfJson(json, "roundtrip.json");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << json;
  EXPECT_TRUE(MessageDifferencer::Equivalent(cfg.model(), *back))
      << cfg.model().DebugString() << "\nvs\n" << back->DebugString();
  // Round trip again from the fully explicit form: byte-identical JSON.
  EXPECT_EQ(ModelConfigToHfJson(*back), json);
}

// Every shipped config but brown_deepseek_v3_tokenizer, whose data.tokenizer names a directory that
// tools/fetch_tokenizers.sh fills (validation checks that it loads).
INSTANTIATE_TEST_SUITE_P(All, ShippedConfigTest,
                         ::testing::Values("tiny", "tiny_brown", "brown_small", "brown_base", "brown_linear4x",
                                           "brown_yarn4x", "bench_wide", "deepseek_v2_lite", "deepseek_v3_671b",
                                           "small_1b"));

TEST(ShippedConfigs, TinyMatchesTheGoldenConfigJson) {
  const TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  absl::StatusOr<ModelConfig> golden =
      ModelConfigFromHfJson(ReadFile("tests/testdata/golden/tiny_fp32/config.json"), "tests/testdata/golden/tiny_fp32/config.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  // The golden directory switches the balance loss off; tiny.textproto has 0.0001.
  EXPECT_EQ(golden->aux_loss_alpha(), 0.0);
  EXPECT_EQ(cfg.model().aux_loss_alpha(), 0.0001);
  ModelConfig a = cfg.model();
  ModelConfig b = *golden;
  a.clear_aux_loss_alpha();
  b.clear_aux_loss_alpha();
  EXPECT_TRUE(MessageDifferencer::Equivalent(a, b)) << a.DebugString() << "\nvs\n" << b.DebugString();
  EXPECT_EQ(cfg.precision(), FP32);
  EXPECT_EQ(cfg.batch().seq_len(), 32);
  EXPECT_EQ(cfg.output_dir(), "runs/tiny");
}

TEST(ShippedConfigs, BrownSmallIsTheDefaultJob) {
  const TrainConfig cfg = LoadOrDie("configs/brown_small.textproto");
  EXPECT_EQ(cfg.model().vocab_size(), 257);
  EXPECT_FALSE(cfg.model().has_rope_scaling());
  EXPECT_TRUE(cfg.model().has_q_lora_rank());
  EXPECT_EQ(cfg.precision(), BF16);
  EXPECT_EQ(cfg.data().train_path(), "data_cache/brown/train");
  EXPECT_EQ(cfg.data().val_path(), "data_cache/brown/val");
  EXPECT_EQ(cfg.output_dir(), "runs/brown_small");
  EXPECT_EQ(cfg.eval().every(), 50);
}

// ---------------------------------------------------------------------------------------------
// Loading errors.

TEST(LoadTrainConfig, TypoInFieldNameNamesFileLineAndField) {
  const std::string path = WriteTemp("typo.textproto", "name: \"x\"\noptimzer {\n  lr: 1\n}\n");
  absl::StatusOr<TrainConfig> cfg = LoadTrainConfig(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()),
              AllOf(HasSubstr(path + ":2:"), HasSubstr("optimzer"), HasSubstr("did you mean 'optimizer'")));
}

TEST(LoadTrainConfig, TypoInNestedField) {
  const std::string path = WriteTemp("nested.textproto", "model {\n  vocab_sise: 3\n}\n");
  absl::StatusOr<TrainConfig> cfg = LoadTrainConfig(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(std::string(cfg.status().message()),
              AllOf(HasSubstr(path + ":2:"), HasSubstr("vocab_sise"), HasSubstr("ModelConfig"),
                    HasSubstr("did you mean 'vocab_size'")));
}

TEST(LoadTrainConfig, SyntaxErrorNamesFileAndLine) {
  const std::string path = WriteTemp("syntax.textproto", "batch {\n  seq_len: 12\n  micro_batch_size: abc\n}\n");
  absl::StatusOr<TrainConfig> cfg = LoadTrainConfig(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(std::string(cfg.status().message()), AllOf(HasSubstr(path + ":3:"), HasSubstr("micro_batch_size")));
}

TEST(LoadTrainConfig, MissingFile) {
  absl::StatusOr<TrainConfig> cfg = LoadTrainConfig("configs/no_such.textproto");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("configs/no_such.textproto"));
}

// ---------------------------------------------------------------------------------------------
// Validation: every rule, starting from the valid tiny config.

struct RuleCase {
  const char* name;
  std::function<void(TrainConfig*)> mutate;
  std::vector<std::string> expected;  // substrings of the error
};

class ValidationRuleTest : public ::testing::TestWithParam<RuleCase> {};

TEST_P(ValidationRuleTest, RejectsNamingTheField) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  ASSERT_TRUE(ValidateTrainConfig(cfg).ok());
  GetParam().mutate(&cfg);
  const absl::Status st = ValidateTrainConfig(cfg);
  ASSERT_FALSE(st.ok()) << GetParam().name;
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& s : GetParam().expected) {
    EXPECT_THAT(std::string(st.message()), HasSubstr(s)) << GetParam().name;
  }
}

ModelConfig* M(TrainConfig* c) { return c->mutable_model(); }

const RuleCase kRules[] = {
    {"NoModel", [](TrainConfig* c) { c->clear_model(); }, {"model is required"}},
    {"VocabMissing", [](TrainConfig* c) { M(c)->clear_vocab_size(); }, {"model.vocab_size is required"}},
    {"HiddenZero", [](TrainConfig* c) { M(c)->set_hidden_size(0); }, {"model.hidden_size (0) must be > 0"}},
    {"LayersMissing", [](TrainConfig* c) { M(c)->clear_num_hidden_layers(); },
     {"model.num_hidden_layers is required"}},
    {"HeadsNegative", [](TrainConfig* c) { M(c)->set_num_attention_heads(-4); },
     {"model.num_attention_heads (-4) must be > 0"}},
    {"KvLoraMissing", [](TrainConfig* c) { M(c)->clear_kv_lora_rank(); }, {"model.kv_lora_rank is required"}},
    {"NopeMissing", [](TrainConfig* c) { M(c)->clear_qk_nope_head_dim(); },
     {"model.qk_nope_head_dim is required"}},
    {"VHeadZero", [](TrainConfig* c) { M(c)->set_v_head_dim(0); }, {"model.v_head_dim (0) must be > 0"}},
    {"MaxPosMissing", [](TrainConfig* c) { M(c)->clear_max_position_embeddings(); },
     {"model.max_position_embeddings is required"}},
    {"QLoraZero", [](TrainConfig* c) { M(c)->set_q_lora_rank(0); }, {"model.q_lora_rank (0) must be > 0"}},
    {"IntermediateMissingWithDenseLayer", [](TrainConfig* c) { M(c)->clear_intermediate_size(); },
     {"model.intermediate_size is required"}},
    {"MoeIntermediateMissing", [](TrainConfig* c) { M(c)->clear_moe_intermediate_size(); },
     {"model.moe_intermediate_size is required"}},
    {"ExpertsPerTokMissing", [](TrainConfig* c) { M(c)->clear_num_experts_per_tok(); },
     {"model.num_experts_per_tok is required"}},
    {"ModelType", [](TrainConfig* c) { M(c)->set_model_type("llama"); }, {"model.model_type 'llama'"}},
    {"ExpertsNotDivisibleByGroups", [](TrainConfig* c) { M(c)->set_n_group(3); },
     {"model.n_routed_experts (8) is not divisible by model.n_group (3)"}},
    {"FewerThanTwoExpertsPerGroupWithNoauxTc",
     [](TrainConfig* c) {
       M(c)->set_n_group(8);
       M(c)->set_num_experts_per_tok(1);
     },
     {"model.n_routed_experts / model.n_group (8 / 8) must be >= 2", "noaux_tc"}},
    {"TopkGroupExceedsGroups", [](TrainConfig* c) { M(c)->set_topk_group(3); },
     {"model.topk_group (3) exceeds model.n_group (2)"}},
    {"KExceedsReachableExperts", [](TrainConfig* c) { M(c)->set_num_experts_per_tok(5); },
     {"model.num_experts_per_tok (5) exceeds model.topk_group * model.n_routed_experts / model.n_group"}},
    {"OddRopeDim", [](TrainConfig* c) { M(c)->set_qk_rope_head_dim(7); },
     {"model.qk_rope_head_dim (7) must be even"}},
    {"HiddenAct", [](TrainConfig* c) { M(c)->set_hidden_act("gelu"); },
     {"model.hidden_act 'gelu' is not supported"}},
    {"UnknownRopeScalingType",
     [](TrainConfig* c) {
       M(c)->mutable_rope_scaling()->set_type("ntk");
       M(c)->mutable_rope_scaling()->clear_rope_type();
     },
     {"model.rope_scaling.type 'ntk' is unknown"}},
    {"RopeTypesDisagree", [](TrainConfig* c) { M(c)->mutable_rope_scaling()->set_rope_type("linear"); },
     {"model.rope_scaling.type ('yarn') and model.rope_scaling.rope_type ('linear') disagree"}},
    {"RopeScalingWithoutType",
     [](TrainConfig* c) {
       M(c)->mutable_rope_scaling()->clear_type();
       M(c)->mutable_rope_scaling()->clear_rope_type();
     },
     {"model.rope_scaling.type is missing"}},
    {"YarnFactorMissing", [](TrainConfig* c) { M(c)->mutable_rope_scaling()->clear_factor(); },
     {"model.rope_scaling.factor is required"}},
    {"YarnFactorZero", [](TrainConfig* c) { M(c)->mutable_rope_scaling()->set_factor(0); },
     {"model.rope_scaling.factor (0) must be > 0"}},
    {"YarnOriginalMaxMissing",
     [](TrainConfig* c) { M(c)->mutable_rope_scaling()->clear_original_max_position_embeddings(); },
     {"model.rope_scaling.original_max_position_embeddings is required"}},
    {"YarnBetaFast", [](TrainConfig* c) { M(c)->mutable_rope_scaling()->set_beta_fast(0); },
     {"model.rope_scaling.beta_fast (0) must be > 0"}},
    {"UnknownTopkMethod", [](TrainConfig* c) { M(c)->set_topk_method("top_p"); },
     {"model.topk_method 'top_p' is unknown"}},
    {"UnknownScoringFunc", [](TrainConfig* c) { M(c)->set_scoring_func("relu"); },
     {"model.scoring_func 'relu' is unknown"}},
    {"FirstKDenseTooLarge", [](TrainConfig* c) { M(c)->set_first_k_dense_replace(4); },
     {"model.first_k_dense_replace (4) must be in [0, model.num_hidden_layers (3)]"}},
    {"MoeLayerFreq", [](TrainConfig* c) { M(c)->set_moe_layer_freq(0); }, {"model.moe_layer_freq (0)"}},
    {"NextnNegative", [](TrainConfig* c) { M(c)->set_num_nextn_predict_layers(-1); },
     {"model.num_nextn_predict_layers (-1)"}},
    {"AttentionBias", [](TrainConfig* c) { M(c)->set_attention_bias(true); },
     {"model.attention_bias must be false"}},
    {"TiedEmbeddings", [](TrainConfig* c) { M(c)->set_tie_word_embeddings(true); },
     {"model.tie_word_embeddings = true is not supported yet"}},
    {"AttentionDropout", [](TrainConfig* c) { M(c)->set_attention_dropout(0.1); },
     {"model.attention_dropout (0.1) is not supported"}},
    {"RopeInterleave", [](TrainConfig* c) { M(c)->set_rope_interleave(false); },
     {"model.rope_interleave = false is not supported"}},
    {"RmsNormEps", [](TrainConfig* c) { M(c)->set_rms_norm_eps(0); }, {"model.rms_norm_eps (0) must be > 0"}},
    {"RopeTheta", [](TrainConfig* c) { M(c)->set_rope_theta(-1); }, {"model.rope_theta (-1) must be > 0"}},
    {"RoutedScaling", [](TrainConfig* c) { M(c)->set_routed_scaling_factor(0); },
     {"model.routed_scaling_factor (0) must be > 0"}},
    {"AuxAlpha", [](TrainConfig* c) { M(c)->set_aux_loss_alpha(-1); }, {"model.aux_loss_alpha (-1)"}},
    {"SharedExpertsNegative", [](TrainConfig* c) { M(c)->set_n_shared_experts(-1); },
     {"model.n_shared_experts (-1) must be >= 0"}},
    {"SeqLenZero", [](TrainConfig* c) { c->mutable_batch()->set_seq_len(0); }, {"batch.seq_len (0) must be > 0"}},
    {"MicroBatchMissing", [](TrainConfig* c) { c->mutable_batch()->clear_micro_batch_size(); },
     {"batch.micro_batch_size is required"}},
    {"GlobalBatchNotDivisible", [](TrainConfig* c) { c->mutable_batch()->set_global_batch_size(6); },
     {"batch.global_batch_size (6) is not divisible by batch.micro_batch_size * parallel.dp (4 * 1 = 4)"}},
    {"GlobalBatchNotDivisibleByDp",
     [](TrainConfig* c) {
       c->mutable_parallel()->set_dp(3);
       c->mutable_parallel()->set_ep(1);
     },
     {"batch.global_batch_size (4) is not divisible by batch.micro_batch_size * parallel.dp (4 * 3 = 12)"}},
    {"SeqLenExceedsMaxPositions", [](TrainConfig* c) { c->mutable_batch()->set_seq_len(512); },
     {"batch.seq_len (512) exceeds model.max_position_embeddings (256)"}},
    {"SeqLenNotAboveMtpDepth",
     [](TrainConfig* c) {
       c->mutable_batch()->set_seq_len(1);
       M(c)->set_num_nextn_predict_layers(1);
     },
     {"batch.seq_len (1) must exceed model.num_nextn_predict_layers (1)"}},
    {"LrNegative", [](TrainConfig* c) { c->mutable_optimizer()->set_lr(-1e-3); }, {"optimizer.lr (-0.001)"}},
    {"Beta1One", [](TrainConfig* c) { c->mutable_optimizer()->set_beta1(1.0); },
     {"optimizer.beta1 (1) must be in [0, 1)"}},
    {"Beta2Negative", [](TrainConfig* c) { c->mutable_optimizer()->set_beta2(-0.5); }, {"optimizer.beta2 (-0.5)"}},
    {"EpsZero", [](TrainConfig* c) { c->mutable_optimizer()->set_eps(0); }, {"optimizer.eps (0) must be > 0"}},
    {"WeightDecayNegative", [](TrainConfig* c) { c->mutable_optimizer()->set_weight_decay(-0.1); },
     {"optimizer.weight_decay (-0.1)"}},
    {"GradClipNegative", [](TrainConfig* c) { c->mutable_optimizer()->set_grad_clip(-1); },
     {"optimizer.grad_clip (-1)"}},
    {"TotalStepsMissing", [](TrainConfig* c) { c->mutable_schedule()->clear_total_steps(); },
     {"schedule.total_steps is required"}},
    {"WarmupExceedsTotal", [](TrainConfig* c) { c->mutable_schedule()->set_warmup_steps(30); },
     {"schedule.warmup_steps (30) exceeds schedule.total_steps (20)"}},
    {"MinLrRatio", [](TrainConfig* c) { c->mutable_schedule()->set_min_lr_ratio(1.5); },
     {"schedule.min_lr_ratio (1.5)"}},
    {"DpZero", [](TrainConfig* c) { c->mutable_parallel()->set_dp(0); }, {"parallel.dp (0) must be >= 1"}},
    {"TpZero", [](TrainConfig* c) { c->mutable_parallel()->set_tp(0); }, {"parallel.tp (0) must be >= 1"}},
    {"EpNotDividingWorld",
     [](TrainConfig* c) {
       c->mutable_parallel()->set_dp(2);
       c->mutable_batch()->set_global_batch_size(8);
       c->mutable_parallel()->set_ep(4);
     },
     {"parallel.ep (4) does not divide the world size parallel.dp * parallel.tp (2 * 1 = 2)"}},
    {"ExpertsNotDivisibleByEp",
     [](TrainConfig* c) {
       c->mutable_parallel()->set_dp(6);
       c->mutable_batch()->set_global_batch_size(24);
       c->mutable_parallel()->set_ep(3);
     },
     {"model.n_routed_experts (8) is not divisible by parallel.ep (3)"}},
    {"EpWithoutExperts",
     [](TrainConfig* c) {
       M(c)->clear_n_routed_experts();
       c->mutable_parallel()->set_dp(2);
       c->mutable_batch()->set_global_batch_size(8);
       c->mutable_parallel()->set_ep(2);
     },
     {"parallel.ep (2) > 1 but the model has no routed experts"}},
    {"HeadsNotDivisibleByTp", [](TrainConfig* c) { c->mutable_parallel()->set_tp(8); },
     {"model.num_attention_heads (4) is not divisible by parallel.tp (8)"}},
    {"IntermediateNotDivisibleByTp",
     [](TrainConfig* c) {
       c->mutable_parallel()->set_tp(4);
       M(c)->set_intermediate_size(130);
     },
     {"model.intermediate_size (130) is not divisible by parallel.tp (4)"}},
    {"SharedExpertNotDivisibleByTp",
     [](TrainConfig* c) {
       c->mutable_parallel()->set_tp(4);
       M(c)->set_moe_intermediate_size(34);
     },
     {"model.moe_intermediate_size * model.n_shared_experts (34 * 1 = 34) is not divisible by parallel.tp (4)"}},
    {"TokensNotDivisibleByTp",
     [](TrainConfig* c) {
       c->mutable_parallel()->set_tp(4);
       c->mutable_batch()->set_micro_batch_size(1);
       c->mutable_batch()->set_seq_len(31);
     },
     {"batch.micro_batch_size * batch.seq_len (1 * 31) is not divisible by parallel.tp (4)"}},
    {"CollectiveTimeout", [](TrainConfig* c) { c->mutable_parallel()->set_collective_timeout_s(0); },
     {"parallel.collective_timeout_s (0)"}},
    {"GradBucket", [](TrainConfig* c) { c->mutable_parallel()->set_grad_bucket_elements(0); },
     {"parallel.grad_bucket_elements (0) must be >= 1"}},
    {"PrecisionUnspecified", [](TrainConfig* c) { c->set_precision(PRECISION_UNSPECIFIED); },
     {"precision must be BF16 or FP32"}},
    {"DeviceUnspecified", [](TrainConfig* c) { c->set_device(DEVICE_UNSPECIFIED); },
     {"device must be CPU or CUDA"}},
    {"LoggingEvery", [](TrainConfig* c) { c->mutable_logging()->set_every(0); }, {"logging.every (0)"}},
};

INSTANTIATE_TEST_SUITE_P(Rules, ValidationRuleTest, ::testing::ValuesIn(kRules),
                         [](const ::testing::TestParamInfo<RuleCase>& info) { return info.param.name; });

TEST(Validation, ReportsEveryProblemAtOnce) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  cfg.mutable_model()->set_n_group(3);
  cfg.mutable_optimizer()->set_lr(-1);
  const absl::Status st = ValidateTrainConfig(cfg);
  EXPECT_THAT(std::string(st.message()), AllOf(HasSubstr("model.n_group (3)"), HasSubstr("optimizer.lr (-1)")));
}

TEST(Validation, DenseModelNeedsNoExpertFields) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  ModelConfig* m = cfg.mutable_model();
  m->clear_n_routed_experts();
  m->clear_moe_intermediate_size();
  m->clear_num_experts_per_tok();
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok()) << ValidateTrainConfig(cfg);
}

TEST(Validation, AllMoeModelNeedsNoIntermediateSize) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  cfg.mutable_model()->set_first_k_dense_replace(0);
  cfg.mutable_model()->clear_intermediate_size();
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok()) << ValidateTrainConfig(cfg);
}

TEST(Validation, NoRopeScalingAndNoneTypeAreFine) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  cfg.mutable_model()->clear_rope_scaling();
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok());
  EXPECT_EQ(EffectiveRopeScalingType(cfg.model()), "none");
  cfg.mutable_model()->mutable_rope_scaling()->set_rope_type("default");
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok());
  EXPECT_EQ(EffectiveRopeScalingType(cfg.model()), "none");
  cfg.mutable_model()->mutable_rope_scaling()->set_rope_type("linear");
  cfg.mutable_model()->mutable_rope_scaling()->set_factor(2);
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok());
  EXPECT_EQ(EffectiveRopeScalingType(cfg.model()), "linear");
}

TEST(Validation, TrainConfigSeqLenMayDisagreeWithYarnFactor) {
  // Our own configs are free to train at any length: the factor/max-position rule is config.json only.
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  cfg.mutable_model()->mutable_rope_scaling()->set_factor(8);
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok());
}

TEST(Validation, ModelConfigMessagesUseModelPrefix) {
  ModelConfig m = LoadOrDie("configs/tiny.textproto").model();
  EXPECT_TRUE(ValidateModelConfig(m).ok());
  m.set_n_group(3);
  EXPECT_THAT(std::string(ValidateModelConfig(m).message()),
              HasSubstr("model.n_routed_experts (8) is not divisible by model.n_group (3)"));
}

TEST(Validation, ShippedLayoutsRespectTheRules) {
  const TrainConfig v3 = LoadOrDie("configs/deepseek_v3_671b.textproto");
  EXPECT_EQ(v3.parallel().dp() * v3.parallel().tp(), 256);
  EXPECT_EQ(v3.parallel().ep(), 256);
  TrainConfig bad = v3;
  bad.mutable_parallel()->set_dp(8);  // a world of 64 cannot hold EP 256
  EXPECT_THAT(std::string(ValidateTrainConfig(bad).message()),
              HasSubstr("parallel.ep (256) does not divide the world size parallel.dp * parallel.tp (8 * 8 = 64)"));
  bad.mutable_parallel()->set_ep(64);
  EXPECT_TRUE(ValidateTrainConfig(bad).ok()) << ValidateTrainConfig(bad);
}

// data.tokenizer: "byte" or a tokenizer.json (file or directory); errors name the field. (Its contents
// are checked when a run loads it: tests/train_cli_test.sh.)
TEST(Validation, DataTokenizerMustNameATokenizer) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  EXPECT_EQ(cfg.data().tokenizer(), "byte");  // the default
  cfg.mutable_data()->set_tokenizer("byte");
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok()) << ValidateTrainConfig(cfg);

  // A minimal byte-level BPE tokenizer.json, as a file and as its directory.
  const std::string dir = ::testing::TempDir() + "/tokenizer_dir";
  std::filesystem::create_directories(dir);
  const std::string json = dir + "/tokenizer.json";
  std::ofstream(json) << R"({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
      "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
      "decoder": {"type": "ByteLevel"}})";
  for (const std::string& spec : {json, dir}) {
    cfg.mutable_data()->set_tokenizer(spec);
    EXPECT_TRUE(ValidateTrainConfig(cfg).ok()) << ValidateTrainConfig(cfg);
  }

  const std::string empty_dir = ::testing::TempDir() + "/no_tokenizer_here";
  std::filesystem::create_directories(empty_dir);
  const std::pair<std::string, std::vector<std::string>> bad[] = {
      {"", {"data.tokenizer is empty"}},
      {"no/such/tokenizer", {"data.tokenizer (\"no/such/tokenizer\") is neither"}},
      {empty_dir, {"data.tokenizer (\"" + empty_dir + "\") is neither"}},
  };
  for (const auto& [spec, expected] : bad) {
    cfg.mutable_data()->set_tokenizer(spec);
    const absl::Status st = ValidateTrainConfig(cfg);
    ASSERT_FALSE(st.ok()) << spec;
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& s : expected) EXPECT_THAT(std::string(st.message()), HasSubstr(s)) << spec;
  }
  // Through --set, the error is prefixed with the config path like every other.
  const absl::StatusOr<TrainConfig> resolved =
      ResolveTrainConfig("configs/tiny.textproto", {"data.tokenizer=no/such/tokenizer"});
  ASSERT_FALSE(resolved.ok());
  EXPECT_THAT(std::string(resolved.status().message()),
              AllOf(HasSubstr("configs/tiny.textproto: "), HasSubstr("data.tokenizer")));
}

// ---------------------------------------------------------------------------------------------
// Overrides.

TEST(ApplyOverride, SetsScalarsEnumsAndNestedMessages) {
  TrainConfig cfg = LoadOrDie("configs/brown_small.textproto");
  ASSERT_FALSE(cfg.model().has_rope_scaling());
  EXPECT_TRUE(ApplyOverride(&cfg, "optimizer.lr=3e-4").ok());
  EXPECT_DOUBLE_EQ(cfg.optimizer().lr(), 3e-4);
  EXPECT_TRUE(ApplyOverride(&cfg, "model.rope_scaling.factor=8").ok());
  EXPECT_TRUE(cfg.model().has_rope_scaling());
  EXPECT_DOUBLE_EQ(cfg.model().rope_scaling().factor(), 8);
  EXPECT_TRUE(ApplyOverride(&cfg, "precision=FP32").ok());
  EXPECT_EQ(cfg.precision(), FP32);
  EXPECT_TRUE(ApplyOverride(&cfg, "schedule.decay=CONSTANT").ok());
  EXPECT_EQ(cfg.schedule().decay(), ScheduleConfig::CONSTANT);
  EXPECT_TRUE(ApplyOverride(&cfg, "parallel.ep=4").ok());
  EXPECT_EQ(cfg.parallel().ep(), 4);
  EXPECT_TRUE(ApplyOverride(&cfg, " model.seq_aux = false ").ok());
  EXPECT_FALSE(cfg.model().seq_aux());
  EXPECT_TRUE(cfg.model().has_seq_aux());
  EXPECT_TRUE(ApplyOverride(&cfg, "data.train_path=\"/tmp/x y\"").ok());
  EXPECT_EQ(cfg.data().train_path(), "/tmp/x y");
  EXPECT_TRUE(ApplyOverride(&cfg, "output_dir=runs/other").ok());
  EXPECT_EQ(cfg.output_dir(), "runs/other");
  EXPECT_TRUE(ApplyOverride(&cfg, "data.seed=7").ok());
  EXPECT_EQ(cfg.data().seed(), 7u);
  EXPECT_TRUE(ApplyOverride(&cfg, "model.architectures=A, B").ok());
  ASSERT_EQ(cfg.model().architectures_size(), 2);
  EXPECT_EQ(cfg.model().architectures(1), "B");
  EXPECT_EQ(cfg.cuda().memory(), config::CudaConfig::UNIFIED);  // the default
  EXPECT_TRUE(ApplyOverride(&cfg, "cuda.memory=DEVICE").ok());
  EXPECT_EQ(cfg.cuda().memory(), config::CudaConfig::DEVICE);
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "cuda.memory=DEVCE").message()),
              AllOf(HasSubstr("'DEVCE'"), HasSubstr("UNIFIED"), HasSubstr("DEVICE")));
  EXPECT_EQ(cfg.cuda().grouped_gemm(), config::CudaConfig::CUBLASLT_STREAMS);  // the default
  EXPECT_TRUE(ApplyOverride(&cfg, "cuda.grouped_gemm=CUBLAS_GROUPED").ok());
  EXPECT_EQ(cfg.cuda().grouped_gemm(), config::CudaConfig::CUBLAS_GROUPED);
  EXPECT_TRUE(ApplyOverride(&cfg, "cuda.grouped_gemm=CUBLASLT_PADDED").ok());
  EXPECT_EQ(cfg.cuda().grouped_gemm(), config::CudaConfig::CUBLASLT_PADDED);
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "cuda.grouped_gemm=GROUPED").message()),
              AllOf(HasSubstr("'GROUPED'"), HasSubstr("CUBLAS_GROUPED"), HasSubstr("GROUPED_KERNEL")));
}

TEST(ApplyOverride, NullClearsFieldsAndMessages) {
  TrainConfig cfg = LoadOrDie("configs/tiny.textproto");
  EXPECT_TRUE(ApplyOverride(&cfg, "model.q_lora_rank=null").ok());
  EXPECT_FALSE(cfg.model().has_q_lora_rank());
  EXPECT_TRUE(ApplyOverride(&cfg, "model.rope_scaling=null").ok());
  EXPECT_FALSE(cfg.model().has_rope_scaling());
  // Clearing inside an absent message is a no-op and does not create it.
  EXPECT_TRUE(ApplyOverride(&cfg, "model.rope_scaling.factor=null").ok());
  EXPECT_FALSE(cfg.model().has_rope_scaling());
  EXPECT_TRUE(ValidateTrainConfig(cfg).ok()) << ValidateTrainConfig(cfg);
}

TEST(ApplyOverride, UnknownFieldNamesTheComponentAndTheAssignment) {
  TrainConfig cfg;
  absl::Status st = ApplyOverride(&cfg, "optimzer.lr=1");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("unknown field 'optimzer' in TrainConfig"), HasSubstr("(from --set optimzer.lr=1)"),
                    HasSubstr("did you mean 'optimizer'")));
  st = ApplyOverride(&cfg, "model.n_experts=4");
  EXPECT_THAT(std::string(st.message()), HasSubstr("unknown field 'n_experts' in ModelConfig"));
}

TEST(ApplyOverride, BadValuesAreRefused) {
  TrainConfig cfg;
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "optimizer.lr=abc").message()),
              AllOf(HasSubstr("cannot parse 'abc' as a number for optimizer.lr"),
                    HasSubstr("(from --set optimizer.lr=abc)")));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "parallel.ep=2.5").message()),
              HasSubstr("cannot parse '2.5' as an integer for parallel.ep"));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "precision=FP16").message()),
              AllOf(HasSubstr("'FP16'"), HasSubstr("BF16"), HasSubstr("FP32")));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "model.seq_aux=yes").message()), HasSubstr("a bool"));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "optimizer.lr").message()), HasSubstr("dotted.path=value"));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "optimizer.lr.x=1").message()),
              HasSubstr("'optimizer.lr' is not a message"));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "model.rope_scaling=3").message()),
              HasSubstr("'model.rope_scaling' is a message"));
  EXPECT_THAT(std::string(ApplyOverride(&cfg, "optimizer..lr=1").message()), HasSubstr("empty field name"));
  EXPECT_FALSE(cfg.has_optimizer() && cfg.optimizer().has_lr());
}

TEST(ResolveTrainConfig, AppliesOverridesThenValidates) {
  absl::StatusOr<TrainConfig> cfg =
      ResolveTrainConfig("configs/tiny.textproto", {"parallel.dp=2", "batch.global_batch_size=8", "parallel.ep=2"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->parallel().ep(), 2);
  cfg = ResolveTrainConfig("configs/tiny.textproto", {"parallel.ep=3"});
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(std::string(cfg.status().message()),
              AllOf(HasSubstr("configs/tiny.textproto: "), HasSubstr("parallel.ep (3)")));
  cfg = ResolveTrainConfig("configs/tiny.textproto", {"parallel.epp=3"});
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(std::string(cfg.status().message()),
              AllOf(HasSubstr("configs/tiny.textproto: "), HasSubstr("unknown field 'epp' in ParallelConfig")));
}

}  // namespace
}  // namespace moe::config
