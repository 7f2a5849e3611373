// The absorbed-cache incremental decoder against the model's full forward (DeepseekV3Model::Logits):
// random small models (q LoRA + YaRN + biased group-limited routing with a shared expert; q_proj + plain
// RoPE + softmax greedy routing without one) and the golden tiny model, every position's logits within
// 1e-5 of the largest logit (FP32). Also the cache size, the length limit, Reset and bad tokens.
#include "model/inference/decoder.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "configs/config_loader.h"
#include "data/token_file.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "model/inference/speculative.h"
#include "model/model.h"

namespace moe::inference {
namespace {

using model::DeepseekV3Model;
using model::Numerics;

// Case 1: q LoRA, YaRN (with mscale_all_dim), noaux_tc routing over 2 groups with a shared expert.
config::ModelConfig LoraYarnConfig() {
  config::ModelConfig mc;
  mc.set_vocab_size(40);
  mc.set_hidden_size(16);
  mc.set_intermediate_size(24);
  mc.set_moe_intermediate_size(8);
  mc.set_num_hidden_layers(3);
  mc.set_first_k_dense_replace(1);
  mc.set_num_attention_heads(3);
  mc.set_q_lora_rank(8);
  mc.set_kv_lora_rank(6);
  mc.set_qk_nope_head_dim(4);
  mc.set_qk_rope_head_dim(4);
  mc.set_v_head_dim(5);
  mc.set_n_routed_experts(8);
  mc.set_num_experts_per_tok(2);
  mc.set_n_group(2);
  mc.set_topk_group(1);
  mc.set_n_shared_experts(1);
  mc.set_routed_scaling_factor(2.5);
  mc.set_max_position_embeddings(64);
  auto* rs = mc.mutable_rope_scaling();
  rs->set_type("yarn");
  rs->set_factor(4.0);
  rs->set_original_max_position_embeddings(16);
  rs->set_mscale(1.0);
  rs->set_mscale_all_dim(1.0);
  return mc;
}

// Case 2: no q LoRA (q_proj), plain RoPE, softmax scoring with plain greedy top-k, no shared expert.
config::ModelConfig QProjConfig() {
  config::ModelConfig mc = LoraYarnConfig();
  mc.clear_q_lora_rank();
  mc.clear_rope_scaling();
  mc.set_n_shared_experts(0);
  mc.set_n_group(1);
  mc.set_scoring_func("softmax");
  mc.set_topk_method("greedy");
  mc.set_norm_topk_prob(false);
  mc.set_routed_scaling_factor(1.0);
  return mc;
}

// Random weights of a useful scale; norm weights near 1 and non-zero correction biases.
void Randomize(model::ParamStore& params, uint64_t seed) {
  params.ForEach([&](model::Param& p) {
    for (int64_t i = 0; i < p.numel(); ++i) {
      const double z = model::SeededNormal(seed, p.name, i);
      switch (p.kind) {
        case model::ParamKind::kMatrix: p.master[i] = static_cast<float>(0.4 * z); break;
        case model::ParamKind::kNorm: p.master[i] = static_cast<float>(1.0 + 0.2 * z); break;
        case model::ParamKind::kBuffer: p.master[i] = static_cast<float>(0.3 * z); break;
      }
    }
  });
  kernels::CpuBackend ops(1);
  params.RefreshWorking(false, ops);
}

// max |a - b| / max |b| over one position's logits.
double RelativeDiff(const float* a, const float* b, int64_t n) {
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

// Steps the decoder through `ids` and checks every position against the full forward. Returns the worst
// relative difference.
double CompareWithFullForward(DeepseekV3Model& net, kernels::Backend* ops, const std::vector<int32_t>& ids,
                              Numerics numerics, double tolerance) {
  const int64_t seq = static_cast<int64_t>(ids.size()), vocab = net.config().vocab_size();
  const std::vector<float> full = net.Logits(ids.data(), 1, seq);
  auto dec = IncrementalDecoder::Create(net.config(), net.params(), ops, net.rope(), {seq, numerics});
  EXPECT_TRUE(dec.ok()) << dec.status();
  if (!dec.ok()) return 1.0;
  double worst = 0.0;
  for (int64_t t = 0; t < seq; ++t) {
    auto logits = (*dec)->Step(ids[t]);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return 1.0;
    EXPECT_EQ(static_cast<int64_t>(logits->size()), vocab);
    const double rel = RelativeDiff(logits->data(), &full[t * vocab], vocab);
    EXPECT_LE(rel, tolerance) << "position " << t;
    worst = std::max(worst, rel);
  }
  EXPECT_EQ((*dec)->position(), seq);
  return worst;
}

std::vector<int32_t> Tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % vocab);
  return ids;
}

TEST(IncrementalDecoder, MatchesFullForwardWithQLoraYarnAndBiasedRouting) {
  kernels::CpuBackend ops(2);
  const config::ModelConfig mc = LoraYarnConfig();
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 12);
  Randomize(net.params(), 7);
  const double worst = CompareWithFullForward(net, &ops, Tokens(12, mc.vocab_size()), Numerics::kFp32, 1e-5);
  std::printf("q LoRA + YaRN: worst relative logit difference %.3g\n", worst);
}

