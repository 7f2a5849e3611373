// The MoE router (docs/model.md "Router", "Backward: router and balance loss"), one token per row, FP32.
//   scores  s = sigmoid(z) or softmax(z)                                   [n, E]
//   choice  noaux_tc:  key = s + bias; with G > 1 groups of E/G consecutive experts, keep the
//                      topk_group groups with the largest sum of their 2 best keys, mask the others
//                      with -inf; Sel = top-K keys.
//           greedy:    Sel = top-K of s over all experts (no groups, no bias).
//           group_limited_greedy: group score = the group's max s, keep topk_group groups, top-K s.
//   weights w_i = rho s_i / (sum_Sel s_j + 1e-20) if norm_topk_prob else rho s_i   (unbiased s)
// Every top-k breaks ties towards the lower index (groups and experts), so all backends and layouts
// choose the same experts. Selected experts are written best first.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {
namespace {

constexpr float kNormEps = 1e-20f;  // HF's guard on the top-k normaliser

// out[0..k) = indices of the k largest v[0..n), best first, ties -> lower index. A linear scan per
// pick (k and n are small) is exact and deterministic; taken is scratch of size >= n.
void TopIndices(const float* v, int64_t n, int64_t k, std::vector<char>& taken, int32_t* out) {
  std::fill(taken.begin(), taken.begin() + n, 0);
  for (int64_t r = 0; r < k; ++r) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (taken[i]) continue;
      if (best < 0 || v[i] > v[best]) best = i;  // strict: the first (lowest) index wins ties
    }
    taken[best] = 1;
    out[r] = static_cast<int32_t>(best);
  }
}

void Score(ScoringFunc f, const float* z, int64_t e, float* s) {
  if (f == ScoringFunc::kSigmoid) {
    for (int64_t i = 0; i < e; ++i) s[i] = 1.0f / (1.0f + std::exp(-z[i]));
    return;
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < e; ++i) mx = std::max(mx, z[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < e; ++i) {
    s[i] = std::exp(z[i] - mx);
    sum += s[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < e; ++i) s[i] *= inv;
}

}  // namespace

void CpuBackend::RouterForward(const RouterParams& p, const float* logits, const float* bias,
                               int64_t n, float* scores, int32_t* selected, float* weights) {
  const auto op_timer = TimeOp("router_fwd");
  const int64_t E = p.num_experts, K = p.top_k;
  const int64_t G = std::max<int64_t>(1, p.n_group);
  MOE_CPU_CHECK(E > 0 && K > 0 && K <= E, "router needs 0 < top_k <= num_experts");
  MOE_CPU_CHECK(E % G == 0, "num_experts must be a multiple of n_group");
  const int64_t group_size = E / G;
  const bool use_groups = p.method != TopkMethod::kGreedy && G > 1 && p.topk_group < G;
  const bool use_bias = p.method == TopkMethod::kNoauxTc && bias != nullptr;
  if (use_groups) {
    MOE_CPU_CHECK(p.topk_group > 0 && p.topk_group * group_size >= K,
                  "kept groups must hold at least top_k experts");
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();

#pragma omp parallel num_threads(num_threads_) if (n * E >= cpu_internal::kMinParallelElements)
  {
    std::vector<float> key(E), group_score(G);
    std::vector<char> taken(std::max(E, G));
    std::vector<int32_t> kept(G);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      float* s = scores + t * E;
      int32_t* sel = selected + t * K;
      Score(p.scoring, logits + t * E, E, s);
      for (int64_t i = 0; i < E; ++i) key[i] = use_bias ? s[i] + bias[i] : s[i];

      if (use_groups) {
        for (int64_t g = 0; g < G; ++g) {
          const float* kg = key.data() + g * group_size;
          if (p.method == TopkMethod::kGroupLimitedGreedy) {
            group_score[g] = *std::max_element(kg, kg + group_size);
          } else {  // sum of the two largest (one if the group has a single expert)
            int32_t top2[2];
            const int64_t m = std::min<int64_t>(2, group_size);
            TopIndices(kg, group_size, m, taken, top2);
            group_score[g] = m == 2 ? kg[top2[0]] + kg[top2[1]] : kg[top2[0]];
          }
        }
        TopIndices(group_score.data(), G, p.topk_group, taken, kept.data());
        std::vector<char>& keep = taken;  // reuse: keep[g] == 1 for the kept groups
        std::fill(keep.begin(), keep.begin() + G, 0);
        for (int64_t r = 0; r < p.topk_group; ++r) keep[kept[r]] = 1;
        for (int64_t g = 0; g < G; ++g) {
          if (!keep[g]) std::fill_n(key.data() + g * group_size, group_size, neg_inf);
        }
      }
      TopIndices(key.data(), E, K, taken, sel);

      float* w = weights + t * K;
      float denom = 1.0f;
      if (p.norm_topk_prob) {
        float sum = 0.0f;
        for (int64_t r = 0; r < K; ++r) sum += s[sel[r]];
        denom = sum + kNormEps;
      }
      for (int64_t r = 0; r < K; ++r) w[r] = p.routed_scaling_factor * s[sel[r]] / denom;
    }
  }
}

// d_weights [n, K] -> ds [E] (selected entries only, plus d_scores_extra) -> d_logits [n, E].
void CpuBackend::RouterBackward(const RouterParams& p, const float* scores, const int32_t* selected,
                                const float* d_weights, const float* d_scores_extra, int64_t n,
                                float* d_logits) {
  const auto op_timer = TimeOp("router_bwd");
  const int64_t E = p.num_experts, K = p.top_k;
  const float rho = p.routed_scaling_factor;

#pragma omp parallel num_threads(num_threads_) if (n * E >= cpu_internal::kMinParallelElements)
  {
    std::vector<float> ds(E);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      const float* s = scores + t * E;
      const int32_t* sel = selected + t * K;
      const float* dw = d_weights + t * K;
      if (d_scores_extra) {
        std::copy_n(d_scores_extra + t * E, E, ds.begin());
      } else {
        std::fill(ds.begin(), ds.end(), 0.0f);
      }
      if (p.norm_topk_prob) {
        float sum = 0.0f;
        for (int64_t r = 0; r < K; ++r) sum += s[sel[r]];
        const float denom = sum + kNormEps;
        float w_dot_dw = 0.0f;  // sum_i w_i dw_i
        for (int64_t r = 0; r < K; ++r) w_dot_dw += rho * s[sel[r]] / denom * dw[r];
        for (int64_t r = 0; r < K; ++r) ds[sel[r]] += (rho * dw[r] - w_dot_dw) / denom;
      } else {
        for (int64_t r = 0; r < K; ++r) ds[sel[r]] += rho * dw[r];
      }

      float* dz = d_logits + t * E;
      if (p.scoring == ScoringFunc::kSigmoid) {
        for (int64_t i = 0; i < E; ++i) dz[i] = ds[i] * s[i] * (1.0f - s[i]);
      } else {
        double dot = 0.0;
        for (int64_t i = 0; i < E; ++i) dot += static_cast<double>(ds[i]) * s[i];
        const float d = static_cast<float>(dot);
        for (int64_t i = 0; i < E; ++i) dz[i] = s[i] * (ds[i] - d);
      }
    }
  }
}

