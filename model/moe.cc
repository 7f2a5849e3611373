#include "model/moe.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "model/linear.h"

namespace moe::model {
namespace {

using kernels::GemmProblem;
using kernels::Transpose;

// One GEMM problem per local expert over its block of grouped rows; `make(j, row_offset, rows)`.
template <typename Fn>
std::vector<GemmProblem> PerExpert(const std::vector<int64_t>& offsets, Fn make) {
  const int64_t experts = static_cast<int64_t>(offsets.size()) - 1;
  std::vector<GemmProblem> problems;
  problems.reserve(experts);
  for (int64_t j = 0; j < experts; ++j) problems.push_back(make(j, offsets[j], offsets[j + 1] - offsets[j]));
  return problems;
}

// The problems of a then b, for one grouped call: the gate and up products share their shapes (and, in
// the forward and the weight gradients, an operand), so a backend with a one-launch grouped form runs
// both in one launch. Each problem's result is the same as in a call of its own.
std::vector<GemmProblem> Concat(std::vector<GemmProblem> a, const std::vector<GemmProblem>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Row block `offset` of an operand that may be absent (null: no BF16 bits, or no FP32 copy).
template <typename T>
const T* At(const T* p, int64_t offset) {
  return p != nullptr ? p + offset : nullptr;
}

// Balance-loss groups (docs/model.md "Sequence-wise balance loss"): sequences (seq_aux) or the whole
// micro-batch.
int64_t BalanceGroups(const TokenSlice& sl, bool seq_aux) { return seq_aux ? sl.batch : 1; }
int64_t BalanceGroupLen(const TokenSlice& sl, bool seq_aux) { return seq_aux ? sl.seq : sl.batch * sl.seq; }

}  // namespace

MoeLayer::MoeLayer(ParamStore& store, const std::string& prefix, const MoeDims& dims,
                   parallel::Communicator* ep)
    : dims_(dims), dispatcher_(ep, dims.router.num_experts) {
  const int64_t e_count = dims.router.num_experts, d = dims.d, ie = dims.expert_inter;
  gate_ = store.Add(prefix + "gate.weight", {e_count, d}, ParamKind::kMatrix);
  if (dims.has_correction_bias) {
    bias_ = store.Add(prefix + "gate.e_score_correction_bias", {e_count}, ParamKind::kBuffer);
  }
  for (int64_t j = 0; j < dispatcher_.local_experts(); ++j) {
    const std::string p = absl::StrCat(prefix, "experts.", dispatcher_.first_local_expert() + j, ".");
    constexpr ParamSync kEx = ParamSync::kExpert;
    expert_gate_.push_back(store.Add(p + "gate_proj.weight", {ie, d}, ParamKind::kMatrix, kEx));
    expert_up_.push_back(store.Add(p + "up_proj.weight", {ie, d}, ParamKind::kMatrix, kEx));
    expert_down_.push_back(store.Add(p + "down_proj.weight", {d, ie}, ParamKind::kMatrix, kEx));
  }
}

void MoeLayer::ExpertsForward(const LayerContext& ctx, const float* x, float* y_sorted, Saved* s) const {
  kernels::Backend& ops = *ctx.ops;
  const int64_t d = dims_.d, ie = dims_.expert_inter;
  const int64_t rows = s->handle.rows_received;
  const auto& off = s->handle.local_expert_offsets;
  Scratch::Frame frame(*ctx.scratch);
  float* a = s->a.Prepare(ctx, frame, rows * ie);
  float* c = s->c.Prepare(ctx, frame, rows * ie);
  float* y_grouped = dispatcher_.MovesRows() ? frame.Floats(rows * d) : y_sorted;
  // Operands kept as BF16 bits (BF16 mode) are read in place: x (the saved x_grouped) here, m below.
  const uint16_t* x_bits = s->x_grouped.bits();
  auto up_problems = [&](const std::vector<Param*>& w, float* out) {  // [R'_j, Ie] = x_j w_jᵀ
    return PerExpert(off, [&](int64_t j, int64_t o, int64_t r) {
      GemmProblem q = WithWorkingB({r, ie, d, x + o * d, d, nullptr, d, out + o * ie, ie}, *w[j]);
      q.a_bf16 = At(x_bits, o * d);
      return q;
    });
  };
  ops.GroupedGemm(Transpose::kNo, Transpose::kYes, Concat(up_problems(expert_gate_, a), up_problems(expert_up_, c)),
                  1, 0);
  s->a.Save(ctx);
  s->c.Save(ctx);
  ops.SwigluForward(a, c, s->m.Output(ctx, rows * ie), rows * ie);  // m only feeds the down products
  const float* m = s->m.fp32();
  const uint16_t* m_bits = s->m.bits();
  ops.GroupedGemm(Transpose::kNo, Transpose::kYes,  // [R'_j, d] = m_j down_jᵀ
                  PerExpert(off, [&](int64_t j, int64_t o, int64_t r) {
                    GemmProblem q =
                        WithWorkingB({r, d, ie, At(m, o * ie), ie, nullptr, ie, y_grouped + o * d, d}, *expert_down_[j]);
                    q.a_bf16 = At(m_bits, o * ie);
                    return q;
                  }),
                  1, 0);
  // No Store: y_sorted's Save rounds the same values (Combine only moves rows).
  dispatcher_.Combine(ops, s->handle, y_grouped, d, y_sorted);
}

double MoeLayer::BalanceLoss(const LayerContext& ctx, Saved* s) const {
  const TokenSlice& sl = s->slice;
  const int64_t e_count = dims_.router.num_experts, k = dims_.router.top_k;
  const int64_t groups = BalanceGroups(sl, dims_.seq_aux), len = BalanceGroupLen(sl, dims_.seq_aux);
  // Per group: Σ_t s'_{t,i} and the plain top-K counts, summed over the TP ranks that hold the
  // group's tokens (sequence parallelism), so every rank sees the whole sequence's statistics.
  std::vector<double> stats = DownloadBuffer(*ctx.ops, s->balance_stats);  // [P sums | f counts]
  ctx.tp->AllReduceSum(stats.data(), static_cast<int64_t>(stats.size()));
  std::vector<float> balance_f(groups * e_count);
  double loss = 0.0;
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t i = 0; i < e_count; ++i) {
      const double f = stats[(groups + g) * e_count + i] * e_count / static_cast<double>(k * len);
      balance_f[g * e_count + i] = static_cast<float>(f);
      loss += f * stats[g * e_count + i] / len;
    }
  }
  UploadToBuffer(*ctx.ops, balance_f.data(), groups * e_count, &s->balance_f);
  return dims_.aux_loss_alpha * loss / groups;
}

