// DeepSeekMoE layer (spec §5), as named stages: Route -> Dispatch -> Experts -> Combine, plus the
// shared expert, and in reverse for the backward (Dispatch and Combine are each other's backward and
// share one RoutingPlan).
//
// For n tokens of the normed input u [n, d] and E routed experts, K per token:
//   Route:    z = u gateᵀ [n, E] (FP32); s = σ(z) or softmax(z); Sel [n, K] from s (+ correction bias);
//             w [n, K] the gate weights (spec §5.1)
//   Dispatch: the n·K (token, slot) rows sorted by expert -> x_sorted [R = n·K, d]
//   Experts:  one grouped SwiGLU over the experts' row blocks -> y_sorted [R, d]
//   Combine:  out[t] = shared(u)[t] + Σ_k w[t,k] · y_sorted[row(t,k)]
// Single-process dispatch here; the expert-parallel dispatcher (all-to-all) replaces Dispatch/Combine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/layer_context.h"
#include "model/mlp.h"
#include "model/params.h"

namespace moe::model {

struct MoeDims {
  int64_t d = 0;
  int64_t expert_inter = 0;   // moe_intermediate_size
  int64_t shared_inter = 0;   // n_shared_experts · moe_intermediate_size (0: none)
  kernels::RouterParams router;
  bool has_correction_bias = true;  // topk_method == noaux_tc
  float aux_loss_alpha = 0.0f;      // sequence-wise balance loss weight (0: off)
  bool seq_aux = true;              // per sequence (true) or over the whole micro-batch
};

// Rows sorted by expert: row r holds (token row_token[r], slot row_slot[r] = token·K + k).
struct RoutingPlan {
  std::vector<int32_t> row_token;       // [R]
  std::vector<int32_t> row_slot;        // [R]
  std::vector<int64_t> expert_offsets;  // [E + 1]
};

class MoeLayer {
 public:
  struct Saved {
    int64_t batch = 0, seq = 0;
    std::vector<float> scores;     // [n, E]
    std::vector<int32_t> selected; // [n, K]
    std::vector<float> weights;    // [n, K]
    RoutingPlan plan;
    std::vector<float> x_sorted;   // [R, d]
    std::vector<float> a, c, m;    // [R, Ie]
    std::vector<float> y_sorted;   // [R, d]
    std::vector<float> balance_f;  // [num_balance_groups, E] (balance loss only)
    SwiGluMlp::Saved shared;
  };

  MoeLayer(ParamStore& store, const std::string& prefix, const MoeDims& dims);

  // out [n, d] written. Returns this micro-batch's balance loss (0 if alpha == 0). Adds the
  // (token, slot) assignment counts per expert to `expert_counts` [E].
  double Forward(const LayerContext& ctx, const float* u, int64_t batch, int64_t seq, float* out,
                 Saved* saved, int64_t* expert_counts) const;
  // d_u [n, d] written. `loss_scale` multiplies the balance loss's own gradient (the same factor the
  // caller applied to the main loss).
  void Backward(const LayerContext& ctx, const float* u, const Saved& saved, const float* d_out,
                float loss_scale, float* d_u);

  int64_t num_experts() const { return dims_.router.num_experts; }
  Param* correction_bias() { return bias_; }

 private:
  void ExpertsForward(const LayerContext& ctx, Saved* s) const;

  MoeDims dims_;
  Param* gate_ = nullptr;  // [E, d]
  Param* bias_ = nullptr;  // [E] e_score_correction_bias (noaux_tc only)
  std::vector<Param*> expert_gate_, expert_up_, expert_down_;  // per expert [Ie, d], [Ie, d], [d, Ie]
  std::unique_ptr<SwiGluMlp> shared_;
};

// Builds the expert-sorted row order (stable in token order) from selected [n, K].
RoutingPlan BuildRoutingPlan(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts);

}  // namespace moe::model