TEST(IncrementalDecoder, MatchesFullForwardWithQProj) {
  kernels::CpuBackend ops(2);
  const config::ModelConfig mc = QProjConfig();
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 12);
  ASSERT_EQ(net.params().Find("model.layers.0.self_attn.q_a_proj.weight"), nullptr);
  Randomize(net.params(), 11);
  const double worst = CompareWithFullForward(net, &ops, Tokens(12, mc.vocab_size()), Numerics::kFp32, 1e-5);
  std::printf("q_proj: worst relative logit difference %.3g\n", worst);
}

TEST(IncrementalDecoder, Bf16IsCloseToTheBf16FullForward) {
  kernels::CpuBackend ops(2);
  const config::ModelConfig mc = LoraYarnConfig();
  DeepseekV3Model net(mc, Numerics::kBf16, &ops, 12);
  Randomize(net.params(), 7);
  net.params().RefreshWorking(true, ops);
  // Not bit-equal (the absorbed form never rounds per-head K/V), but within BF16 rounding noise.
  const double worst = CompareWithFullForward(net, &ops, Tokens(12, mc.vocab_size()), Numerics::kBf16, 5e-2);
  std::printf("BF16: worst relative logit difference %.3g\n", worst);
}

// A golden HF model (tests/testdata/golden/NAME) and its first sequence of 32 tokens.
struct Golden {
  std::unique_ptr<DeepseekV3Model> net;
  data::Batch batch;
};
void LoadGolden(const std::string& name, kernels::Backend* ops, Golden* g) {
  const std::string dir = "tests/testdata/golden/";
  auto source = hf::HfTensorSource::Open(dir + name);
  ASSERT_TRUE(source.ok()) << source.status();
  auto text = source->ReadConfigJson();
  ASSERT_TRUE(text.ok()) << text.status();
  auto cfg = config::ModelConfigFromHfJson(*text, name + "/config.json");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto batch = data::ReadBatchFromTokenFile(dir + "tokens_b4_t32.bin", 1, 32);
  ASSERT_TRUE(batch.ok()) << batch.status();
  g->batch = *batch;
  g->net = std::make_unique<DeepseekV3Model>(*cfg, Numerics::kFp32, ops, 32);
  std::vector<std::string> warnings;
  ASSERT_TRUE(model::LoadHfWeights(*source, false, &g->net->params(), *ops, &warnings).ok());
}

TEST(IncrementalDecoder, GoldenTinyModelFirst32Tokens) {
  kernels::CpuBackend ops(2);
  Golden g;
  LoadGolden("tiny_fp32", &ops, &g);
  const double worst = CompareWithFullForward(*g.net, &ops, g.batch.inputs, Numerics::kFp32, 1e-5);
  std::printf("golden tiny: worst relative logit difference %.3g\n", worst);
}

TEST(IncrementalDecoder, CacheHoldsOnlyTheLatentAndRopeKey) {
  kernels::CpuBackend ops(1);
  const config::ModelConfig mc = LoraYarnConfig();
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 4);
  Randomize(net.params(), 3);
  auto dec = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope());
  ASSERT_TRUE(dec.ok()) << dec.status();
  const int64_t floats = mc.num_hidden_layers() * (mc.kv_lora_rank() + mc.qk_rope_head_dim());  // 3·(6+4)
  EXPECT_EQ((*dec)->CacheBytesPerToken(), floats * 4);
  EXPECT_EQ((*dec)->CacheBytesPerToken(), 120);
  EXPECT_EQ(IncrementalDecoder::FullMhaCacheBytesPerToken(mc), 3 * 3 * (8 + 5) * 4);
  EXPECT_EQ((*dec)->CacheBytesInUse(), 0);
  ASSERT_TRUE((*dec)->Prefill({1, 2, 3}).ok());
  EXPECT_EQ((*dec)->CacheBytesInUse(), 3 * floats * 4);
}

