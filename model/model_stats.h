// Model size accounting from the config alone (no tensors): parameter counts (the tensor shapes of
// docs/model.md "Hugging Face checkpoints", the counts of its "Reference configurations"), training FLOPs
// per token for MFU (the formula of "Reference configurations"), a per-rank memory estimate for a
// parallel layout, and the one-object JSON summary that `train --dry_run` prints.
//
// Counting rule: the main model is the embedding, every decoder layer, the final norm and lm_head; the
// e_score_correction_bias buffers are not parameters (not trained by gradients) and are excluded; the MTP
// modules are counted separately as their unique parameters (enorm, hnorm, eh_proj, the decoder layer,
// shared_head.norm), not the embedding/head copies a checkpoint stores under the MTP layer's name.
#pragma once

#include <cstdint>
#include <string>

#include "configs/config.pb.h"

namespace moe::model {

struct ParamCounts {
  int64_t total = 0;      // main model, MTP excluded (V3: 671,026,404,352)
  int64_t embedding = 0;  // model.embed_tokens.weight [V, d]
  int64_t lm_head = 0;    // lm_head.weight [V, d] (0 if tied, which the loader refuses today)
  int64_t mtp = 0;        // unique parameters of all MTP modules (V3: 11,610,067,968)
  // Parameters one token touches in the main model: everything except the routed experts it does not use
  // (K of Nr routed experts per MoE layer; router and shared experts included).
  int64_t activated_with_embedding = 0;     // ... counting the embedding table and lm_head
  int64_t activated_without_embedding = 0;  // ... lm_head counted, embedding table not
  // The activated parameters that take part in matrix products (all attention projections, dense FFN,
  // router, K routed + shared experts, lm_head): no embedding lookup, no norm weights.
  int64_t activated_matmul = 0;
  // Breakdown used by the memory estimate (main model + MTP together).
  int64_t routed_experts = 0;     // all routed-expert matrices, divided over EP ranks
  int64_t tp_split = 0;           // matrices split over TP ranks (q_b/q_proj, kv_b, o_proj, dense FFN, shared experts)
  int64_t replicated = 0;         // everything else: embedding, lm_head, norms, q_a, kv_a, router, eh_proj
};

// docs/model.md "SwiGLU and MoE layers": layer `layer` (0-based; MTP layers are numbered L..L+D-1) has an
// MoE FFN iff n_routed_experts is set, layer >= first_k_dense_replace and layer % moe_layer_freq == 0.
bool IsMoeLayer(const moe::config::ModelConfig& m, int64_t layer);

ParamCounts CountParameters(const moe::config::ModelConfig& m);

// docs/model.md "Reference configurations": 6 * N_act_matmul + 6 * sum_layers H * (T/2) * (dqk + dv),
// per trained token at sequence length T = seq_len. With include_mtp, each MTP depth adds its eh_proj,
// its decoder layer (activated) and one more product with the shared lm_head (that product is really
// computed again per depth), and its attention term at length T (the T-k positions it actually sees
// differ by a negligible k).
double TrainingFlopsPerToken(const moe::config::ModelConfig& m, int64_t seq_len, bool include_mtp);

// Bytes per rank for the configured layout (see model_stats.cc for the activation formula).
struct MemoryEstimate {
  double weights_bytes = 0;      // working copy: BF16 (2 B/param) or FP32 (4 B) of what this rank holds
  double grads_bytes = 0;        // FP32 gradients of what this rank holds
  double optimizer_bytes = 0;    // FP32 master + Adam m + v (12 B/param), ZeRO-1 sharded
  double activations_bytes = 0;  // what forward keeps for backward, one micro-batch
  double total_bytes = 0;
};

MemoryEstimate EstimateMemoryPerRank(const moe::config::TrainConfig& cfg);

// One JSON object (keys: model_type, total_params, mtp_params, activated_params_per_token,
// activated_params_per_token_with_embedding, counting_rule, training_flops_per_token, seq_len,
// layout {dp, tp, ep, world}, memory_per_rank_bytes {weights, grads, optimizer, activations, total}).
std::string DryRunJson(const moe::config::TrainConfig& cfg);

}  // namespace moe::model
