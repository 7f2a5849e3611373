// DeepSeekMoE routed experts (docs/model.md "Router" to "Load statistics"), as named stages:
// Route -> Dispatch -> Experts -> Combine, and in reverse for the backward (Dispatch and Combine are
// each other's backward and share one handle).
// The shared expert is a plain SwiGLU that the decoder layer runs beside this (model.cc), under
// tensor parallelism like the dense FFN.
//
// For the n tokens this rank holds (its sequence-parallel slice), u [n, d], E experts, K per token:
//   Route:    z = u gateᵀ [n, E] (FP32); s = σ(z) or softmax(z); Sel [n, K] from s (+ correction bias);
//             w [n, K] the gate weights (docs/model.md "Router")
//   Dispatch: the n·K (token, slot) rows sorted by global expert -> x_sorted [R = n·K, d], sent over
//             the EP group -> x_grouped [R', d] for this rank's E/ep experts
//   Experts:  one grouped SwiGLU over the local experts' row blocks -> y_grouped [R', d]
//   Combine:  back over the EP group -> y_sorted [R, d];  out[t] = Σ_k w[t,k] · y_sorted[row(t,k)]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/layer_context.h"
#include "model/saved_activation.h"
#include "model/params.h"
#include "parallel/token_dispatcher.h"

namespace moe::model {

struct MoeDims {
  int64_t d = 0;
  int64_t expert_inter = 0;   // moe_intermediate_size
  kernels::RouterParams router;
  bool has_correction_bias = true;  // topk_method == noaux_tc
  float aux_loss_alpha = 0.0f;      // sequence-wise balance loss weight (0: off)
  bool seq_aux = true;              // per sequence (true) or over the whole micro-batch
  // > 0: each expert takes at most ceil(factor · n · K / E) of this rank's n tokens (the first ones in
  // token order, GShard-style); the rest of its assignments are dropped (their gate weight has no
  // effect). 0: dropless (the default; layout-independent).
  double capacity_factor = 0.0;
};

// Rows sorted by expert: row r holds (token row_token[r], slot row_slot[r] = token·K + k), built where the
// ops run (Backend::SortByExpert). Only the per-expert counts come to the host: they size the all-to-all
// and the grouped GEMM, as in Megatron's all-to-all dispatcher.
struct RoutingPlan {
  Buffer<int32_t> counts;               // [E] assignments per expert, before the capacity cut
  Buffer<int32_t> row_token;            // [R] (sized n·K: the first R are the plan)
  Buffer<int32_t> row_slot;             // [R] (likewise)
  std::vector<int64_t> expert_offsets;  // [E + 1] over the kept rows (host)
  int64_t dropped = 0;                  // (token, slot) assignments over capacity, not in the plan
  int64_t rows() const { return expert_offsets.empty() ? 0 : expert_offsets.back(); }
};

// Where this rank's tokens sit in the micro-batch (sequence parallelism): tokens
// [token_offset, token_offset + n) of the B·T micro-batch tokens.
struct TokenSlice {
  int64_t batch = 0, seq = 0;  // the whole micro-batch's B and T
  int64_t token_offset = 0;
  int64_t num_tokens = 0;      // n
};

class MoeLayer {
 public:
  struct Saved {
    TokenSlice slice;
    Buffer<float> scores;          // [n, E]
    Buffer<int32_t> selected;      // [n, K]
    Buffer<float> weights;         // [n, K]
    RoutingPlan plan;
    Buffer<float> row_weight;      // [R] the gate weight of each sorted row
    parallel::DispatchHandle handle;
    SavedActivation x_grouped;     // [R', d]
    SavedActivation a, c, m;       // [R', Ie]
    SavedActivation y_sorted;      // [R, d]
    Buffer<double> balance_stats;  // [2, groups, E] (balance loss only)
    Buffer<float> balance_f;       // [groups, E] f_i of each group (balance loss only)
    int64_t Bytes() const {
      return BufferBytes(scores, selected, weights, row_weight, x_grouped, a, c, m, y_sorted, balance_stats,
                         balance_f, plan.counts, plan.row_token, plan.row_slot);
    }
  };

  // Registers the router and this EP rank's experts (ctx.ep decides which).
  MoeLayer(ParamStore& store, const std::string& prefix, const MoeDims& dims,
           parallel::Communicator* ep);

  // out [n, d] written (routed experts only). Returns the micro-batch's balance loss (0 if alpha == 0;
  // the same value on every TP rank). Adds this rank's (token, slot) counts per global expert to
  // `expert_counts` [E].
  double Forward(const LayerContext& ctx, const float* u, const TokenSlice& slice, float* out,
                 Saved* saved, int64_t* expert_counts) const;
  // Assignments dropped by the capacity limit in the last Forward (0 when dropless).
  static int64_t Dropped(const Saved& saved) { return saved.plan.dropped; }
  // d_u [n, d] written. `loss_scale` multiplies the balance loss's own gradient (the same factor the
  // caller applied to the main loss). `u` must be the input Forward saw; it only feeds the router's
  // weight gradient, so it may be given as BF16 bits alone (u_bf16 set, u null).
  void Backward(const LayerContext& ctx, const float* u, const Saved& saved, const float* d_out,
                float loss_scale, float* d_u, const uint16_t* u_bf16 = nullptr);

  Param* correction_bias() { return bias_; }

 private:
  // The local experts on x_grouped [R', d]; their outputs, combined back to this rank's sorted rows, into
  // y_sorted [R, d].
  void ExpertsForward(const LayerContext& ctx, const float* x_grouped, float* y_sorted, Saved* s) const;
  // From the statistics of ops.BalanceStats (copied to the host), summed over TP; sets balance_f.
  double BalanceLoss(const LayerContext& ctx, Saved* s) const;

  MoeDims dims_;
  parallel::TokenDispatcher dispatcher_;
  Param* gate_ = nullptr;  // [E, d]
  Param* bias_ = nullptr;  // [E] e_score_correction_bias (noaux_tc only)
  // This EP rank's experts, local index j = global expert first_local_expert + j.
  std::vector<Param*> expert_gate_, expert_up_, expert_down_;  // [Ie, d], [Ie, d], [d, Ie]
};

}  // namespace moe::model
