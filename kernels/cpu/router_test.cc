// Router: selection on hand-worked examples (bias changing the choice, group filtering excluding
// the globally best expert, ties to the lower index for groups and experts, greedy,
// group_limited_greedy, softmax scoring), weights, and the backward by finite differences on the
// logits (selection fixed); the dispatch order (SortByExpert) with and without a capacity.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::ExpectGradientMatches;
using testing::ProbeLoss;
using testing::RandomVector;

// Logits whose sigmoid is exactly the given affinity (up to FP32 rounding).
std::vector<float> Logit(const std::vector<double>& s) {
  std::vector<float> z;
  for (double v : s) z.push_back(static_cast<float>(std::log(v / (1.0 - v))));
  return z;
}

struct Routed {
  std::vector<float> scores, weights;
  std::vector<int32_t> selected;
};

Routed Route(const RouterParams& p, const std::vector<float>& logits,
             const std::vector<float>* bias) {
  CpuBackend be(1);
  const int64_t n = static_cast<int64_t>(logits.size()) / p.num_experts;
  Routed r{std::vector<float>(logits.size()), std::vector<float>(n * p.top_k),
           std::vector<int32_t>(n * p.top_k)};
  be.RouterForward(p, logits.data(), bias ? bias->data() : nullptr, n, r.scores.data(),
                   r.selected.data(), r.weights.data());
  return r;
}

RouterParams Params(int64_t e, int64_t k, int64_t g, int64_t m, ScoringFunc f, TopkMethod method,
                    bool norm, float rho) {
  RouterParams p;
  p.num_experts = e;
  p.top_k = k;
  p.n_group = g;
  p.topk_group = m;
  p.scoring = f;
  p.method = method;
  p.norm_topk_prob = norm;
  p.routed_scaling_factor = rho;
  return p;
}

TEST(Router, BiasChangesTheChoiceButNotTheWeights) {
  const auto p = Params(4, 2, 1, 1, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f);
  const auto z = Logit({0.9, 0.8, 0.7, 0.1});
  const Routed plain = Route(p, z, nullptr);
  EXPECT_EQ(plain.selected, (std::vector<int32_t>{0, 1}));
  const std::vector<float> bias = {0.0f, 0.0f, 0.3f, 0.0f};  // s~ = 0.9, 0.8, 1.0, 0.1
  const Routed biased = Route(p, z, &bias);
  EXPECT_EQ(biased.selected, (std::vector<int32_t>{2, 0}));
  // Weights use the unbiased affinities: rho * s_i / (s_2 + s_0).
  EXPECT_NEAR(biased.weights[0], 2.5 * 0.7 / 1.6, 1e-6);
  EXPECT_NEAR(biased.weights[1], 2.5 * 0.9 / 1.6, 1e-6);
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(biased.scores[i], (std::vector<double>{0.9, 0.8, 0.7, 0.1})[i], 1e-6);
}

TEST(Router, GroupFilteringExcludesGloballyBestExpert) {
  // 4 groups of 2; group scores (sum of top 2): 1.0, 1.2, 1.05, 0.3 -> keep groups 1 and 2, so
  // expert 0 (the best, 0.95) is masked. Experts 2 and 3 tie at 0.6: the lower index comes first.
  const auto p = Params(8, 2, 4, 2, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, false, 1.0f);
  const auto z = Logit({0.95, 0.05, 0.6, 0.6, 0.55, 0.5, 0.1, 0.2});
  const Routed r = Route(p, z, nullptr);
  EXPECT_EQ(r.selected, (std::vector<int32_t>{2, 3}));
  EXPECT_NEAR(r.weights[0], 0.6, 1e-6);  // no normalisation, rho = 1
  EXPECT_NEAR(r.weights[1], 0.6, 1e-6);
  // Without groups the globally best expert wins.
  const Routed flat = Route(
      Params(8, 2, 1, 1, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, false, 1.0f), z, nullptr);
  EXPECT_EQ(flat.selected, (std::vector<int32_t>{0, 2}));
}

