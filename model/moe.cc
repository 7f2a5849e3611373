#include "model/moe.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "model/linear.h"

namespace moe::model {
namespace {

using kernels::GemmProblem;
using kernels::Transpose;

// One GEMM problem per expert over its block of sorted rows. `make(e, row_offset, rows)` fills it.
template <typename Fn>
std::vector<GemmProblem> PerExpert(const RoutingPlan& plan, Fn make) {
  const int64_t num_experts = static_cast<int64_t>(plan.expert_offsets.size()) - 1;
  std::vector<GemmProblem> problems;
  problems.reserve(num_experts);
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t off = plan.expert_offsets[e];
    problems.push_back(make(e, off, plan.expert_offsets[e + 1] - off));
  }
  return problems;
}

// Plain top-K of the unbiased scores over all experts, ties to the lower index (spec §5.4, §12.8).
void PlainTopK(const float* s, int64_t num_experts, int64_t k, std::vector<int32_t>* idx) {
  idx->resize(num_experts);
  std::iota(idx->begin(), idx->end(), 0);
  std::partial_sort(idx->begin(), idx->begin() + k, idx->end(), [s](int32_t a, int32_t b) {
    return s[a] > s[b] || (s[a] == s[b] && a < b);
  });
  idx->resize(k);
}

}  // namespace

RoutingPlan BuildRoutingPlan(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts) {
  RoutingPlan plan;
  plan.expert_offsets.assign(num_experts + 1, 0);
  for (int64_t i = 0; i < n * k; ++i) ++plan.expert_offsets[selected[i] + 1];
  for (int64_t e = 0; e < num_experts; ++e) plan.expert_offsets[e + 1] += plan.expert_offsets[e];
  std::vector<int64_t> cursor(plan.expert_offsets.begin(), plan.expert_offsets.end() - 1);
  plan.row_token.resize(n * k);
  plan.row_slot.resize(n * k);
  for (int64_t i = 0; i < n * k; ++i) {  // token order within each expert: a stable counting sort
    const int64_t r = cursor[selected[i]]++;
    plan.row_token[r] = static_cast<int32_t>(i / k);
    plan.row_slot[r] = static_cast<int32_t>(i);
  }
  return plan;
}

MoeLayer::MoeLayer(ParamStore& store, const std::string& prefix, const MoeDims& dims) : dims_(dims) {
  const int64_t e_count = dims.router.num_experts, d = dims.d, ie = dims.expert_inter;
  gate_ = store.Add(prefix + "gate.weight", {e_count, d}, ParamKind::kMatrix);
  if (dims.has_correction_bias) {
    bias_ = store.Add(prefix + "gate.e_score_correction_bias", {e_count}, ParamKind::kBuffer);
  }
  for (int64_t e = 0; e < e_count; ++e) {
    const std::string p = absl::StrCat(prefix, "experts.", e, ".");
    expert_gate_.push_back(store.Add(p + "gate_proj.weight", {ie, d}, ParamKind::kMatrix));
    expert_up_.push_back(store.Add(p + "up_proj.weight", {ie, d}, ParamKind::kMatrix));
    expert_down_.push_back(store.Add(p + "down_proj.weight", {d, ie}, ParamKind::kMatrix));
  }
  if (dims.shared_inter > 0) {
    shared_ = std::make_unique<SwiGluMlp>(store, prefix + "shared_experts.", d, dims.shared_inter);
  }
}

void MoeLayer::ExpertsForward(const LayerContext& ctx, Saved* s) const {
  kernels::Backend& ops = *ctx.ops;
  const int64_t d = dims_.d, ie = dims_.expert_inter;
  const int64_t rows = static_cast<int64_t>(s->plan.row_token.size());
  s->a.resize(rows * ie);
  s->c.resize(rows * ie);
  s->m.resize(rows * ie);
  s->y_sorted.resize(rows * d);
  const float* x = s->x_sorted.data();
  // a_e = x_e gate_eᵀ, c_e = x_e up_eᵀ: [R_e, Ie]
  auto up_problems = [&](const std::vector<Param*>& w, float* out) {
    return PerExpert(s->plan, [&](int64_t e, int64_t off, int64_t r) {
      return GemmProblem{r, ie, d, x + off * d, d, w[e]->working.data(), d, out + off * ie, ie};
    });
  };
  ops.GroupedGemm(Transpose::kNo, Transpose::kYes, up_problems(expert_gate_, s->a.data()), 1, 0);
  ops.GroupedGemm(Transpose::kNo, Transpose::kYes, up_problems(expert_up_, s->c.data()), 1, 0);
  ctx.Store(s->a.data(), rows * ie);
  ctx.Store(s->c.data(), rows * ie);
  ops.SwigluForward(s->a.data(), s->c.data(), s->m.data(), rows * ie);
  ctx.Store(s->m.data(), rows * ie);
  // y_e = m_e down_eᵀ: [R_e, d]
  ops.GroupedGemm(Transpose::kNo, Transpose::kYes,
                  PerExpert(s->plan, [&](int64_t e, int64_t off, int64_t r) {
                    return GemmProblem{r, d, ie, s->m.data() + off * ie, ie,
                                       expert_down_[e]->working.data(), ie, s->y_sorted.data() + off * d,
                                       d};
                  }),
                  1, 0);
  ctx.Store(s->y_sorted.data(), rows * d);
}