// Token order within each group and expert order within each token (docs/model.md "Sequence-wise balance
// loss"): every backend accumulates the same FP64 terms in the same order.
void CpuBackend::BalanceStats(const float* scores, int64_t n, int64_t num_experts, int64_t top_k,
                              int64_t first_token, int64_t group_len, int64_t groups, double* stats) {
  const auto op_timer = TimeOp("balance_stats");
  std::vector<char> taken(num_experts);
  std::vector<int32_t> top(top_k);
  double* p_sum = stats;
  double* f_count = stats + groups * num_experts;
  std::fill(stats, stats + 2 * groups * num_experts, 0.0);
  std::vector<double> chunk(num_experts);
  for (int64_t t = 0; t < n;) {
    // The chunk holding token t: group g, positions up to the next multiple of kBalanceChunk.
    const int64_t g = (first_token + t) / group_len, pos = first_token + t - g * group_len;
    MOE_CPU_CHECK(g < groups, "balance stats: token beyond the last group");
    const int64_t chunk_end = std::min(group_len, (pos / kBalanceChunk + 1) * kBalanceChunk);
    const int64_t t_end = std::min(n, t + chunk_end - pos);
    std::fill(chunk.begin(), chunk.end(), 0.0);
    for (; t < t_end; ++t) {
      const float* st = scores + t * num_experts;
      double sum = 0.0;
      for (int64_t i = 0; i < num_experts; ++i) sum += st[i];
      for (int64_t i = 0; i < num_experts; ++i) chunk[i] += st[i] / sum;
      TopIndices(st, num_experts, top_k, taken, top.data());
      for (int32_t i : top) f_count[g * num_experts + i] += 1.0;
    }
    for (int64_t i = 0; i < num_experts; ++i) p_sum[g * num_experts + i] += chunk[i];
  }
}

void CpuBackend::BalanceLossGrad(const float* scores, int64_t n, int64_t num_experts, int64_t first_token,
                                 int64_t group_len, const float* f, double coef, float* d_scores) {
  const auto op_timer = TimeOp("balance_grad");
#pragma omp parallel for schedule(static) num_threads(num_threads_)
  for (int64_t t = 0; t < n; ++t) {
    const float* st = scores + t * num_experts;
    const float* fg = f + ((first_token + t) / group_len) * num_experts;
    double sum = 0.0, dot = 0.0;
    for (int64_t i = 0; i < num_experts; ++i) sum += st[i];
    for (int64_t i = 0; i < num_experts; ++i) dot += coef * fg[i] * (st[i] / sum);
    for (int64_t i = 0; i < num_experts; ++i) {
      d_scores[t * num_experts + i] = static_cast<float>((coef * fg[i] - dot) / sum);
    }
  }
}

// A stable counting sort: one pass counts, one places each kept slot at its expert's cursor.
void CpuBackend::SortByExpert(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts, int64_t capacity,
                              int32_t* counts, int32_t* row_token, int32_t* row_slot) {
  const auto op_timer = TimeOp("sort_by_expert");
  std::fill(counts, counts + num_experts, 0);
  for (int64_t i = 0; i < n * k; ++i) {
    MOE_CPU_CHECK(selected[i] >= 0 && selected[i] < num_experts, "SortByExpert: expert index out of range");
    ++counts[selected[i]];
  }
  std::vector<int64_t> cursor(num_experts), kept(num_experts, 0);
  for (int64_t e = 0, row = 0; e < num_experts; ++e) {
    cursor[e] = row;
    row += capacity < 0 ? counts[e] : std::min<int64_t>(counts[e], capacity);
  }
  for (int64_t i = 0; i < n * k; ++i) {  // slot order: the first `capacity` per expert stay
    const int32_t e = selected[i];
    if (capacity >= 0 && kept[e] == capacity) continue;
    ++kept[e];
    const int64_t r = cursor[e]++;
    row_token[r] = static_cast<int32_t>(i / k);
    row_slot[r] = static_cast<int32_t>(i);
  }
}

}  // namespace moe::kernels
