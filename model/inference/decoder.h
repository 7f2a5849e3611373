// Token-by-token inference with the absorbed Multi-head Latent Attention cache (docs/model.md "Attention
// with an absorbed latent cache").
//
// Per layer and cached token the decoder keeps only cKV_t (the KV latent after kv_a_layernorm, [rkv])
// and the rotated shared RoPE key kR_t ([dr]): L·(rkv+dr) floats per token instead of the L·H·(dqk+dv)
// of a full multi-head K/V cache (576 vs 40,960 numbers per layer for DeepSeek-V3). kv_b_proj is never
// applied to the cache; its per-head blocks are folded into the query and the output instead:
//   W_UK_h = kv_b_proj rows h·(dn+dv)+[0,dn)   [dn, rkv]     W_UV_h = rows h·(dn+dv)+[dn,dn+dv)   [dv, rkv]
//   q̃_h = W_UK_hᵀ qN_h [rkv];   S_h,s = scale·(q̃_h·cKV_s + qR_h·kR_s);   P_h = softmax_s(S_h)
//   ō_h = Σ_s P_h,s cKV_s [rkv];   o_h = W_UV_h ō_h [dv];   out = [o_0; …; o_{H-1}] o_projᵀ
// Everything else (norms, query path with or without q LoRA, dense SwiGLU, router with correction bias,
// routed and shared experts, final norm, head) is the model's math for one token (model/model.cc), on
// the backend's ops. In BF16 mode activations are rounded where the training forward stores them; the
// absorbed attention never materialises per-head K/V, so BF16 results are close to, not bit-equal to,
// the training forward's (FP32 matches it to rounding).
//
// Several tokens can go through in one pass (Forward): each attends to the cache and to the tokens before
// it, as speculative decoding's verification needs; Truncate drops rejected ones. With
// DecoderOptions::mtp the multi-token-prediction modules (model/mtp.h) decode too, each with its own
// cache over its own positions (MtpForward), to draft tokens (model/inference/speculative.h).
//
// Single process only: the parameters must be whole tensors (no tensor or expert parallelism). The
// decoder reads the parameters' working copies and the RoPE tables by reference; both must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "kernels/backend.h"
#include "model/layer_context.h"
#include "model/params.h"
#include "model/rope.h"

namespace moe::inference {

struct DecoderOptions {
  // Most tokens the cache may hold (positions 0 .. max_length-1). 0: the RoPE tables' size. It may not
  // exceed the tables' size.
  int64_t max_length = 0;
  model::Numerics numerics = model::Numerics::kFp32;
  // Also load the config's num_nextn_predict_layers MTP modules (their tensors must be present).
  bool mtp = false;
};

// The result of a pass over n tokens (or MTP positions): FP32 logits [n, V] and the final-normed hidden
// states [n, d] (h^0 for the main model, h^k for MTP module k).
struct DecodeOutput {
  int64_t n = 0;
  std::vector<float> logits;
  std::vector<float> hidden;
  std::vector<float> LogitsRow(int64_t i, int64_t vocab) const {
    return std::vector<float>(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
  }
};

class IncrementalDecoder {
 public:
  // Checks that every tensor the config implies is present, whole and of the right shape (errors name
  // the tensor) and precomputes the per-head W_UK / W_UV views of every kv_b_proj.
  static absl::StatusOr<std::unique_ptr<IncrementalDecoder>> Create(const config::ModelConfig& cfg,
                                                                     const model::ParamStore& params,
                                                                     kernels::Backend* ops,
                                                                     const model::RopeTables& rope,
                                                                     DecoderOptions options = {});
  ~IncrementalDecoder();

