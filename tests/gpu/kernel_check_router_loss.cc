// kernel_check groups "router" and "cross_entropy": router forward/backward over the small_1b and
// V3 configurations and the greedy variants, the sequence-wise balance loss (BalanceStats,
// BalanceLossGrad), the dispatch order (SortByExpert), and cross-entropy with and without gradients.
// See kernel_check.h.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

// ---------------------------------------------------------------- router
void Checks::Router() {
  struct Case {
    const char* name;
    RouterParams p;
    bool bias;
  };
  auto make = [](int64_t e, int64_t k, int64_t g, int64_t tg, ScoringFunc f, TopkMethod m,
                 bool norm, float rho) {
    RouterParams p;
    p.num_experts = e;
    p.top_k = k;
    p.n_group = g;
    p.topk_group = tg;
    p.scoring = f;
    p.method = m;
    p.norm_topk_prob = norm;
    p.routed_scaling_factor = rho;
    return p;
  };
  const Case cases[] = {
      {"small_1b", make(64, 6, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f),
       true},
      {"v3", make(256, 8, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f), true},
      {"greedy_softmax", make(16, 2, 1, 1, ScoringFunc::kSoftmax, TopkMethod::kGreedy, false,
                              1.0f), false},
      {"group_greedy", make(64, 6, 8, 3, ScoringFunc::kSoftmax,
                            TopkMethod::kGroupLimitedGreedy, false, 16.0f), false},
      {"one_expert_groups", make(8, 3, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true,
                                 1.0f), true},
  };
  const int64_t n = 2000;
  for (const Case& c : cases) {
    const int64_t E = c.p.num_experts, K = c.p.top_k;
    for (bool quantized : {true, false}) {
      // Quantised logits and bias make exact ties common (they must go to the lower index);
      // continuous ones test the arithmetic. The quantised logits are -200, 0 and 40, whose
      // sigmoids are exactly 0, 0.5 and 1 on both backends: with logits on a 0.5 grid, a last-bit
      // expf difference flipped a near-tie between two groups' top-2 sums (an H200 run, 1 token of
      // 2000), which says nothing about tie-breaking. Softmax scores of these logits tie exactly
      // within each backend too.
      std::vector<float> logits = rng_.Normal(n * E, 2.0f);
      std::vector<float> bias = rng_.Uniform(E, -0.1f, 0.1f);
      if (quantized) {
        for (float& z : logits) z = z < -1.0f ? -200.0f : (z > 1.0f ? 40.0f : 0.0f);
        for (float& b : bias) b = std::round(b * 20.0f) / 20.0f;
      }
      std::vector<float> scores(n * E), weights(n * K);
      std::vector<int32_t> sel(n * K);
      cpu_.RouterForward(c.p, logits.data(), c.bias ? bias.data() : nullptr, n, scores.data(),
                         sel.data(), weights.data());
      Dev<float> gl(logits), gb(bias), gs(n * E), gw(n * K);
      Dev<int32_t> gsel(n * K);
      gs.Poison();
      gw.Poison();
      gsel.Poison();
      gpu_.RouterForward(c.p, gl.get(), c.bias ? gb.get() : nullptr, n, gs.get(), gsel.get(),
                         gw.get());
      const std::vector<int32_t> got_sel = gsel.Download();
      const std::string tag = Fmt("router_%s%s", c.name, quantized ? "_ties" : "");
      // Selection: identical, or (continuous logits only) a swap between keys within 1e-6 of
      // each other in the CPU's own keys (a last-bit expf difference on a near-tie).
      int64_t mismatched_tokens = 0, unexplained = 0;
      for (int64_t t = 0; t < n; ++t) {
        bool same = true;
        for (int64_t r = 0; r < K; ++r) same &= got_sel[t * K + r] == sel[t * K + r];
        if (same) continue;
        ++mismatched_tokens;
        for (int64_t r = 0; r < K; ++r) {
          const int32_t g = got_sel[t * K + r], w = sel[t * K + r];
          if (g < 0 || g >= E) {
            ++unexplained;
            break;
          }
          auto key = [&](int32_t e) {
            const float s = scores[t * E + e];
            return c.bias && c.p.method == TopkMethod::kNoauxTc ? s + bias[e] : s;
          };
          if (std::fabs(key(g) - key(w)) > 1e-6f * std::max(1.0f, std::fabs(key(w)))) {
            ++unexplained;
            break;
          }
        }
      }
      const bool sel_ok = quantized ? mismatched_tokens == 0 : unexplained == 0;
      report_.Line(sel_ok, tag + "_selected",
                   Fmt("tokens with another choice: %lld of %lld (near-ties allowed: %s, "
                       "unexplained %lld)",
                       static_cast<long long>(mismatched_tokens), static_cast<long long>(n),
                       quantized ? "no" : "yes", static_cast<long long>(unexplained)));
      report_.Check(tag + "_scores", gs.Download(), scores, 1e-6);
      if (mismatched_tokens == 0) report_.Check(tag + "_weights", gw.Download(), weights, 1e-6);

      // Backward from the CPU's forward results (same selection on both sides).
      std::vector<float> d_w = rng_.Normal(n * K), extra = rng_.Normal(n * E, 0.1f);
      for (bool with_extra : {false, true}) {
        std::vector<float> dz(n * E);
        cpu_.RouterBackward(c.p, scores.data(), sel.data(), d_w.data(),
                            with_extra ? extra.data() : nullptr, n, dz.data());
        Dev<float> gsc(scores), gdw(d_w), gex(extra), gdz(n * E);
        Dev<int32_t> gsl(sel);
        gdz.Poison();
        gpu_.RouterBackward(c.p, gsc.get(), gsl.get(), gdw.get(),
                            with_extra ? gex.get() : nullptr, n, gdz.get());
        report_.Check(tag + (with_extra ? "_backward_extra" : "_backward"), gdz.Download(), dz,
                      1e-6);
      }
    }
  }
  Balance();
  DispatchOrder();
}