TEST(IncrementalDecoder, DeepseekV3CacheSizes) {
  auto cfg = config::LoadTrainConfig("configs/deepseek_v3_671b.textproto");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  // 61 layers x (512 + 64) floats vs 61 x 128 heads x (192 + 128) floats.
  EXPECT_EQ(IncrementalDecoder::AbsorbedCacheBytesPerToken(cfg->model()), 61 * 576 * 4);
  EXPECT_EQ(IncrementalDecoder::FullMhaCacheBytesPerToken(cfg->model()), 61 * 128 * 320 * 4);
}

TEST(IncrementalDecoder, LengthLimitResetAndBadTokens) {
  kernels::CpuBackend ops(1);
  const config::ModelConfig mc = QProjConfig();
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 8);
  Randomize(net.params(), 5);
  auto too_long = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope(), {9, Numerics::kFp32});
  EXPECT_FALSE(too_long.ok());
  auto dec = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope(), {3, Numerics::kFp32});
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ((*dec)->max_length(), 3);
  EXPECT_EQ((*dec)->Step(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*dec)->Step(static_cast<int32_t>(mc.vocab_size())).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*dec)->position(), 0);
  auto first = (*dec)->Prefill({4, 5, 6});
  ASSERT_TRUE(first.ok()) << first.status();
  auto beyond = (*dec)->Step(7);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(beyond.status().message().find("maximum length 3"), std::string::npos) << beyond.status();
  (*dec)->Reset();
  EXPECT_EQ((*dec)->position(), 0);
  auto again = (*dec)->Prefill({4, 5, 6});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*first, *again);
  EXPECT_FALSE((*dec)->Prefill({}).ok());
}

TEST(IncrementalDecoder, RefusesAMissingTensor) {
  kernels::CpuBackend ops(1);
  const config::ModelConfig built = QProjConfig();
  DeepseekV3Model net(built, Numerics::kFp32, &ops, 4);
  net.params().RefreshWorking(false, ops);
  config::ModelConfig other = built;
  other.set_q_lora_rank(8);  // the parameters have q_proj, not q_a_proj
  auto dec = IncrementalDecoder::Create(other, net.params(), &ops, net.rope());
  ASSERT_FALSE(dec.ok());
  EXPECT_NE(dec.status().message().find("model.layers.0.self_attn.q_a_proj.weight"), std::string::npos)
      << dec.status();
}

// Several tokens in one pass (what speculative verification runs) give every position the logits of
// one token at a time, and Truncate + Forward recomputes dropped positions exactly.
TEST(IncrementalDecoder, ForwardOfSeveralTokensAndTruncate) {
  kernels::CpuBackend ops(2);
  const config::ModelConfig mc = LoraYarnConfig();
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 12);
  Randomize(net.params(), 7);
  const std::vector<int32_t> ids = Tokens(10, mc.vocab_size());
  const int64_t vocab = mc.vocab_size();
  auto one = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope());
  auto many = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope());
  ASSERT_TRUE(one.ok() && many.ok());
  std::vector<float> stepwise;
  for (int32_t id : ids) {
    auto logits = (*one)->Step(id);
    ASSERT_TRUE(logits.ok()) << logits.status();
    stepwise.insert(stepwise.end(), logits->begin(), logits->end());
  }
  auto head = (*many)->Forward({ids.begin(), ids.begin() + 4});
  auto tail = (*many)->Forward({ids.begin() + 4, ids.end()});
  ASSERT_TRUE(head.ok() && tail.ok());
  EXPECT_EQ(tail->n, 6);
  std::vector<float> batched = head->logits;
  batched.insert(batched.end(), tail->logits.begin(), tail->logits.end());
  ASSERT_EQ(batched.size(), stepwise.size());
  for (size_t i = 0; i < stepwise.size(); ++i) {
    ASSERT_NEAR(batched[i], stepwise[i], 1e-5 * (1 + std::fabs(stepwise[i]))) << "logit " << i;
  }
  (*many)->Truncate(6);
  EXPECT_EQ((*many)->position(), 6);
  auto redo = (*many)->Forward({ids.begin() + 6, ids.end()});
  ASSERT_TRUE(redo.ok());
  EXPECT_EQ(redo->logits, std::vector<float>(tail->logits.begin() + 2 * vocab, tail->logits.end()));
}