TEST(Router, BiasEntersGroupScores) {
  // Group scores on s~: g0 0.95+0.05 = 1.0, g1 0.6+0.55 = 1.15, g2 0.52+0.5 = 1.02,
  // g3 0.1+(0.2+0.9) = 1.2
  // -> keep g3, g1; top 2 of s~ there: expert 7 (1.1), expert 2 (0.6).
  const auto p = Params(8, 2, 4, 2, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f);
  const auto z = Logit({0.95, 0.05, 0.6, 0.55, 0.5, 0.52, 0.1, 0.2});
  std::vector<float> bias(8, 0.0f);
  bias[7] = 0.9f;
  const Routed r = Route(p, z, &bias);
  EXPECT_EQ(r.selected, (std::vector<int32_t>{7, 2}));
  EXPECT_NEAR(r.weights[0], 2.5 * 0.2 / 0.8, 1e-6);
  EXPECT_NEAR(r.weights[1], 2.5 * 0.6 / 0.8, 1e-6);
}

TEST(Router, GroupTiesGoToLowerGroupIndex) {
  // Both groups score 0.8; group 0 is kept, so expert 0 wins over the equally good expert 3.
  const auto p = Params(4, 1, 2, 1, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 1.0f);
  const Routed r = Route(p, Logit({0.5, 0.3, 0.3, 0.5}), nullptr);
  EXPECT_EQ(r.selected, (std::vector<int32_t>{0}));
  EXPECT_NEAR(r.weights[0], 1.0, 1e-6);  // K = 1 with normalisation: the weight is rho
}

TEST(Router, GreedySoftmaxIgnoresBias) {
  const auto p = Params(6, 2, 1, 1, ScoringFunc::kSoftmax, TopkMethod::kGreedy, false, 1.0f);
  const std::vector<float> z = {1.0f, 3.0f, 2.0f, 3.0f, 0.0f, -1.0f};
  const std::vector<float> bias = {5.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  const Routed r = Route(p, z, &bias);
  EXPECT_EQ(r.selected, (std::vector<int32_t>{1, 3}));  // tie at logit 3: lower index first
  double sum = 0.0;
  for (float zi : z) sum += std::exp(zi);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(r.scores[i], std::exp(z[i]) / sum, 1e-6);
  EXPECT_NEAR(r.weights[0], std::exp(3.0) / sum, 1e-6);
  EXPECT_NEAR(r.weights[1], std::exp(3.0) / sum, 1e-6);
}

TEST(Router, GroupLimitedGreedyUsesGroupMax) {
  // Groups of 2 with logits g0 [2.0, 1.9], g1 [2.5, -1], g2 [1.95, 1.95]. By the group max: keep g1
  // (2.5) and g0 (2.0) -> experts 2, 0. (Top-2 sums would keep g0 and g2 instead.) Bias is ignored.
  const auto p =
      Params(6, 2, 3, 2, ScoringFunc::kSoftmax, TopkMethod::kGroupLimitedGreedy, false, 1.0f);
  const std::vector<float> z = {2.0f, 1.9f, 2.5f, -1.0f, 1.95f, 1.95f};
  const std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 10.0f};
  const Routed r = Route(p, z, &bias);
  EXPECT_EQ(r.selected, (std::vector<int32_t>{2, 0}));
  const Routed noaux = Route(
      Params(6, 2, 3, 2, ScoringFunc::kSoftmax, TopkMethod::kNoauxTc, false, 1.0f), z, nullptr);
  EXPECT_EQ(noaux.selected, (std::vector<int32_t>{0, 4}));
}

TEST(Router, SeveralTokensRouteIndependently) {
  const auto p = Params(4, 2, 1, 1, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 1.0f);
  auto z = Logit({0.9, 0.8, 0.7, 0.1, 0.1, 0.2, 0.3, 0.4});
  const Routed r = Route(p, z, nullptr);
  EXPECT_EQ(r.selected, (std::vector<int32_t>{0, 1, 3, 2}));
  EXPECT_NEAR(r.weights[2], 0.4 / 0.7, 1e-6);
}