double MoeLayer::Forward(const LayerContext& ctx, const float* u, const TokenSlice& slice, float* out,
                         Saved* s, int64_t* expert_counts) const {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = slice.num_tokens, d = dims_.d, e_count = dims_.router.num_experts;
  const int64_t k = dims_.router.top_k;
  s->slice = slice;
  Scratch::Frame frame(*ctx.scratch);

  // Route (FP32 logits and scores).
  float* logits = frame.Floats(n * e_count);
  LinearForward(ops, *gate_, u, n, logits);
  s->scores.resize(n * e_count);
  s->selected.resize(n * k);
  s->weights.resize(n * k);
  ops.RouterForward(dims_.router, logits, bias_ ? bias_->working.data() : nullptr, n, s->scores.data(),
                    s->selected.data(), s->weights.data());
  const bool balance_loss = dims_.aux_loss_alpha != 0.0f;
  if (balance_loss) {
    const int64_t groups = BalanceGroups(slice, dims_.seq_aux);
    s->balance_stats.resize(2 * groups * e_count);
    ops.BalanceStats(s->scores.data(), n, e_count, k, slice.token_offset, BalanceGroupLen(slice, dims_.seq_aux),
                     groups, s->balance_stats.data());
  }

  // Dispatch: sort rows by global expert, exchange counts, send rows to the experts' EP ranks.
  const int64_t capacity =
      dims_.capacity_factor > 0
          ? static_cast<int64_t>(std::ceil(dims_.capacity_factor * static_cast<double>(n * k) / e_count))
          : -1;
  RoutingPlan& plan = s->plan;
  plan.counts.resize(e_count);
  plan.row_token.resize(n * k);
  plan.row_slot.resize(n * k);
  ops.SortByExpert(s->selected.data(), n, k, e_count, capacity, plan.counts.data(), plan.row_token.data(),
                   plan.row_slot.data());
  // The counts come to the host (the one wait of the layer): they size the exchange and the grouped GEMM.
  const std::vector<int32_t> counts = DownloadBuffer(ops, plan.counts);
  std::vector<int64_t> rows_per_expert(e_count);
  plan.expert_offsets.assign(e_count + 1, 0);
  for (int64_t e = 0; e < e_count; ++e) {
    expert_counts[e] += counts[e];
    rows_per_expert[e] = capacity < 0 ? counts[e] : std::min<int64_t>(counts[e], capacity);
    plan.expert_offsets[e + 1] = plan.expert_offsets[e] + rows_per_expert[e];
  }
  const int64_t rows = plan.rows();
  plan.dropped = n * k - rows;
  s->handle = dispatcher_.Plan(rows_per_expert);
  const double balance = balance_loss ? BalanceLoss(ctx, s) : 0.0;

  float* x_grouped = s->x_grouped.Prepare(ctx, frame, s->handle.rows_received * d);
  float* x_sorted = dispatcher_.MovesRows() ? frame.Floats(rows * d) : x_grouped;
  ops.GatherRows(u, s->plan.row_token.data(), rows, d, x_sorted);
  dispatcher_.Dispatch(ops, s->handle, x_sorted, d, x_grouped);
  s->x_grouped.Save(ctx);

  float* y_sorted = s->y_sorted.Prepare(ctx, frame, s->handle.rows_sent * d);
  ExpertsForward(ctx, x_grouped, y_sorted, s);
  s->y_sorted.Save(ctx);

  // Weighted sum of each token's K expert outputs.
  s->row_weight.resize(rows);
  ops.GatherRows(s->weights.data(), s->plan.row_slot.data(), rows, 1, s->row_weight.data());
  ops.Fill(out, n * d, 0.0f);
  ops.ScatterAddRows(y_sorted, s->plan.row_token.data(), s->row_weight.data(), rows, d, out);
  ctx.Store(out, n * d);
  return balance;
}