double MoeLayer::Forward(const LayerContext& ctx, const float* u, int64_t batch, int64_t seq,
                         float* out, Saved* s, int64_t* expert_counts) const {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = batch * seq, d = dims_.d, e_count = dims_.router.num_experts;
  const int64_t k = dims_.router.top_k;
  s->batch = batch;
  s->seq = seq;

  // Route (FP32 logits and scores).
  std::vector<float> logits(n * e_count);
  LinearForward(ops, *gate_, u, n, logits.data());
  s->scores.resize(n * e_count);
  s->selected.resize(n * k);
  s->weights.resize(n * k);
  ops.RouterForward(dims_.router, logits.data(), bias_ ? bias_->working.data() : nullptr, n,
                    s->scores.data(), s->selected.data(), s->weights.data());
  for (int64_t i = 0; i < n * k; ++i) ++expert_counts[s->selected[i]];

  // Dispatch.
  s->plan = BuildRoutingPlan(s->selected.data(), n, k, e_count);
  const int64_t rows = n * k;
  s->x_sorted.resize(rows * d);
  ops.GatherRows(u, s->plan.row_token.data(), rows, d, s->x_sorted.data());

  ExpertsForward(ctx, s);

  // Combine, on top of the shared expert's output.
  if (shared_ != nullptr) {
    shared_->Forward(ctx, u, n, out, &s->shared);
  } else {
    std::fill(out, out + n * d, 0.0f);
  }
  std::vector<float> row_weight(rows);
  for (int64_t r = 0; r < rows; ++r) row_weight[r] = s->weights[s->plan.row_slot[r]];
  ops.ScatterAddRows(s->y_sorted.data(), s->plan.row_token.data(), row_weight.data(), rows, d, out);
  ctx.Store(out, n * d);

  // Sequence-wise balance loss (spec §5.4): groups are sequences (seq_aux) or the whole micro-batch.
  if (dims_.aux_loss_alpha == 0.0f) return 0.0;
  const int64_t groups = dims_.seq_aux ? batch : 1;
  const int64_t group_len = n / groups;
  s->balance_f.assign(groups * e_count, 0.0f);
  double loss = 0.0;
  std::vector<int32_t> top;
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<double> p(e_count, 0.0);
    float* f = &s->balance_f[g * e_count];
    for (int64_t t = g * group_len; t < (g + 1) * group_len; ++t) {
      const float* st = &s->scores[t * e_count];
      double sum = 0.0;
      for (int64_t i = 0; i < e_count; ++i) sum += st[i];
      for (int64_t i = 0; i < e_count; ++i) p[i] += st[i] / sum;
      PlainTopK(st, e_count, k, &top);
      for (int32_t i : top) f[i] += 1.0f;
    }
    double group_loss = 0.0;
    for (int64_t i = 0; i < e_count; ++i) {
      f[i] *= static_cast<float>(e_count) / static_cast<float>(k * group_len);
      group_loss += f[i] * p[i] / group_len;
    }
    loss += dims_.aux_loss_alpha * group_loss;
  }
  return loss / groups;
}

