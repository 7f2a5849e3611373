// Multi-head Latent Attention (docs/model.md "Multi-head Latent Attention"), training form (no weight
// absorption).
//
// Shapes for n = B·T tokens of the normed input u [n, d]:
//   q LoRA:  qa = u q_a_projᵀ [n, rq] -> cq = RMSNorm(qa) [n, rq] -> q = cq q_b_projᵀ [n, H·dqk]
//   else:    q = u q_projᵀ [n, H·dqk]
//   a = u kv_a_proj_with_mqaᵀ [n, rkv+dr];  ckv = RMSNorm(a[:, :rkv]) [n, rkv];  kr = a[:, rkv:] [n, dr]
//   kv = ckv kv_b_projᵀ [n, H·(dn+dv)]
//   Q [n, H, dqk] = [qN ; RoPE(qR)],  K [n, H, dqk] = [kN ; RoPE(kr) shared by heads],  V [n, H, dv]
//   O = causal softmax(scale Q Kᵀ) V [n, H, dv];  out = O o_projᵀ [n, d]
// Tensor parallelism splits the heads: TP rank r holds heads [r·H/tp, (r+1)·H/tp) of q_b_proj (or
// q_proj) and kv_b_proj (column-parallel) and the matching columns of o_proj (row-parallel), so `out`
// is a partial sum over TP ranks. The down-projections and latent norms are replicated; their
// gradients (and d_u) are partial sums too, completed by the caller's reduce-scatter / TP reduction.
// Below, H is the local head count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/layer_context.h"
#include "model/saved_activation.h"
#include "model/params.h"
#include "model/rope.h"

namespace moe::model {

struct MlaDims {
  int64_t d = 0, heads = 0 /* global */, q_lora_rank = 0 /* 0: q_proj */, kv_lora_rank = 0;
  int64_t nope_dim = 0, rope_dim = 0, v_dim = 0;
  float softmax_scale = 1.0f;
  TpSlice tp;
  int64_t qk_dim() const { return nope_dim + rope_dim; }
  int64_t local_heads() const { return heads / tp.size; }
};

class MlaAttention {
 public:
  // What Backward needs, saved by Forward.
  struct Saved {
    int64_t batch = 0, seq = 0;
    SavedActivation qa;         // [n, rq]   (q LoRA only)
    Buffer<float> qa_rstd;      // [n]
    SavedActivation cq;         // [n, rq]
    SavedActivation ckv_in;     // [n, rkv]  latent before its norm
    Buffer<float> ckv_rstd;     // [n]
    SavedActivation ckv;        // [n, rkv]
    SavedActivation q;          // [n, H, dqk] with RoPE applied
    SavedActivation k;          // [n, H, dqk] with RoPE applied
    SavedActivation v;          // [n, H, dv]
    SavedActivation o;          // [n, H, dv]
    Buffer<float> lse;          // [B, H, T]
    int64_t Bytes() const { return BufferBytes(qa, qa_rstd, cq, ckv_in, ckv_rstd, ckv, q, k, v, o, lse); }
  };

  MlaAttention(ParamStore& store, const std::string& prefix, const MlaDims& dims);

  // out [n, d] is written. u_bf16 (may be null): u's values as BF16 bits (the caller keeps u as a
  // saved activation), which the input projections then read in place.
  void Forward(const LayerContext& ctx, const RopeTables& rope, const int32_t* positions,
               const float* u, int64_t batch, int64_t seq, float* out, Saved* saved,
               const uint16_t* u_bf16 = nullptr) const;
  // d_u [n, d] is written; parameter gradients are accumulated. u only feeds the weight gradients, so
  // it may be given as BF16 bits alone (u_bf16 set, u null).
  void Backward(const LayerContext& ctx, const RopeTables& rope, const int32_t* positions,
                const float* u, const Saved& saved, const float* d_out, float* d_u,
                const uint16_t* u_bf16 = nullptr);

 private:
  kernels::RopeView QueryRopeView(const RopeTables& rope, const int32_t* positions, float* q,
                                  int64_t n) const;
  kernels::RopeView KeyRopeView(const RopeTables& rope, const int32_t* positions, float* kr,
                                int64_t n) const;

  MlaDims dims_;
  Param* q_a_proj_ = nullptr;       // [rq, d]
  Param* q_a_layernorm_ = nullptr;  // [rq]
  Param* q_b_proj_ = nullptr;       // [H·dqk, rq]
  Param* q_proj_ = nullptr;         // [H·dqk, d] (no q LoRA)
  Param* kv_a_proj_ = nullptr;      // [rkv+dr, d]
  Param* kv_a_layernorm_ = nullptr; // [rkv]
  Param* kv_b_proj_ = nullptr;      // [H·(dn+dv), rkv]
  Param* o_proj_ = nullptr;         // [d, H·dv]
};

// The latent norms use eps 1e-6 regardless of rms_norm_eps (docs/model.md "RMSNorm" and "Decisions where
// sources differ" (17)).
inline constexpr float kLatentNormEps = 1e-6f;

}  // namespace moe::model
