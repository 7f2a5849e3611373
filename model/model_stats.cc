// Parameter counts, FLOPs and memory from the config (see model_stats.h). Every count follows the tensor
// shapes of docs/model.md "Hugging Face checkpoints"; symbols as in its "Notation" (d, V, H, dn, dr, dv,
// rq, rkv, I, Ie, Nr, Ns, K, L, D).
#include "model/model_stats.h"

#include "base/json.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe::model {
namespace {

using moe::config::ModelConfig;
using moe::config::TrainConfig;

// Parameters of one decoder layer, split by how they are used and distributed.
struct LayerParams {
  // Attention.
  int64_t attn_split = 0;       // q_b_proj (or q_proj), kv_b_proj, o_proj: split over TP (heads)
  int64_t attn_replicated = 0;  // q_a_proj, kv_a_proj_with_mqa: the latent down-projections
  int64_t norms = 0;            // input/post-attention layernorms, q_a/kv_a layernorms
  // FFN.
  int64_t dense = 0;          // gate/up/down of a dense layer [I, d] x2 + [d, I]
  int64_t router = 0;         // gate.weight [Nr, d]
  int64_t expert = 0;         // one routed expert: 3 * Ie * d
  int64_t num_experts = 0;    // Nr (0 for a dense layer)
  int64_t shared = 0;         // shared experts merged: 3 * (Ns * Ie) * d
  int64_t experts_per_tok = 0;  // K

  int64_t Total() const {
    return attn_split + attn_replicated + norms + dense + router + num_experts * expert + shared;
  }
  int64_t Activated() const {
    return attn_split + attn_replicated + norms + dense + router + experts_per_tok * expert + shared;
  }
  int64_t ActivatedMatmul() const { return Activated() - norms; }
};

LayerParams CountLayer(const ModelConfig& m, int64_t layer) {
  const int64_t d = m.hidden_size(), h = m.num_attention_heads();
  const int64_t dn = m.qk_nope_head_dim(), dr = m.qk_rope_head_dim(), dv = m.v_head_dim();
  const int64_t dqk = dn + dr, rkv = m.kv_lora_rank();
  LayerParams p;
  p.norms = 2 * d + rkv;  // input_layernorm, post_attention_layernorm, kv_a_layernorm
  if (m.has_q_lora_rank()) {
    const int64_t rq = m.q_lora_rank();
    p.attn_replicated += rq * d;  // q_a_proj [rq, d]
    p.norms += rq;                // q_a_layernorm [rq]
    p.attn_split += h * dqk * rq;  // q_b_proj [H*dqk, rq]
  } else {
    p.attn_split += h * dqk * d;  // q_proj [H*dqk, d]
  }
  p.attn_replicated += (rkv + dr) * d;  // kv_a_proj_with_mqa [rkv+dr, d]
  p.attn_split += h * (dn + dv) * rkv;  // kv_b_proj [H*(dn+dv), rkv]
  p.attn_split += d * h * dv;           // o_proj [d, H*dv]
  if (IsMoeLayer(m, layer)) {
    const int64_t ie = m.moe_intermediate_size();
    p.num_experts = m.n_routed_experts();
    p.experts_per_tok = m.num_experts_per_tok();
    p.router = p.num_experts * d;  // gate.weight [Nr, d]; e_score_correction_bias excluded
    p.expert = 3 * ie * d;
    p.shared = 3 * m.n_shared_experts() * ie * d;
  } else {
    p.dense = 3 * m.intermediate_size() * d;
  }
  return p;
}

// One MTP module's own parameters besides its decoder layer: enorm, hnorm, eh_proj [d, 2d], shared_head.norm.
int64_t MtpExtraNorms(const ModelConfig& m) { return 3 * m.hidden_size(); }
int64_t MtpEhProj(const ModelConfig& m) { return 2 * m.hidden_size() * m.hidden_size(); }

int64_t ActivationBytesPerElement(const TrainConfig& cfg) {
  return cfg.precision() == moe::config::FP32 ? 4 : 2;
}


}  // namespace

bool IsMoeLayer(const ModelConfig& m, int64_t layer) {
  return m.has_n_routed_experts() && m.n_routed_experts() > 0 && layer >= m.first_k_dense_replace() &&
         m.moe_layer_freq() > 0 && layer % m.moe_layer_freq() == 0;
}

