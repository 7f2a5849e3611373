// Finite-difference gradient checks, FP32 mode, for every layer of the model (MLA with and without
// q LoRA, SwiGLU, MoE with each router variant and the balance loss) and for the whole network
// (embedding, norms, head, cross-entropy). Each layer's loss is Σ out ⊙ R for a fixed random R, so
// d_out = R. Central differences in FP32 have noise ~1e-4, hence the mixed abs/rel tolerance.
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/attention.h"
#include "model/mlp.h"
#include "model/model.h"
#include "model/moe.h"
#include "model/rope.h"
#include "parallel/local_communicator.h"

namespace moe::model {
namespace {

constexpr double kStep = 2e-3;

std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Randomises every parameter (norm weights around 1, biases small) so all paths matter.
void Randomize(ParamStore& store, uint32_t seed) {
  kernels::CpuBackend ops(1);
  store.Initialize(seed, 0.2, ops);
  uint32_t k = seed;
  store.ForEach([&](Param& p) {
    if (p.kind == ParamKind::kNorm) {
      auto r = RandomVector(p.numel(), ++k, 0.2f);
      for (int64_t i = 0; i < p.numel(); ++i) p.master[i] = 1.0f + r[i];
    } else if (p.kind == ParamKind::kBuffer) {
      const std::vector<float> r = RandomVector(p.numel(), ++k, 0.05f);
      p.master.AssignFromHost(r.data(), p.numel());
    }
  });
  store.RefreshWorking(false, ops);
  store.ZeroGrads();
}

// Compares analytic grads of every trainable tensor (and of `input`, if given) against central
// differences of `loss` on `samples` elements per tensor: the largest-gradient ones and random ones.
void CheckGradients(ParamStore& store, const std::function<double()>& loss,
                    std::vector<float>* input = nullptr, const std::vector<float>* input_grad = nullptr,
                    int samples = 6) {
  int jumps = 0, checked = 0;
  // values, mirror, grad: Buffers (parameters) or std::vectors (the input).
  auto check = [&](const std::string& name, auto& values, auto* mirror, const auto& grad) {
    std::vector<int64_t> picks;
    int64_t best = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(grad.size()); ++i) {
      if (std::fabs(grad[i]) > std::fabs(grad[best])) best = i;
    }
    picks.push_back(best);
    std::mt19937 gen(static_cast<uint32_t>(name.size() * 7919 + grad.size()));
    for (int s = 1; s < samples; ++s) picks.push_back(gen() % grad.size());
    double max_grad = 0;
    for (float g : grad) max_grad = std::max(max_grad, static_cast<double>(std::fabs(g)));
    for (int64_t i : picks) {
      const float orig = values[i];
      auto set = [&](float v) {
        values[i] = v;
        if (mirror) (*mirror)[i] = v;
      };
      const double center = loss();
      set(orig + static_cast<float>(kStep));
      const double up = loss();
      set(orig - static_cast<float>(kStep));
      const double down = loss();
      set(orig);
      const double tol_floor = 2e-3 * max_grad + 2e-4;
      double fd = (up - down) / (2 * kStep);
      // Routing is piecewise constant: if the step crossed a selection boundary on one side (the two
      // one-sided slopes disagree wildly), use the slope of the smooth side.
      const double fd_up = (up - center) / kStep, fd_down = (center - down) / kStep;
      if (std::fabs(fd_up - fd_down) > 50 * tol_floor) {
        fd = std::fabs(fd_up - grad[i]) < std::fabs(fd_down - grad[i]) ? fd_up : fd_down;
        ++jumps;
      }
      EXPECT_NEAR(grad[i], fd, 2e-2 * std::fabs(fd) + tol_floor) << name << "[" << i << "]";
    }
  };
  store.ForEach([&](Param& p) {
    if (p.trainable()) check(p.name, p.working, &p.master, p.grad);
    checked += samples;
  });
  if (input != nullptr) check("input", *input, static_cast<std::vector<float>*>(nullptr), *input_grad);
  // A handful of boundary crossings is expected; many would mean a real discontinuity (a bug).
  EXPECT_LE(jumps, std::max(1, checked / 10));
}

struct TinyDims {
  int64_t batch = 2, seq = 7, d = 16;
};

MlaDims SmallMla(int64_t q_lora_rank) {
  MlaDims m;
  m.d = 16;
  m.heads = 3;
  m.q_lora_rank = q_lora_rank;
  m.kv_lora_rank = 6;
  m.nope_dim = 5;  // odd head sizes on purpose
  m.rope_dim = 4;
  m.v_dim = 7;
  m.softmax_scale = 0.3f;
  return m;
}

void CheckAttention(int64_t q_lora_rank, bool yarn) {
  kernels::CpuBackend ops(2);
  Scratch scratch;
  LayerContext ctx{&ops, Numerics::kFp32, nullptr, nullptr, &scratch};
  config::ModelConfig mc;
  mc.set_qk_rope_head_dim(4);
  mc.set_rope_theta(10000);
  if (yarn) {
    auto* rs = mc.mutable_rope_scaling();
    rs->set_type("yarn");
    rs->set_factor(4);
    rs->set_original_max_position_embeddings(4);
    rs->set_mscale(0.8);
    rs->set_mscale_all_dim(1.0);
  }
  const RopeTables rope = BuildRopeTables(mc, 16, ops);
  ParamStore store;
  const MlaDims dims = SmallMla(q_lora_rank);
  MlaAttention attn(store, "attn.", dims);
  Randomize(store, 11);
  TinyDims t;
  const int64_t n = t.batch * t.seq;
  std::vector<int32_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(i % t.seq);
  std::vector<float> u = RandomVector(n * dims.d, 3, 1.0f);
  const std::vector<float> r = RandomVector(n * dims.d, 4, 1.0f);
  std::vector<float> out(n * dims.d), du(n * dims.d);
  MlaAttention::Saved saved;
  attn.Forward(ctx, rope, pos.data(), u.data(), t.batch, t.seq, out.data(), &saved);
  attn.Backward(ctx, rope, pos.data(), u.data(), saved, r.data(), du.data());
  auto loss = [&]() {
    MlaAttention::Saved s;
    attn.Forward(ctx, rope, pos.data(), u.data(), t.batch, t.seq, out.data(), &s);
    return Dot(out, r);
  };
  CheckGradients(store, loss, &u, &du);
}

TEST(GradCheck, MlaAttentionWithQLora) { CheckAttention(8, false); }
TEST(GradCheck, MlaAttentionWithQProjAndYarn) { CheckAttention(0, true); }

TEST(GradCheck, SwiGluMlp) {
  kernels::CpuBackend ops(2);
  Scratch scratch;
  LayerContext ctx{&ops, Numerics::kFp32, nullptr, nullptr, &scratch};
  ParamStore store;
  SwiGluMlp mlp(store, "mlp.", 16, 24);
  Randomize(store, 5);
  const int64_t n = 9;
  std::vector<float> u = RandomVector(n * 16, 6, 1.0f);
  const std::vector<float> r = RandomVector(n * 16, 7, 1.0f);
  std::vector<float> out(n * 16), du(n * 16);
  SwiGluMlp::Saved saved;
  mlp.Forward(ctx, u.data(), n, out.data(), &saved);
  mlp.Backward(ctx, u.data(), saved, r.data(), du.data(), false);
  auto loss = [&]() {
    SwiGluMlp::Saved s;
    mlp.Forward(ctx, u.data(), n, out.data(), &s);
    return Dot(out, r);
  };
  CheckGradients(store, loss, &u, &du);
}

struct MoeCase {
  kernels::ScoringFunc scoring;
  kernels::TopkMethod method;
  bool norm;
  int64_t top_k, n_group, topk_group;
  float alpha;
  bool seq_aux;
  double capacity_factor = 0.0;
};

void CheckMoe(const MoeCase& c) {
  kernels::CpuBackend ops(2);
  parallel::LocalCommunicator tp("tp"), ep("ep");
  Scratch scratch;
  LayerContext ctx{&ops, Numerics::kFp32, &tp, &ep, &scratch};
  ParamStore store;
  MoeDims dims;
  dims.d = 16;
  dims.expert_inter = 8;
  dims.router.num_experts = 8;
  dims.router.top_k = c.top_k;
  dims.router.n_group = c.n_group;
  dims.router.topk_group = c.topk_group;
  dims.router.scoring = c.scoring;
  dims.router.method = c.method;
  dims.router.norm_topk_prob = c.norm;
  dims.router.routed_scaling_factor = 2.5f;
  dims.has_correction_bias = c.method == kernels::TopkMethod::kNoauxTc;
  dims.aux_loss_alpha = c.alpha;
  dims.seq_aux = c.seq_aux;
  dims.capacity_factor = c.capacity_factor;
  MoeLayer moe(store, "moe.", dims, &ep);
  Randomize(store, 21);
  const int64_t batch = 2, seq = 6, n = batch * seq;
  const TokenSlice slice{batch, seq, 0, n};
  std::vector<float> u = RandomVector(n * 16, 8, 1.0f);
  const std::vector<float> r = RandomVector(n * 16, 9, 1.0f);
  std::vector<float> out(n * 16), du(n * 16);
  std::vector<int64_t> counts(8, 0);
  MoeLayer::Saved saved;
  moe.Forward(ctx, u.data(), slice, out.data(), &saved, counts.data());
  moe.Backward(ctx, u.data(), saved, r.data(), 1.0f, du.data());
  int64_t total = 0;
  for (int64_t v : counts) total += v;
  EXPECT_EQ(total, n * c.top_k);  // counts are routed assignments, dropped or not
  if (c.capacity_factor > 0) {
    EXPECT_GT(MoeLayer::Dropped(saved), 0);
  }
  auto loss = [&]() {
    MoeLayer::Saved s;
    std::vector<int64_t> cnt(8, 0);
    const double bal = moe.Forward(ctx, u.data(), slice, out.data(), &s, cnt.data());
    return Dot(out, r) + bal;
  };
  CheckGradients(store, loss, &u, &du);
}

TEST(GradCheck, MoeSigmoidNoauxTcGroupsBiasAndSeqBalanceLoss) {
  CheckMoe({kernels::ScoringFunc::kSigmoid, kernels::TopkMethod::kNoauxTc, true, 2, 2, 1, 0.3f, true});
}
TEST(GradCheck, MoeSoftmaxGreedyNoNormBatchBalanceLoss) {
  CheckMoe({kernels::ScoringFunc::kSoftmax, kernels::TopkMethod::kGreedy, false, 3, 1, 1, 0.2f, false});
}
TEST(GradCheck, MoeGroupLimitedGreedy) {
  CheckMoe({kernels::ScoringFunc::kSoftmax, kernels::TopkMethod::kGroupLimitedGreedy, false, 2, 4, 2, 0.0f,
            true});
}
TEST(GradCheck, MoeTopOneNormalised) {
  CheckMoe({kernels::ScoringFunc::kSigmoid, kernels::TopkMethod::kNoauxTc, true, 1, 1, 1, 0.0f, true});
}

TEST(GradCheck, MoeWithCapacityFactorDroppingTokens) {
  CheckMoe({kernels::ScoringFunc::kSigmoid, kernels::TopkMethod::kNoauxTc, true, 2, 2, 1, 0.0f, true, 0.5});
}

// A whole network small enough for finite differences: 1 dense + (layers - 1) MoE layers, q LoRA,
// 4 routed experts (top-2) and a shared expert.
config::ModelConfig SmallModel(int64_t layers) {
  config::ModelConfig mc;
  mc.set_vocab_size(32);
  mc.set_hidden_size(16);
  mc.set_intermediate_size(24);
  mc.set_moe_intermediate_size(8);
  mc.set_num_hidden_layers(layers);
  mc.set_first_k_dense_replace(1);
  mc.set_num_attention_heads(2);
  mc.set_q_lora_rank(8);
  mc.set_kv_lora_rank(6);
  mc.set_qk_nope_head_dim(4);
  mc.set_qk_rope_head_dim(4);
  mc.set_v_head_dim(6);
  mc.set_n_routed_experts(4);
  mc.set_num_experts_per_tok(2);
  mc.set_n_shared_experts(1);
  return mc;
}

// n ids (i·a + b) mod 32.
std::vector<int32_t> Ids(int64_t n, int64_t a, int64_t b) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * a + b) % 32);
  return ids;
}