  // Appends `token` at position position() and returns its FP32 logits [V] (the next-token
  // distribution). Errors: a token outside [0, V); a position at or beyond max_length().
  absl::StatusOr<std::vector<float>> Step(int32_t token);
  // Appends tokens at positions position() .. position()+n-1 in one pass (token i attends to the cache
  // and to tokens 0..i); their logits and hidden states. Errors as Step's.
  absl::StatusOr<DecodeOutput> Forward(const std::vector<int32_t>& tokens);
  // Keeps only positions [0, length) of the cache (length <= position()).
  void Truncate(int64_t length);
  // Steps through every prompt token; returns the last one's logits. An empty prompt is an error.
  absl::StatusOr<std::vector<float>> Prefill(const std::vector<int32_t>& prompt);
  // Empties the cache (position() becomes 0).
  void Reset();

  int64_t position() const { return position_; }  // tokens in the cache
  int64_t max_length() const { return max_length_; }

  // Bytes of cache one token occupies: L·(rkv+dr)·4 (FP32).
  int64_t CacheBytesPerToken() const { return AbsorbedCacheBytesPerToken(cfg_); }
  // Bytes the cache holds now: position() · CacheBytesPerToken().
  int64_t CacheBytesInUse() const { return position_ * CacheBytesPerToken(); }

  // Multi-token prediction (DecoderOptions::mtp): module k (1-based) takes, at its next n positions,
  // h^{k-1} [n, d] (the main model's `hidden` for k = 1, module k-1's for k > 1) and the ids of
  // x_{t+k} [n]; returns the logits of x_{t+k+1} and h^k. Each module's cache is its own.
  int64_t mtp_depths() const { return static_cast<int64_t>(mtp_.size()); }
  int64_t mtp_position(int64_t k) const;
  absl::StatusOr<DecodeOutput> MtpForward(int64_t k, const std::vector<float>& h_prev,
                                          const std::vector<int32_t>& tokens);
  void MtpTruncate(int64_t k, int64_t length);

  // L·(rkv+dr)·4 bytes: the absorbed latent cache (cKV and the rotated kR) in FP32.
  static int64_t AbsorbedCacheBytesPerToken(const config::ModelConfig& cfg);
  // L·H·(dqk+dv)·4 bytes: a full multi-head cache of K [H, dqk] and V [H, dv] in FP32.
  static int64_t FullMhaCacheBytesPerToken(const config::ModelConfig& cfg);

 private:
  struct Layer;
  struct MtpModule;
  IncrementalDecoder(const config::ModelConfig& cfg, kernels::Backend* ops, const model::RopeTables& rope,
                     DecoderOptions options);
  static absl::StatusOr<std::unique_ptr<Layer>> CreateLayer(const config::ModelConfig& cfg,
                                                            const model::ParamStore& params, int64_t l);
  absl::Status CheckTokens(const std::vector<int32_t>& tokens, int64_t position) const;
  // One decoder block on h [n, d] (in place) for positions position .. position+n-1, appending to its cache.
  void Block(Layer& layer, int64_t position, float* h, int64_t n);
  void Attention(Layer& layer, int64_t position, const float* u, int64_t n, float* out);
  void FeedForward(const Layer& layer, const float* u, int64_t n, float* out);
  // y [n, out] = x [n, in] Wᵀ (W [out, in], the working copy).
  void Linear(const model::Param& w, const float* x, int64_t n, float* y);
  // The final norm (`norm`) and the head on h [n, d].
  DecodeOutput Head(const model::Param& norm, const float* h, int64_t n);
  void Store(float* x, int64_t n) const;

  config::ModelConfig cfg_;
  kernels::Backend* ops_;
  const model::RopeTables& rope_;
  bool bf16_;
  int64_t max_length_;
  int64_t position_ = 0;
  float softmax_scale_;
  kernels::RouterParams router_;
  const model::Param* embed_ = nullptr;       // [V, d]
  const model::Param* final_norm_ = nullptr;  // [d]
  const model::Param* lm_head_ = nullptr;     // [V, d]
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::unique_ptr<MtpModule>> mtp_;
};

}  // namespace moe::inference
