// Golden test in the style of llm.c's test_gpt2: the tiny model's loss, every gradient norm, the
// expert counts and three optimizer steps against float64 values from an independent implementation
// (tests/testdata/golden/README.md). Spans config loading, HF safetensors, the model and the optimizer.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "configs/config_loader.h"
#include "data/token_file.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "base/file_util.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf/json.h"
#include "model/hf_weights.h"
#include "model/model.h"
#include "trainer/distributed_optimizer.h"
#include "parallel/local_communicator.h"

namespace moe {
namespace {

constexpr char kDir[] = "tests/testdata/golden/";
constexpr int64_t kBatch = 4, kSeq = 32;

google::protobuf::Struct ReadJson(const std::string& name) {
  auto text = ReadFileToString(std::string(kDir) + name);
  EXPECT_TRUE(text.ok()) << text.status();
  auto obj = hf::ParseJsonObject(*text, name);
  EXPECT_TRUE(obj.ok()) << obj.status();
  return *obj;
}

struct Fixture {
  kernels::CpuBackend ops{2};
  std::unique_ptr<model::DeepseekV3Model> net;
  data::Batch batch;
};

void Load(const std::string& model_dir, model::Numerics numerics, Fixture* f) {
  auto source = hf::HfTensorSource::Open(std::string(kDir) + model_dir);
  ASSERT_TRUE(source.ok()) << source.status();
  auto text = source->ReadConfigJson();
  ASSERT_TRUE(text.ok()) << text.status();
  auto cfg = config::ModelConfigFromHfJson(*text, model_dir);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  f->net = std::make_unique<model::DeepseekV3Model>(*cfg, numerics, &f->ops, kSeq);
  std::vector<std::string> warnings;
  ASSERT_TRUE(model::LoadHfWeights(*source, numerics == model::Numerics::kBf16, &f->net->params(), f->ops,
                                   &warnings).ok());
  auto batch = data::ReadBatchFromTokenFile(std::string(kDir) + "tokens_b4_t32.bin", kBatch, kSeq);
  ASSERT_TRUE(batch.ok()) << batch.status();
  f->batch = *batch;
}

model::LossStats RunBatch(Fixture& f) {
  f.net->params().ZeroGrads();
  f.net->ResetExpertCounts();
  return f.net->Step(f.batch.inputs.data(), f.batch.targets.data(), kBatch, kSeq, true, 1.0f);
}

// λ/D · Σ_k L^k (0 without MTP).
double WeightedMtpLoss(const model::DeepseekV3Model& net, const model::LossStats& s) {
  double sum = 0;
  for (int64_t k = 1; k <= net.mtp_depths(); ++k) sum += s.mtp_ce_loss(k);
  return net.mtp_depth_weight() * sum;
}

void ExpectCounts(const google::protobuf::Struct& expected, model::DeepseekV3Model& net) {
  const auto& layers = net.moe_layer_indices();
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& list = expected.fields().at(absl::StrCat(layers[i])).list_value();
    ASSERT_EQ(list.values_size(), static_cast<int>(net.expert_counts()[i].size()));
    for (int e = 0; e < list.values_size(); ++e) {
      EXPECT_EQ(net.expert_counts()[i][e], static_cast<int64_t>(list.values(e).number_value()))
          << "layer " << layers[i] << " expert " << e;
    }
  }
}

void ExpectLossAndGradients(const std::string& model_dir, const std::string& expected_file) {
  Fixture f;
  Load(model_dir, model::Numerics::kFp32, &f);
  const google::protobuf::Struct expected = ReadJson(expected_file);
  const model::LossStats stats = RunBatch(f);
  const auto& fields = expected.fields();
  EXPECT_NEAR(stats.ce_loss(), fields.at("ce_loss").number_value(), 1e-5);
  EXPECT_NEAR(stats.balance_loss, fields.at("aux_loss").number_value(), 1e-6);
  const double mtp_loss = WeightedMtpLoss(*f.net, stats);
  if (fields.contains("mtp_loss")) {
    EXPECT_NEAR(mtp_loss, fields.at("mtp_loss").number_value(), 1e-5);
  }
  EXPECT_NEAR(stats.ce_loss() + stats.balance_loss + mtp_loss, fields.at("loss").number_value(), 1e-5);
  const double norm = model::LocalGradNorm(f.ops, f.net->params());
  const double want_norm = fields.at("global_grad_norm").number_value();
  EXPECT_NEAR(norm, want_norm, 1e-5 * want_norm);
  const auto& grad_norms = fields.at("grad_norms").struct_value().fields();
  int checked = 0;
  f.net->params().ForEach([&](const model::Param& p) {
    if (!p.trainable()) return;
    auto it = grad_norms.find(p.name);
    ASSERT_NE(it, grad_norms.end()) << p.name;
    const double want = it->second.number_value();
    const double got = model::GradNorm(f.ops, p);
    EXPECT_NEAR(got, want, 1e-4 * want + 1e-9) << p.name;
    ++checked;
  });
  EXPECT_EQ(checked, static_cast<int>(grad_norms.size()));
  ExpectCounts(fields.at("expert_counts").struct_value(), *f.net);
}

TEST(Golden, TinyLossGradientsAndExpertCounts) {
  ExpectLossAndGradients("tiny_fp32", "expected_loss.json");
}

TEST(Golden, TinyWithSequenceBalanceLoss) {
  ExpectLossAndGradients("tiny_fp32_alpha", "expected_loss_alpha.json");
}

TEST(Golden, TinyMtpLossGradientsAndExpertCounts) {
  ExpectLossAndGradients("tiny_mtp_fp32", "expected_loss_mtp.json");
}

void ExpectThreeSteps(const std::string& model_dir, const std::string& expected_file) {
  Fixture f;
  Load(model_dir, model::Numerics::kFp32, &f);
  const auto expected = ReadJson(expected_file);
  config::OptimizerConfig opt;
  opt.set_lr(1e-2);
  opt.set_beta1(0.9);
  opt.set_beta2(0.95);
  opt.set_eps(1e-8);
  opt.set_weight_decay(0.1);
  opt.set_grad_clip(1.0);
  parallel::LocalCommunicator world("world"), dp("dp"), expert_dp("expert_dp");
  trainer::DistributedOptimizer optimizer(&f.net->params(), {&world, &dp, &expert_dp}, &f.ops, false);
  const auto& steps = expected.fields().at("steps").list_value();
  ASSERT_EQ(steps.values_size(), 3);
  for (int s = 0; s < 3; ++s) {
    const auto& want = steps.values(s).struct_value().fields();
    std::vector<std::vector<float>> bias_before;
    for (int64_t layer : f.net->moe_layer_indices()) {
      const auto& bias =
          f.net->params().Find(absl::StrCat("model.layers.", layer, ".mlp.gate.e_score_correction_bias"))->master;
      bias_before.emplace_back(bias.begin(), bias.end());
    }
    const model::LossStats stats = RunBatch(f);
    EXPECT_NEAR(stats.ce_loss() + stats.balance_loss + WeightedMtpLoss(*f.net, stats), want.at("loss").number_value(),
                1e-5)
        << "step " << s + 1;
    if (want.contains("ce_loss")) {
      EXPECT_NEAR(stats.ce_loss(), want.at("ce_loss").number_value(), 1e-5);
    }
    ExpectCounts(want.at("expert_counts").struct_value(), *f.net);
    const auto step = optimizer.Step(opt, 1e-2, s + 1);
    EXPECT_NEAR(step.grad_norm, want.at("global_grad_norm").number_value(),
                1e-5 * want.at("global_grad_norm").number_value());
    EXPECT_NEAR(step.clip_coef, want.at("clip_coef").number_value(), 1e-5);
    f.net->UpdateCorrectionBiases(1e-3);
    const auto& deltas = want.at("bias_delta").struct_value().fields();
    for (size_t i = 0; i < f.net->moe_layer_indices().size(); ++i) {
      const int64_t layer = f.net->moe_layer_indices()[i];
      const auto& d = deltas.at(absl::StrCat(layer)).list_value();
      const auto* bias =
          f.net->params().Find(absl::StrCat("model.layers.", layer, ".mlp.gate.e_score_correction_bias"));
      for (int e = 0; e < d.values_size(); ++e) {
        EXPECT_NEAR(bias->master[e] - bias_before[i][e], d.values(e).number_value(), 1e-7)
            << "layer " << layer << " expert " << e;
      }
    }
  }
}

TEST(Golden, ThreeAdamWStepsWithClippingAndBiasUpdates) {
  ExpectThreeSteps("tiny_fp32", "expected_steps.json");
}

TEST(Golden, ThreeAdamWStepsWithMtp) { ExpectThreeSteps("tiny_mtp_fp32", "expected_steps_mtp.json"); }

TEST(Golden, Bf16LossWithinTolerance) {
  Fixture f;
  Load("tiny_fp32", model::Numerics::kBf16, &f);
  const double want = ReadJson("expected_loss.json").fields().at("loss").number_value();
  const model::LossStats stats = RunBatch(f);
  EXPECT_NEAR(stats.ce_loss(), want, 1e-3 * want);
  EXPECT_GT(std::abs(stats.ce_loss() - want), 0.0) << "BF16 mode should not be bit-identical to FP32";
}

}  // namespace
}  // namespace moe