TEST(GradCheck, WholeModelEmbeddingNormsHeadAndLoss) {
  config::ModelConfig mc = SmallModel(2);
  mc.set_routed_scaling_factor(2.5);
  mc.set_aux_loss_alpha(0.1);
  kernels::CpuBackend ops(2);
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 8);
  Randomize(net.params(), 31);
  const int64_t batch = 2, seq = 5;
  const std::vector<int32_t> ids = Ids(batch * seq, 7, 3);
  std::vector<int32_t> targets = Ids(batch * seq, 5, 1);
  targets[3] = -1;  // an ignored position
  net.Step(ids.data(), targets.data(), batch, seq, true, 1.0f);
  auto loss = [&]() {
    const LossStats s = net.Step(ids.data(), targets.data(), batch, seq, false, 1.0f);
    return s.ce_loss() + s.balance_loss;
  };
  CheckGradients(net.params(), loss, nullptr, nullptr, 4);
}

// Multi-token prediction: two depths (the second fed by the first's h^1), MoE blocks with the balance
// loss (the routers see only the first T - k positions), an ignored target, and a dense variant.
void CheckMtp(int64_t first_k_dense) {
  config::ModelConfig mc = SmallModel(2);
  mc.set_first_k_dense_replace(first_k_dense);
  mc.set_aux_loss_alpha(0.1);
  mc.set_num_nextn_predict_layers(2);
  mc.set_mtp_loss_weight(0.7);
  kernels::CpuBackend ops(2);
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 8);
  ASSERT_EQ(net.mtp_depths(), 2);
  Randomize(net.params(), 37);
  const int64_t batch = 2, seq = 5;
  const std::vector<int32_t> ids = Ids(batch * seq, 7, 3);
  std::vector<int32_t> targets = Ids(batch * seq, 5, 1);
  targets[3] = -1;  // ignored by the main loss at t = 3, by depth 1 at t = 2, by depth 2 at t = 1
  net.Step(ids.data(), targets.data(), batch, seq, true, 1.0f);
  // The routers of the MTP blocks count only the real positions: B·(T-k) tokens, K slots each.
  for (size_t i = 0; i < net.moe_layer_indices().size(); ++i) {
    const int64_t layer = net.moe_layer_indices()[i];
    const int64_t k = layer < 2 ? 0 : layer - 1;
    int64_t sum = 0;
    for (int64_t c : net.expert_counts()[i]) sum += c;
    EXPECT_EQ(sum, 2 * batch * (seq - k)) << "layer " << layer;
  }
  auto loss = [&]() {
    const LossStats s = net.Step(ids.data(), targets.data(), batch, seq, false, 1.0f);
    EXPECT_EQ(s.mtp_tokens[0], batch * (seq - 1) - 1);
    EXPECT_EQ(s.mtp_tokens[1], batch * (seq - 2) - 1);
    return s.ce_loss() + s.balance_loss + net.mtp_depth_weight() * (s.mtp_ce_loss(1) + s.mtp_ce_loss(2));
  };
  CheckGradients(net.params(), loss, nullptr, nullptr, 4);
}