// SortByExpert: counts and rows identical to the CPU's (integers), and nothing written past the kept
// rows. Selections skewed towards the first experts (so a capacity drops some), at small_1b and V3
// shapes, an expert no token picks, and no tokens at all.
void Checks::DispatchOrder() {
  struct Case {
    const char* name;
    int64_t n, k, experts;
    double capacity_factor;  // 0: dropless
  };
  const Case cases[] = {{"small_1b", 8192, 6, 64, 0.0},  {"small_1b_capacity", 8192, 6, 64, 1.0},
                        {"v3", 4096, 8, 256, 0.0},         {"v3_capacity", 4096, 8, 256, 1.25},
                        {"tiny", 5, 2, 8, 0.0},            {"no_tokens", 0, 6, 64, 0.0}};
  for (const Case& c : cases) {
    const int64_t total = c.n * c.k;
    std::vector<int32_t> selected = rng_.Ints(total, 0, static_cast<int32_t>(c.experts - 2));  // the last: none
    const std::vector<int32_t> hot = rng_.Ints(total, 0, 3);
    for (int64_t i = 0; i < total; i += 3) selected[i] = hot[i];
    const int64_t capacity = c.capacity_factor > 0 ? static_cast<int64_t>(std::ceil(c.capacity_factor * total / c.experts)) : -1;
    std::vector<int32_t> counts(c.experts), row_token = Poisoned<int32_t>(total), row_slot = Poisoned<int32_t>(total);
    cpu_.SortByExpert(selected.data(), c.n, c.k, c.experts, capacity, counts.data(), row_token.data(), row_slot.data());
    Dev<int32_t> gsel(selected), gcounts(c.experts), gtoken(total), gslot(total);
    gcounts.Poison();
    gtoken.Poison();
    gslot.Poison();
    gpu_.SortByExpert(gsel.get(), c.n, c.k, c.experts, capacity, gcounts.get(), gtoken.get(), gslot.get());
    const std::vector<int32_t> got_counts = gcounts.Download(), got_token = gtoken.Download(),
                               got_slot = gslot.Download();
    int64_t rows = 0;
    for (int32_t n_e : counts) rows += capacity < 0 ? n_e : std::min<int64_t>(n_e, capacity);
    auto differing = [](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
      int64_t d = 0;
      for (size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
      return d;
    };
    // The CPU left the poison past the kept rows too, so a whole-buffer comparison covers both.
    const int64_t bad = differing(got_counts, counts) + differing(got_token, row_token) + differing(got_slot, row_slot);
    report_.Line(bad == 0, Fmt("sort_by_expert_%s", c.name),
                 Fmt("rows %lld of %lld kept, %lld elements differ (counts, row_token, row_slot; poison past the rows)",
                     static_cast<long long>(rows), static_cast<long long>(total), static_cast<long long>(bad)));
  }
}

// Sequence-wise balance loss at the small_1b shape: a slice of 8192 router scores (64 experts,
// top-6) starting at token 1000 of the micro-batch, in sequences of 4096: groups 0 and 2 are
// partial, group 3 holds no token here (its stats must be written as zeros). Sigmoid scores of
// continuous logits, and of logits rounded to 0.5 (exact ties in the top-K go to the lower
// index).
// The kernels follow the CPU's FP64 order: stats within 1e-12 relative (expected bit-identical),
// counts exact, the gradient within 1e-7 (expected bit-identical).
void Checks::Balance() {
  const int64_t n = 8192, E = 64, K = 6, first = 1000, len = 4096, groups = 4;
  for (bool ties : {false, true}) {
    std::vector<float> scores = rng_.Normal(n * E, 2.0f);
    for (float& z : scores) {
      if (ties) z = std::round(z * 2.0f) / 2.0f;
      z = 1.0f / (1.0f + std::exp(-z));
    }
    const std::string tag = Fmt("balance_small_1b%s", ties ? "_ties" : "");
    std::vector<double> ref(2 * groups * E);
    cpu_.BalanceStats(scores.data(), n, E, K, first, len, groups, ref.data());
    Dev<float> gs(scores);
    Dev<double> gstats(2 * groups * E);
    gstats.Poison();
    gpu_.BalanceStats(gs.get(), n, E, K, first, len, groups, gstats.get());
    const std::vector<double> got = gstats.Download();
    double max_rel = 0;
    int64_t p_differ = 0, unwritten = 0, count_wrong = 0;
    for (int64_t i = 0; i < groups * E; ++i) {
      const double g = got[i], r = ref[i];
      if (std::isnan(g)) {
        ++unwritten;
        continue;
      }
      p_differ += std::memcmp(&g, &r, sizeof(double)) != 0;
      max_rel = std::max(max_rel, std::fabs(g - r) / std::max(std::fabs(r), 1e-300));
      const double gc = got[groups * E + i], rc = ref[groups * E + i];
      count_wrong += std::isnan(gc) || gc != rc;
    }
    report_.Line(unwritten == 0 && max_rel <= 1e-12, tag + "_stats_p",
                 Fmt("max_rel=%.2e (tol 1e-12) bits_differ=%lld/%lld unwritten=%lld", max_rel,
                     static_cast<long long>(p_differ), static_cast<long long>(groups * E),
                     static_cast<long long>(unwritten)));
    report_.Line(count_wrong == 0, tag + "_stats_count",
                 Fmt("wrong=%lld/%lld (must be exact)", static_cast<long long>(count_wrong),
                     static_cast<long long>(groups * E)));

    const std::vector<float> f = rng_.Uniform(groups * E, 0.0f, 2.0f);
    const double coef = 1e-3 * E / (K * static_cast<double>(len));
    std::vector<float> d(n * E);
    cpu_.BalanceLossGrad(scores.data(), n, E, first, len, f.data(), coef, d.data());
    Dev<float> gf(f), gd(n * E);
    gd.Poison();
    gpu_.BalanceLossGrad(gs.get(), n, E, first, len, gf.get(), coef, gd.get());
    report_.Check(tag + "_grad", gd.Download(), d, 1e-7, "(expected bit-exact)");
  }
}

// ---------------------------------------------------------------- cross-entropy
void Checks::CrossEntropy() {
  for (int64_t vocab : {32768, 50}) {
    const int64_t n = vocab > 1000 ? 300 : 1000;
    std::vector<float> logits = rng_.Normal(n * vocab, 3.0f);
    std::vector<int32_t> targets = rng_.Ints(n, 0, static_cast<int32_t>(vocab - 1));
    for (int64_t i = 0; i < n; i += 9) targets[i] = -1;  // ignored rows
    const float gs = 1.0f / static_cast<float>(n);
    std::vector<float> d(n * vocab);
    const double ref = cpu_.CrossEntropy(logits.data(), targets.data(), n, vocab, gs, d.data());
    const double ref_nograd =
        cpu_.CrossEntropy(logits.data(), targets.data(), n, vocab, gs, nullptr);
    Dev<float> gl(logits), gd(n * vocab);
    Dev<int32_t> gt(targets);
    gd.Poison();
    const double got = gpu_.CrossEntropy(gl.get(), gt.get(), n, vocab, gs, gd.get());
    const double got_nograd = gpu_.CrossEntropy(gl.get(), gt.get(), n, vocab, gs, nullptr);
    const std::string v = Fmt("v%lld", static_cast<long long>(vocab));
    const double rel = std::fabs(got - ref) / std::fabs(ref);
    report_.Line(rel <= 1e-6, "cross_entropy_loss_" + v,
                 Fmt("rel=%.2e (tol 1e-6) got=%.10g ref=%.10g", rel, got, ref));
    const double rel2 = std::fabs(got_nograd - ref_nograd) / std::fabs(ref_nograd);
    report_.Line(rel2 <= 1e-6, "cross_entropy_loss_nograd_" + v, Fmt("rel=%.2e", rel2));
    report_.Check("cross_entropy_grad_" + v, gd.Download(), d, 1e-6);
    // In place: d_logits == logits.
    const double got_inplace = gpu_.CrossEntropy(gl.get(), gt.get(), n, vocab, gs, gl.get());
    const double rel3 = std::fabs(got_inplace - ref) / std::fabs(ref);
    report_.Line(rel3 <= 1e-6, "cross_entropy_loss_inplace_" + v, Fmt("rel=%.2e", rel3));
    report_.Check("cross_entropy_grad_inplace_" + v, gl.Download(), d, 1e-6);
  }
}

}  // namespace moe::gpucheck