// The golden MTP model (one module): its decoded MTP logits give the training forward's L^1.
TEST(IncrementalDecoder, MtpModuleMatchesTheTrainingForward) {
  kernels::CpuBackend ops(2);
  Golden g;
  LoadGolden("tiny_mtp_fp32", &ops, &g);
  DeepseekV3Model& net = *g.net;
  const config::ModelConfig* cfg = &net.config();
  const data::Batch* batch = &g.batch;  // the golden tokens, B = 1
  const model::LossStats stats = net.Step(batch->inputs.data(), batch->targets.data(), 1, 32, false, 1.0f);

  auto dec = IncrementalDecoder::Create(*cfg, net.params(), &ops, net.rope(), {32, Numerics::kFp32, /*mtp=*/true});
  ASSERT_TRUE(dec.ok()) << dec.status();
  ASSERT_EQ((*dec)->mtp_depths(), 1);
  auto main = (*dec)->Forward(batch->inputs);
  ASSERT_TRUE(main.ok());
  // Module 1 at t = 0..30: h^0_t and x_{t+1}, predicting y_{t+1} = x_{t+2}.
  const int64_t d = cfg->hidden_size(), vocab = cfg->vocab_size();
  std::vector<float> h0(main->hidden.begin(), main->hidden.begin() + 31 * d);
  std::vector<int32_t> next(batch->inputs.begin() + 1, batch->inputs.end());
  auto mtp = (*dec)->MtpForward(1, h0, next);
  ASSERT_TRUE(mtp.ok()) << mtp.status();
  EXPECT_EQ((*dec)->mtp_position(1), 31);
  double ce = 0;
  for (int64_t t = 0; t < 31; ++t) {
    const float* z = mtp->logits.data() + t * vocab;
    double mx = z[0], sum = 0;
    for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, static_cast<double>(z[v]));
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(z[v] - mx);
    ce += mx + std::log(sum) - z[batch->targets[t + 1]];
  }
  EXPECT_NEAR(ce / 31, stats.mtp_ce_loss(1), 1e-5);
  EXPECT_FALSE((*dec)->MtpForward(2, h0, next).ok());
}

// Speculative greedy decoding is the main model's greedy decoding: two MTP modules (MoE blocks), random
// weights (drafts mostly rejected) and weights whose MTP modules copy the next-token prediction well
// enough to be accepted sometimes; FP32 and BF16, a length limit and an end id.
TEST(SpeculativeDecoding, GreedyTextEqualsPlainGreedy) {
  config::ModelConfig mc = LoraYarnConfig();
  mc.set_num_nextn_predict_layers(2);
  for (const Numerics numerics : {Numerics::kFp32, Numerics::kBf16}) {
    kernels::CpuBackend ops(2);
    DeepseekV3Model net(mc, numerics, &ops, 40);
    Randomize(net.params(), 21);
    net.params().RefreshWorking(numerics == Numerics::kBf16, ops);
    for (const int32_t eos : {-1, 5}) {
      auto plain = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope(), {40, numerics, true});
      auto spec = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope(), {40, numerics, true});
      ASSERT_TRUE(plain.ok() && spec.ok());
      const std::vector<int32_t> prompt = {3, 9, 27, 1};
      std::vector<int32_t> streamed;
      auto want = GenerateGreedy(**plain, prompt, 30, eos, [](int32_t) {});
      SpeculativeStats stats;
      auto got = GenerateGreedySpeculative(**spec, prompt, 30, eos,
                                           [&](int32_t t) { streamed.push_back(t); }, &stats);
      ASSERT_TRUE(want.ok() && got.ok()) << got.status();
      EXPECT_EQ(*got, *want) << (numerics == Numerics::kBf16 ? "BF16" : "FP32") << " eos " << eos;
      EXPECT_EQ(streamed, *got);
      EXPECT_GT(stats.rounds, 0);
      EXPECT_LE(stats.accepted, stats.drafted);
      if (eos < 0) {
        EXPECT_EQ(got->size(), 30u);
      }
    }
  }
  // The length limit: the prompt and 36 new tokens fill the 40 positions the decoder holds.
  kernels::CpuBackend ops(1);
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 40);
  Randomize(net.params(), 22);
  auto spec = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope(), {40, Numerics::kFp32, true});
  auto plain = IncrementalDecoder::Create(mc, net.params(), &ops, net.rope(), {40, Numerics::kFp32, true});
  SpeculativeStats stats;
  auto got = GenerateGreedySpeculative(**spec, {1, 2, 3, 4}, 37, -1, [](int32_t) {}, &stats);
  auto want = GenerateGreedy(**plain, {1, 2, 3, 4}, 37, -1, [](int32_t) {});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(*got, *want);
}

}  // namespace
}  // namespace moe::inference