TEST(GradCheck, MtpTwoDepthsMoeBlocks) { CheckMtp(1); }
TEST(GradCheck, MtpTwoDepthsDenseBlocks) { CheckMtp(4); }

TEST(ActivationRecompute, BitIdenticalLossAndGradientsWithLessSavedMemory) {
  config::ModelConfig mc = SmallModel(3);
  mc.set_num_nextn_predict_layers(1);
  mc.set_aux_loss_alpha(0.1);
  kernels::CpuBackend ops(2);
  std::vector<int32_t> ids(2 * 6), targets(2 * 6);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 5 + 1) % 32);
    targets[i] = static_cast<int32_t>((i * 3 + 2) % 32);
  }
  std::vector<std::vector<float>> grads[2];
  LossStats stats[2];
  int64_t saved_bytes[2];
  std::vector<int64_t> counts[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    DeepseekV3Model net(mc, Numerics::kBf16, &ops, 8);
    Randomize(net.params(), 41);
    net.set_activation_recompute(recompute == 1);
    stats[recompute] = net.Step(ids.data(), targets.data(), 2, 6, true, 1.0f);
    net.Step(ids.data(), targets.data(), 2, 6, false, 1.0f);  // forward only: what a step keeps
    saved_bytes[recompute] = net.SavedActivationBytes();
    net.params().ForEach([&](const Param& p) { grads[recompute].emplace_back(p.grad.begin(), p.grad.end()); });
    for (const auto& c : net.expert_counts()) counts[recompute].insert(counts[recompute].end(), c.begin(), c.end());
  }
  EXPECT_EQ(stats[0].ce_loss_sum, stats[1].ce_loss_sum);
  EXPECT_EQ(stats[0].balance_loss, stats[1].balance_loss);
  EXPECT_EQ(stats[0].mtp_ce_sum, stats[1].mtp_ce_sum);
  EXPECT_EQ(counts[0], counts[1]) << "the recomputation must not count expert assignments twice";
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_EQ(grads[0][i], grads[1][i]) << "tensor " << i;
  EXPECT_LT(saved_bytes[1] * 3, saved_bytes[0]);
}