void MoeLayer::Backward(const LayerContext& ctx, const float* u, const Saved& s, const float* d_out,
                        float loss_scale, float* d_u, const uint16_t* u_bf16) {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = s.slice.num_tokens, d = dims_.d, ie = dims_.expert_inter;
  const int64_t e_count = dims_.router.num_experts, k = dims_.router.top_k;
  const int64_t rows = s.plan.rows(), grouped_rows = s.handle.rows_received;
  const auto& off = s.handle.local_expert_offsets;
  Scratch::Frame frame(*ctx.scratch);

  // Combine backward: d_w[slot(r)] = d_out[token(r)] · y_sorted[r] (0 for dropped slots);
  // dy_sorted[r] = w(r) · d_out[token(r)].
  float* dy_sorted = frame.Floats(rows * d);
  float* row_dot = frame.Floats(rows);
  float* d_weights = frame.Floats(n * k);
  ops.GatherRows(d_out, s.plan.row_token.data(), rows, d, dy_sorted);
  ops.RowDot(dy_sorted, s.y_sorted.values(), rows, d, row_dot);
  ops.Fill(d_weights, n * k, 0.0f);
  ops.ScatterAddRows(row_dot, s.plan.row_slot.data(), nullptr, rows, 1, d_weights);
  ops.ScaleRows(dy_sorted, s.row_weight.data(), rows, d);
  // Combine's backward is a Dispatch.
  float* dy = dispatcher_.MovesRows() ? frame.Floats(grouped_rows * d) : dy_sorted;
  dispatcher_.Dispatch(ops, s.handle, dy_sorted, d, dy);

  // Experts backward, one grouped GEMM per product.
  float* dm = frame.Floats(grouped_rows * ie);
  // da and dc only feed the gate and up products: BF16 bits in BF16 mode.
  const kernels::ValuesOut da = ctx.OperandOut(frame, grouped_rows * ie), dc = ctx.OperandOut(frame, grouped_rows * ie);
  float* dx_sorted = frame.Floats(rows * d);
  float* dx = dispatcher_.MovesRows() ? frame.Floats(grouped_rows * d) : dx_sorted;
  // m and x_grouped only feed weight gradients: the GEMMs read them as kept (BF16 bits in BF16 mode).
  const float* m = s.m.fp32();
  const uint16_t* m_bf16 = s.m.bits();
  const float* x_grouped = s.x_grouped.fp32();
  const uint16_t* x_grouped_bf16 = s.x_grouped.bits();
  // dy, da and dc each feed two products: in BF16 mode they are converted once.
  const uint16_t* dy_bf16 = ctx.OperandBits(frame, dy, grouped_rows * d);
  ops.GroupedGemm(Transpose::kNo, Transpose::kNo,  // dm_j = dy_j down_j
                  PerExpert(off, [&](int64_t j, int64_t o, int64_t r) {
                    GemmProblem q =
                        WithWorkingB({r, ie, d, dy + o * d, d, nullptr, ie, dm + o * ie, ie}, *expert_down_[j]);
                    q.a_bf16 = At(dy_bf16, o * d);
                    return q;
                  }),
                  1, 0);
  ops.GroupedGemm(Transpose::kYes, Transpose::kNo,  // d down_j += dy_jᵀ m_j
                  PerExpert(off, [&](int64_t j, int64_t o, int64_t r) {
                    GemmProblem q{d, ie, r, dy + o * d, d, At(m, o * ie), ie, expert_down_[j]->grad.data(), ie};
                    q.a_bf16 = At(dy_bf16, o * d);
                    q.b_bf16 = At(m_bf16, o * ie);
                    return q;
                  }),
                  1, TakeGradBeta(ops, expert_down_));
  ops.SwigluBackward(s.a.values(), s.c.values(), dm, da, dc, grouped_rows * ie);
  auto input_grad = [&](const std::vector<Param*>& w, kernels::ValuesOut g) {  // dx_j (+)= g_j w_j
    return PerExpert(off, [&, g](int64_t j, int64_t o, int64_t r) {
      GemmProblem q = WithWorkingB({r, d, ie, At(g.f32, o * ie), ie, nullptr, d, dx + o * d, d}, *w[j]);
      q.a_bf16 = At(g.bf16, o * ie);
      return q;
    });
  };
  ops.GroupedGemm(Transpose::kNo, Transpose::kNo, input_grad(expert_gate_, da), 1, 0);
  ops.GroupedGemm(Transpose::kNo, Transpose::kNo, input_grad(expert_up_, dc), 1, 1);
  auto weight_grad = [&](const std::vector<Param*>& w, kernels::ValuesOut g) {  // d w_j += g_jᵀ x_j
    return PerExpert(off, [&, g](int64_t j, int64_t o, int64_t r) {
      GemmProblem q{ie, d, r, At(g.f32, o * ie), ie, At(x_grouped, o * d), d, w[j]->grad.data(), d};
      q.a_bf16 = At(g.bf16, o * ie);
      q.b_bf16 = At(x_grouped_bf16, o * d);
      return q;
    });
  };
  std::vector<Param*> gate_up = expert_gate_;  // written together, so one beta serves both
  gate_up.insert(gate_up.end(), expert_up_.begin(), expert_up_.end());
  const float gate_up_beta = TakeGradBeta(ops, gate_up);
  ops.GroupedGemm(Transpose::kYes, Transpose::kNo, Concat(weight_grad(expert_gate_, da), weight_grad(expert_up_, dc)),
                  1, gate_up_beta);

  // Dispatch's backward is a Combine; then back to the tokens.
  dispatcher_.Combine(ops, s.handle, dx, d, dx_sorted);
  ops.Fill(d_u, n * d, 0.0f);
  ops.ScatterAddRows(dx_sorted, s.plan.row_token.data(), nullptr, rows, d, d_u);

  // Balance-loss gradient on the scores (docs/model.md "Backward: router and balance loss"), then the
  // router backward.
  float* d_scores_extra = nullptr;
  if (dims_.aux_loss_alpha != 0.0f) {
    const int64_t groups = BalanceGroups(s.slice, dims_.seq_aux), len = BalanceGroupLen(s.slice, dims_.seq_aux);
    d_scores_extra = frame.Floats(n * e_count);
    ops.BalanceLossGrad(s.scores.data(), n, e_count, s.slice.token_offset, len, s.balance_f.data(),
                        loss_scale * dims_.aux_loss_alpha / static_cast<double>(groups * len), d_scores_extra);
  }
  float* d_logits = frame.Floats(n * e_count);
  ops.RouterBackward(dims_.router, s.scores.data(), s.selected.data(), d_weights, d_scores_extra, n,
                     d_logits);
  LinearBackward(ctx, *gate_, u, d_logits, n, d_u, GradMode::kAccumulate, u_bf16);
}

}  // namespace moe::model