ParamCounts CountParameters(const ModelConfig& m) {
  ParamCounts c;
  const int64_t d = m.hidden_size(), v = m.vocab_size();
  const int64_t num_layers = m.num_hidden_layers(), depth = std::max<int64_t>(0, m.num_nextn_predict_layers());
  c.embedding = v * d;
  c.lm_head = m.tie_word_embeddings() ? 0 : v * d;
  const int64_t final_norm = d;
  c.total = c.embedding + c.lm_head + final_norm;
  c.activated_with_embedding = c.total;
  c.activated_matmul = c.lm_head;
  c.replicated = c.embedding + c.lm_head + final_norm;
  auto add_distribution = [&c](const LayerParams& p) {
    c.routed_experts += p.num_experts * p.expert;
    c.tp_split += p.attn_split + p.dense + p.shared;
    c.replicated += p.attn_replicated + p.norms + p.router;
  };
  for (int64_t l = 0; l < num_layers; ++l) {
    const LayerParams p = CountLayer(m, l);
    c.total += p.Total();
    c.activated_with_embedding += p.Activated();
    c.activated_matmul += p.ActivatedMatmul();
    add_distribution(p);
  }
  c.activated_without_embedding = c.activated_with_embedding - c.embedding;
  for (int64_t k = 0; k < depth; ++k) {
    const LayerParams p = CountLayer(m, num_layers + k);
    c.mtp += MtpExtraNorms(m) + MtpEhProj(m) + p.Total();
    add_distribution(p);
    c.replicated += MtpExtraNorms(m) + MtpEhProj(m);
  }
  return c;
}

double TrainingFlopsPerToken(const ModelConfig& m, int64_t seq_len, bool include_mtp) {
  const ParamCounts c = CountParameters(m);
  const double h = static_cast<double>(m.num_attention_heads());
  const double dqk = static_cast<double>(m.qk_nope_head_dim() + m.qk_rope_head_dim());
  const double dv = static_cast<double>(m.v_head_dim());
  const double t = static_cast<double>(seq_len);
  // Causal attention: on average T/2 keys per query, QK^T (dqk) and PV (dv) multiply-adds per head.
  const double attention_per_layer = 6.0 * h * (t / 2.0) * (dqk + dv);
  double matmul = static_cast<double>(c.activated_matmul);
  double layers = static_cast<double>(m.num_hidden_layers());
  if (include_mtp) {
    for (int64_t k = 0; k < m.num_nextn_predict_layers(); ++k) {
      const LayerParams p = CountLayer(m, m.num_hidden_layers() + k);
      matmul += static_cast<double>(MtpEhProj(m) + p.ActivatedMatmul() + c.lm_head);
      layers += 1;
    }
  }
  return 6.0 * matmul + layers * attention_per_layer;
}

// Activation estimate (elements kept for backward per micro-batch, per rank; n = micro_batch_size * seq_len
// tokens, t = TP size; sequence parallelism gives each TP rank n/t tokens outside the TP-split blocks):
//   per decoder layer:
//     residual-stream tensors (layer input, the two norm outputs, attention output)   4 * d * n / t
//     gathered attention input (all-gather before the column-parallel block)           d * n
//     latents (q latent and its norm, kv_a output, normed kv latent)                   (2 rq + rkv + dr + rkv) * n
//     per-head q, k (dqk each), v, o (dv each) for this rank's H/t heads                (H/t)(2 dqk + 2 dv) * n
//     attention softmax state, FP32: on CPU the probabilities [B, H/t, T, T] (the CPU
//       kernels are not fused and keep them); on CUDA a fused (flash-style) kernel keeps
//       only the row log-sum-exp [B, H/t, T]                                               4 bytes each
//     dense FFN: gathered input is shared with the above; gate, up, silu*up             3 (I/t) * n
//     MoE: router scores FP32 (Nr per token), dispatched token copies and each selected
//          expert's gate/up/product (K (d + 3 Ie) per local token), shared expert
//          on gathered tokens 3 (Ns Ie / t) * n                                         (n/t) tokens routed
//   head: final norm d * n / t, FP32 logits V * n (kept for the softmax gradient);
//   each MTP depth: eh_proj input 2 d * n / t, one more decoder layer, one more set of FP32 logits.
// Elements are BF16 (2 B) in BF16 mode and FP32 in FP32 mode except where FP32 is stated. This is an
// estimate of a straightforward implementation (no recomputation), not a measurement.
MemoryEstimate EstimateMemoryPerRank(const TrainConfig& cfg) {
  const ModelConfig& m = cfg.model();
  const ParamCounts c = CountParameters(m);
  const double dp = static_cast<double>(std::max<int64_t>(1, cfg.parallel().dp()));
  const double tp = static_cast<double>(std::max<int64_t>(1, cfg.parallel().tp()));
  const double ep = static_cast<double>(std::max<int64_t>(1, cfg.parallel().ep()));
  const double world = dp * tp;
  const double expert_dp = std::max(1.0, world / ep);  // replicas of each expert (expert-data-parallel group)

  const double dense_held = static_cast<double>(c.replicated) + static_cast<double>(c.tp_split) / tp;
  const double experts_held = static_cast<double>(c.routed_experts) / ep;
  const double held = dense_held + experts_held;
  const double weight_bytes = cfg.precision() == moe::config::FP32 ? 4.0 : 2.0;

  MemoryEstimate e;
  e.weights_bytes = held * weight_bytes;
  e.grads_bytes = held * 4.0;
  e.optimizer_bytes = 12.0 * (dense_held / dp + experts_held / expert_dp);

  const double act = static_cast<double>(ActivationBytesPerElement(cfg));
  const double b = static_cast<double>(cfg.batch().micro_batch_size());
  const double t = static_cast<double>(cfg.batch().seq_len());
  const double n = b * t;
  const double d = static_cast<double>(m.hidden_size());
  const double h_local = static_cast<double>(m.num_attention_heads()) / tp;
  const double dqk = static_cast<double>(m.qk_nope_head_dim() + m.qk_rope_head_dim());
  const double dv = static_cast<double>(m.v_head_dim());
  const double rq = m.has_q_lora_rank() ? static_cast<double>(m.q_lora_rank()) : 0.0;
  const double rkv = static_cast<double>(m.kv_lora_rank());
  const double dr = static_cast<double>(m.qk_rope_head_dim());
  const double v = static_cast<double>(m.vocab_size());
  const bool fused_attention = cfg.device() == moe::config::CUDA;
  auto layer_bytes = [&](int64_t layer) {
    double elems = 4.0 * d * n / tp + d * n + (2.0 * rq + 2.0 * rkv + dr) * n + h_local * (2.0 * dqk + 2.0 * dv) * n;
    double fp32_bytes = 4.0 * h_local * b * t * (fused_attention ? 1.0 : t);
    if (IsMoeLayer(m, layer)) {
      const double local_tokens = n / tp;
      const double ie = static_cast<double>(m.moe_intermediate_size());
      const double k = static_cast<double>(m.num_experts_per_tok());
      fp32_bytes += 4.0 * static_cast<double>(m.n_routed_experts()) * local_tokens;
      elems += local_tokens * k * (d + 3.0 * ie);
      elems += 3.0 * static_cast<double>(m.n_shared_experts()) * ie / tp * n;
    } else {
      elems += 3.0 * static_cast<double>(m.intermediate_size()) / tp * n;
    }
    return elems * act + fp32_bytes;
  };
  double bytes = 0;
  for (int64_t l = 0; l < m.num_hidden_layers(); ++l) bytes += layer_bytes(l);
  bytes += d * n / tp * act + 4.0 * v * n;
  for (int64_t k = 0; k < m.num_nextn_predict_layers(); ++k) {
    bytes += layer_bytes(m.num_hidden_layers() + k) + 2.0 * d * n / tp * act + 4.0 * v * n;
  }
  e.activations_bytes = bytes;
  e.total_bytes = e.weights_bytes + e.grads_bytes + e.optimizer_bytes + e.activations_bytes;
  return e;
}