void MoeLayer::Backward(const LayerContext& ctx, const float* u, const Saved& s, const float* d_out,
                        float loss_scale, float* d_u) {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = s.batch * s.seq, d = dims_.d, ie = dims_.expert_inter;
  const int64_t e_count = dims_.router.num_experts, k = dims_.router.top_k;
  const int64_t rows = n * k;

  // Combine backward: d_y_sorted[r] = w · d_out[token]; d_w[slot] = d_out[token] · y_sorted[r].
  std::vector<float> dy(rows * d);
  std::vector<float> d_weights(n * k);
  ops.GatherRows(d_out, s.plan.row_token.data(), rows, d, dy.data());
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t slot = s.plan.row_slot[r];
    const float* y = &s.y_sorted[r * d];
    float* g = &dy[r * d];
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) dot += static_cast<double>(g[j]) * y[j];
    d_weights[slot] = static_cast<float>(dot);
    const float w = s.weights[slot];
    for (int64_t j = 0; j < d; ++j) g[j] *= w;
  }

  // Experts backward, one grouped GEMM per product.
  std::vector<float> dm(rows * ie), da(rows * ie), dc(rows * ie), dx(rows * d);
  ops.GroupedGemm(Transpose::kNo, Transpose::kNo,  // dm_e = dy_e down_e
                  PerExpert(s.plan, [&](int64_t e, int64_t off, int64_t r) {
                    return GemmProblem{r, ie, d, dy.data() + off * d, d,
                                       expert_down_[e]->working.data(), ie, dm.data() + off * ie, ie};
                  }),
                  1, 0);
  ops.GroupedGemm(Transpose::kYes, Transpose::kNo,  // d down_e += dy_eᵀ m_e
                  PerExpert(s.plan, [&](int64_t e, int64_t off, int64_t r) {
                    return GemmProblem{d, ie, r, dy.data() + off * d, d, s.m.data() + off * ie, ie,
                                       expert_down_[e]->grad.data(), ie};
                  }),
                  1, 1);
  ops.SwigluBackward(s.a.data(), s.c.data(), dm.data(), da.data(), dc.data(), rows * ie);
  auto input_grad = [&](const std::vector<Param*>& w, const float* g) {  // dx_e (+)= g_e w_e
    return PerExpert(s.plan, [&, g](int64_t e, int64_t off, int64_t r) {
      return GemmProblem{r, d, ie, g + off * ie, ie, w[e]->working.data(), d, dx.data() + off * d, d};
    });
  };
  ops.GroupedGemm(Transpose::kNo, Transpose::kNo, input_grad(expert_gate_, da.data()), 1, 0);
  ops.GroupedGemm(Transpose::kNo, Transpose::kNo, input_grad(expert_up_, dc.data()), 1, 1);
  auto weight_grad = [&](const std::vector<Param*>& w, const float* g) {  // d w_e += g_eᵀ x_e
    return PerExpert(s.plan, [&, g](int64_t e, int64_t off, int64_t r) {
      return GemmProblem{ie, d, r, g + off * ie, ie, s.x_sorted.data() + off * d, d,
                         w[e]->grad.data(), d};
    });
  };
  ops.GroupedGemm(Transpose::kYes, Transpose::kNo, weight_grad(expert_gate_, da.data()), 1, 1);
  ops.GroupedGemm(Transpose::kYes, Transpose::kNo, weight_grad(expert_up_, dc.data()), 1, 1);

  // Shared expert, then the routed tokens' input gradients (dispatch backward).
  if (shared_ != nullptr) {
    shared_->Backward(ctx, u, s.shared, d_out, d_u, /*accumulate_du=*/false);
  } else {
    std::fill(d_u, d_u + n * d, 0.0f);
  }
  ops.ScatterAddRows(dx.data(), s.plan.row_token.data(), nullptr, rows, d, d_u);

  // Balance-loss gradient on the scores (spec §9.5), then the router backward.
  std::vector<float> d_scores_extra;
  if (dims_.aux_loss_alpha != 0.0f) {
    d_scores_extra.assign(n * e_count, 0.0f);
    const int64_t groups = dims_.seq_aux ? s.batch : 1;
    const int64_t group_len = n / groups;
    const double coef = loss_scale * dims_.aux_loss_alpha / static_cast<double>(groups * group_len);
    for (int64_t t = 0; t < n; ++t) {
      const float* st = &s.scores[t * e_count];
      const float* f = &s.balance_f[(t / group_len) * e_count];
      double sum = 0.0, dot = 0.0;
      for (int64_t i = 0; i < e_count; ++i) sum += st[i];
      for (int64_t i = 0; i < e_count; ++i) dot += coef * f[i] * (st[i] / sum);
      for (int64_t i = 0; i < e_count; ++i) {
        d_scores_extra[t * e_count + i] = static_cast<float>((coef * f[i] - dot) / sum);
      }
    }
  }
  std::vector<float> d_logits(n * e_count);
  ops.RouterBackward(dims_.router, s.scores.data(), s.selected.data(), d_weights.data(),
                     d_scores_extra.empty() ? nullptr : d_scores_extra.data(), n, d_logits.data());
  LinearBackward(ops, *gate_, u, d_logits.data(), n, d_u, GradMode::kAccumulate);
}

}  // namespace moe::model