// Backward by central differences on the logits, for a probe loss on the weights plus a probe on
// the scores routed through d_scores_extra. Perturbations are small enough not to change Sel
// (checked).
void CheckBackward(const RouterParams& p, uint32_t seed) {
  CpuBackend be(2);
  const int64_t n = 6, E = p.num_experts, K = p.top_k;
  auto logits = RandomVector(n * E, seed, -3.0f, 3.0f);
  auto bias = RandomVector(E, seed + 1, -0.1f, 0.1f);
  auto probe_w = RandomVector(n * K, seed + 2), probe_s = RandomVector(n * E, seed + 3);
  std::vector<float> scores(n * E), weights(n * K), d_logits(n * E);
  std::vector<int32_t> selected(n * K), sel_now(n * K);
  be.RouterForward(p, logits.data(), bias.data(), n, scores.data(), selected.data(),
                   weights.data());
  be.RouterBackward(p, scores.data(), selected.data(), probe_w.data(), probe_s.data(), n,
                    d_logits.data());
  bool selection_changed = false;
  auto loss = [&] {
    be.RouterForward(p, logits.data(), bias.data(), n, scores.data(), sel_now.data(),
                     weights.data());
    if (sel_now != selected) selection_changed = true;
    return ProbeLoss(weights.data(), probe_w) + ProbeLoss(scores.data(), probe_s);
  };
  testing::FdOptions opt;
  opt.eps = 1e-3f;
  ExpectGradientMatches("d_logits", logits, d_logits, loss, opt);
  EXPECT_FALSE(selection_changed) << "a perturbation changed the selection; pick another seed";

  // Without d_scores_extra only the weights contribute.
  std::vector<float> zero(n * E, 0.0f), d1(n * E), d2(n * E);
  be.RouterBackward(p, scores.data(), selected.data(), probe_w.data(), nullptr, n, d1.data());
  be.RouterBackward(p, scores.data(), selected.data(), probe_w.data(), zero.data(), n, d2.data());
  EXPECT_EQ(d1, d2);
}

TEST(Router, BackwardSigmoidNormGroups) {
  CheckBackward(Params(16, 4, 4, 2, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f), 41);
}

TEST(Router, BackwardSigmoidNoNorm) {
  CheckBackward(Params(8, 3, 1, 1, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, false, 1.5f), 51);
}

TEST(Router, BackwardSoftmaxNoNorm) {
  CheckBackward(Params(8, 3, 1, 1, ScoringFunc::kSoftmax, TopkMethod::kGreedy, false, 1.0f), 61);
}

TEST(Router, BackwardSoftmaxNormGroupLimited) {
  CheckBackward(
      Params(12, 2, 3, 2, ScoringFunc::kSoftmax, TopkMethod::kGroupLimitedGreedy, true, 1.0f), 71);
}

// Balance statistics on a hand-worked case: 3 tokens with 4 experts, top-2, the slice starting at
// token 1 of groups of 2 tokens (token 0 of the slice closes group 0, tokens 1-2 form group 1).
struct Sorted {
  std::vector<int32_t> counts, row_token, row_slot;  // the rows: only those written
};

Sorted SortByExpert(const std::vector<int32_t>& selected, int64_t k, int64_t num_experts, int64_t capacity) {
  CpuBackend be(1);
  const int64_t n = static_cast<int64_t>(selected.size()) / k;
  Sorted s{std::vector<int32_t>(num_experts, -7), std::vector<int32_t>(n * k, -1), std::vector<int32_t>(n * k, -1)};
  be.SortByExpert(selected.data(), n, k, num_experts, capacity, s.counts.data(), s.row_token.data(),
                  s.row_slot.data());
  int64_t rows = 0;
  for (int32_t c : s.counts) rows += capacity < 0 ? c : std::min<int64_t>(c, capacity);
  EXPECT_TRUE(std::all_of(s.row_token.begin() + rows, s.row_token.end(), [](int32_t v) { return v == -1; }));
  EXPECT_TRUE(std::all_of(s.row_slot.begin() + rows, s.row_slot.end(), [](int32_t v) { return v == -1; }));
  s.row_token.resize(rows);
  s.row_slot.resize(rows);
  return s;
}

TEST(SortByExpert, ExpertOrderStableInSlotOrder) {
  // 4 tokens, K = 2, 4 experts; expert 0 is chosen by every token, expert 3 by none.
  const std::vector<int32_t> selected = {0, 1, 2, 0, 1, 0, 0, 2};
  const Sorted all = SortByExpert(selected, 2, 4, -1);
  EXPECT_EQ(all.counts, (std::vector<int32_t>{4, 2, 2, 0}));
  EXPECT_EQ(all.row_slot, (std::vector<int32_t>{0, 3, 5, 6, 1, 4, 2, 7}));
  EXPECT_EQ(all.row_token, (std::vector<int32_t>{0, 1, 2, 3, 0, 2, 1, 3}));
}