std::string DryRunJson(const TrainConfig& cfg) {
  const ModelConfig& m = cfg.model();
  const ParamCounts c = CountParameters(m);
  const MemoryEstimate mem = EstimateMemoryPerRank(cfg);
  const int64_t dp = cfg.parallel().dp(), tp = cfg.parallel().tp(), ep = cfg.parallel().ep();
  const double flops = TrainingFlopsPerToken(m, cfg.batch().seq_len(), /*include_mtp=*/true);
  std::string out = "{";
  absl::StrAppend(&out, "\"model_type\": ", JsonQuote(m.model_type()), ", ");
  absl::StrAppend(&out, "\"total_params\": ", c.total, ", ");
  absl::StrAppend(&out, "\"mtp_params\": ", c.mtp, ", ");
  absl::StrAppend(&out, "\"activated_params_per_token\": ", c.activated_without_embedding, ", ");
  absl::StrAppend(&out, "\"activated_params_per_token_with_embedding\": ", c.activated_with_embedding, ", ");
  absl::StrAppend(&out,
                  "\"counting_rule\": \"total: main model (embedding, layers, final norm, lm_head), "
                  "e_score_correction_bias buffers excluded; mtp_params: unique MTP parameters, counted "
                  "separately; activated: per token, K routed + shared experts and router of each MoE layer "
                  "plus all non-expert parameters, lm_head counted, embedding counted only in "
                  "_with_embedding; flops: 6 * activated matmul params + causal attention, MTP included\", ");
  absl::StrAppend(&out, "\"training_flops_per_token\": ", JsonNumber(flops), ", ");
  absl::StrAppend(&out, "\"seq_len\": ", cfg.batch().seq_len(), ", ");
  absl::StrAppend(&out, "\"layout\": {\"dp\": ", dp, ", \"tp\": ", tp, ", \"ep\": ", ep,
                  ", \"world\": ", dp * tp, "}, ");
  absl::StrAppend(&out, "\"memory_per_rank_bytes\": {\"weights\": ", JsonNumber(std::round(mem.weights_bytes)),
                  ", \"grads\": ", JsonNumber(std::round(mem.grads_bytes)),
                  ", \"optimizer\": ", JsonNumber(std::round(mem.optimizer_bytes)),
                  ", \"activations\": ", JsonNumber(std::round(mem.activations_bytes)),
                  ", \"total\": ", JsonNumber(std::round(mem.total_bytes)), "}");
  out += "}";
  return out;
}

}  // namespace moe::model