// The backward's GradsReadyHook (the optimizer's overlap): every parameter is reported exactly once,
// the blocks from the last to the first, and a reported gradient no longer changes in that backward
// (here the second of two accumulated micro-batches, MTP and MoE included).
TEST(GradsReadyHook, ReportsEveryParameterOnceWithItsFinalGradient) {
  config::ModelConfig mc = SmallModel(3);
  mc.set_num_nextn_predict_layers(1);
  mc.set_aux_loss_alpha(0.1);
  kernels::CpuBackend ops(2);
  DeepseekV3Model net(mc, Numerics::kFp32, &ops, 8);
  Randomize(net.params(), 43);
  const std::vector<int32_t> ids = Ids(2 * 6, 5, 1), targets = Ids(2 * 6, 3, 2);
  net.params().ZeroGrads();
  net.Step(ids.data(), targets.data(), 2, 6, true, 1.0f);
  std::vector<Param*> params;
  net.params().ForEach([&](Param& p) { params.push_back(&p); });
  std::vector<int> reported(params.size(), 0);
  std::vector<int64_t> firsts;
  std::vector<std::vector<float>> at_report(params.size());
  net.set_grads_ready_hook([&](int64_t first, int64_t end) {
    firsts.push_back(first);
    for (int64_t i = first; i < end; ++i) {
      ++reported[i];
      at_report[i].assign(params[i]->grad.begin(), params[i]->grad.end());
    }
  });
  net.Step(Ids(2 * 6, 7, 4).data(), targets.data(), 2, 6, true, 1.0f);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(reported[i], 1) << params[i]->name;
    EXPECT_EQ(at_report[i], std::vector<float>(params[i]->grad.begin(), params[i]->grad.end())) << params[i]->name;
  }
  ASSERT_GE(firsts.size(), 3u);
  EXPECT_EQ(params[firsts[0]]->name, "lm_head.weight");
  for (size_t k = 2; k < firsts.size(); ++k) EXPECT_LT(firsts[k], firsts[k - 1]) << "report " << k;
  EXPECT_EQ(firsts.back(), 0);  // the embedding, last
}