TEST(SortByExpert, CapacityKeepsTheFirstTokensPerExpert) {
  const std::vector<int32_t> selected = {0, 1, 2, 0, 1, 0, 0, 2};
  const Sorted capped = SortByExpert(selected, 2, 4, 2);
  EXPECT_EQ(capped.counts, (std::vector<int32_t>{4, 2, 2, 0}));  // before the cut
  EXPECT_EQ(capped.row_slot, (std::vector<int32_t>{0, 3, 1, 4, 2, 7}));  // tokens 2 and 3 lose expert 0
  EXPECT_EQ(capped.row_token, (std::vector<int32_t>{0, 1, 0, 2, 1, 3}));
  const Sorted none = SortByExpert(selected, 2, 4, 0);
  EXPECT_EQ(none.counts, (std::vector<int32_t>{4, 2, 2, 0}));
  EXPECT_TRUE(none.row_slot.empty());
}

TEST(SortByExpert, NoTokensGiveZeroCounts) {
  const Sorted empty = SortByExpert({}, 2, 3, -1);
  EXPECT_EQ(empty.counts, (std::vector<int32_t>{0, 0, 0}));
}

TEST(Balance, StatsByGroupWithTiesToTheLowerIndex) {
  const std::vector<float> s = {0.5f, 0.1f, 0.3f, 0.1f,   // top-2: 0, 2
                                0.2f, 0.2f, 0.2f, 0.4f,   // top-2: 3, then 0 (tie 0/1/2 -> 0)
                                0.1f, 0.6f, 0.2f, 0.1f};  // top-2: 1, 2
  CpuBackend be(1);
  std::vector<double> stats(2 * 2 * 4, -7.0);  // written, poison first
  be.BalanceStats(s.data(), 3, 4, 2, /*first_token=*/1, /*group_len=*/2, /*groups=*/2, stats.data());
  const double p0[4] = {0.5, 0.1, 0.3, 0.1};  // token 0 sums to 1
  for (int e = 0; e < 4; ++e) EXPECT_NEAR(stats[e], p0[e], 1e-7) << e;
  const double sum1 = 1.0, sum2 = 1.0;
  const double p1[4] = {0.2 / sum1 + 0.1 / sum2, 0.2 / sum1 + 0.6 / sum2, 0.2 / sum1 + 0.2 / sum2,
                        0.4 / sum1 + 0.1 / sum2};
  for (int e = 0; e < 4; ++e) EXPECT_NEAR(stats[4 + e], p1[e], 1e-6) << e;
  const double f0[4] = {1, 0, 1, 0}, f1[4] = {1, 1, 1, 1};
  for (int e = 0; e < 4; ++e) {
    EXPECT_EQ(stats[8 + e], f0[e]) << e;
    EXPECT_EQ(stats[12 + e], f1[e]) << e;
  }
}

// The balance-loss gradient against finite differences of coef · Σ_t Σ_e f[g(t),e] s[t,e]/Σ s[t].
TEST(Balance, LossGradMatchesFiniteDifferences) {
  const int64_t n = 5, e = 6, first = 3, len = 4;  // tokens 3..7: groups 0 (token 3) and 1 (4..7)
  std::vector<float> s = RandomVector(n * e, 11, 0.05f, 1.0f);
  const std::vector<float> f = RandomVector(2 * e, 12, 0.0f, 2.0f);
  const double coef = 0.37;
  CpuBackend be(2);
  std::vector<float> grad(n * e, std::nanf(""));
  be.BalanceLossGrad(s.data(), n, e, first, len, f.data(), coef, grad.data());
  auto loss = [&]() {
    double l = 0;
    for (int64_t t = 0; t < n; ++t) {
      double sum = 0;
      for (int64_t i = 0; i < e; ++i) sum += s[t * e + i];
      for (int64_t i = 0; i < e; ++i) l += coef * f[((first + t) / len) * e + i] * s[t * e + i] / sum;
    }
    return l;
  };
  ExpectGradientMatches("d_scores", s, grad, loss);
}

}  // namespace
}  // namespace moe::kernels