// The forward's weights_needed hook (the optimizer's overlapped weight gather): with every working
// weight NaN until its range is reported, a step gives the loss and gradients of untouched weights,
// so nothing is read before it is reported (MTP and MoE blocks included).
TEST(WeightsNeededHook, EveryWeightIsReportedBeforeItIsRead) {
  config::ModelConfig mc = SmallModel(3);
  mc.set_num_nextn_predict_layers(1);
  mc.set_aux_loss_alpha(0.1);
  kernels::CpuBackend ops(2);
  const std::vector<int32_t> ids = Ids(2 * 6, 5, 1), targets = Ids(2 * 6, 3, 2);
  std::vector<std::vector<float>> grads[2];
  LossStats stats[2];
  for (int poisoned = 0; poisoned < 2; ++poisoned) {
    DeepseekV3Model net(mc, Numerics::kFp32, &ops, 8);
    Randomize(net.params(), 47);
    std::vector<Param*> params;
    net.params().ForEach([&](Param& p) { params.push_back(&p); });
    std::vector<std::vector<float>> kept;
    for (Param* p : params) kept.emplace_back(p->working.begin(), p->working.end());
    std::vector<int> reported(params.size(), 0);
    if (poisoned) {
      for (Param* p : params) {
        if (p->trainable()) std::fill(p->working.begin(), p->working.end(), std::nanf(""));
      }
      net.set_weights_needed_hook([&](int64_t first, int64_t end) {
        for (int64_t i = first; i < end; ++i) {
          ++reported[i];
          std::copy(kept[i].begin(), kept[i].end(), params[i]->working.begin());
        }
      });
    }
    net.params().ZeroGrads();
    stats[poisoned] = net.Step(ids.data(), targets.data(), 2, 6, true, 1.0f);
    for (Param* p : params) grads[poisoned].emplace_back(p->grad.begin(), p->grad.end());
    for (size_t i = 0; poisoned && i < params.size(); ++i) EXPECT_GE(reported[i], 1) << params[i]->name;
  }
  EXPECT_EQ(stats[0].ce_loss_sum, stats[1].ce_loss_sum);
  EXPECT_EQ(stats[0].mtp_ce_sum, stats[1].mtp_ce_sum);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_EQ(grads[0][i], grads[1][i]) << "tensor " << i;
}

}  // namespace
}  // namespace moe::model
