#include "model/inference/decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status.h"
#include "model/attention.h"  // kLatentNormEps
#include "model/model.h"      // RouterParamsFrom
#include "model/model_stats.h"

namespace moe::inference {

using kernels::GemmProblem;
using kernels::Transpose;
using model::Param;

// One decoder block's weights (working copies, by reference) and its slice of the latent cache.
struct IncrementalDecoder::Layer {
  const Param* input_norm = nullptr;  // [d]
  const Param* post_norm = nullptr;   // [d]
  // Attention.
  const Param* q_a_proj = nullptr;        // [rq, d]      (q LoRA)
  const Param* q_a_norm = nullptr;        // [rq]
  const Param* q_b_proj = nullptr;        // [H·dqk, rq]
  const Param* q_proj = nullptr;          // [H·dqk, d]   (no q LoRA)
  const Param* kv_a_proj = nullptr;       // [rkv+dr, d]
  const Param* kv_a_norm = nullptr;       // [rkv]
  const Param* kv_b_proj = nullptr;       // [H·(dn+dv), rkv]
  const Param* o_proj = nullptr;          // [d, H·dv]
  std::vector<const float*> w_uk;         // [H] views into kv_b_proj, each [dn, rkv] (row stride rkv)
  std::vector<const float*> w_uv;         // [H] views into kv_b_proj, each [dv, rkv]
  // The cache: positions 0 .. position()-1.
  std::vector<float> ckv;                 // [T, rkv] cKV_t after kv_a_layernorm
  std::vector<float> kr;                  // [T, dr]  kR_t after RoPE
  // FFN: dense SwiGLU, or in MoE layers the shared expert (null when there is none).
  const Param* gate_proj = nullptr;       // [I, d]
  const Param* up_proj = nullptr;         // [I, d]
  const Param* down_proj = nullptr;       // [d, I]
  // MoE layers: router and routed experts.
  const Param* router = nullptr;          // [E, d]
  const Param* bias = nullptr;            // [E] e_score_correction_bias (noaux_tc)
  std::vector<const Param*> expert_gate, expert_up, expert_down;  // [E] of [Ie, d], [Ie, d], [d, Ie]
};

namespace {

std::string ShapeString(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// The tensor `name`, whole (not a tensor-parallel slice) and of shape `shape`.
absl::StatusOr<const Param*> Require(const model::ParamStore& params, const std::string& name,
                                     const std::vector<int64_t>& shape) {
  const Param* p = params.Find(name);
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("decoder: the model has no tensor ", name));
  if (p->global_shape() != p->shape) {  // a one-rank group's "slice" is the whole tensor
    return absl::FailedPreconditionError(absl::StrCat(
        "decoder: ", name, " is a tensor-parallel slice; the incremental decoder runs on one process"));
  }
  if (p->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("decoder: ", name, " has shape ", ShapeString(p->shape),
                                                   ", the config implies ", ShapeString(shape)));
  }
  if (static_cast<int64_t>(p->working.size()) != p->numel()) {
    return absl::FailedPreconditionError(absl::StrCat("decoder: ", name, " has no working copy"));
  }
  return p;
}

}  // namespace

int64_t IncrementalDecoder::AbsorbedCacheBytesPerToken(const config::ModelConfig& cfg) {
  return cfg.num_hidden_layers() * (cfg.kv_lora_rank() + cfg.qk_rope_head_dim()) *
         static_cast<int64_t>(sizeof(float));
}

int64_t IncrementalDecoder::FullMhaCacheBytesPerToken(const config::ModelConfig& cfg) {
  const int64_t dqk = cfg.qk_nope_head_dim() + cfg.qk_rope_head_dim();
  return cfg.num_hidden_layers() * cfg.num_attention_heads() * (dqk + cfg.v_head_dim()) *
         static_cast<int64_t>(sizeof(float));
}

IncrementalDecoder::IncrementalDecoder(const config::ModelConfig& cfg, kernels::Backend* ops,
                                       const model::RopeTables& rope, DecoderOptions options)
    : cfg_(cfg),
      ops_(ops),
      rope_(rope),
      bf16_(options.numerics == model::Numerics::kBf16),
      max_length_(options.max_length > 0 ? options.max_length : rope.max_positions),
      softmax_scale_(static_cast<float>(model::SoftmaxScale(cfg))),
      router_(model::RouterParamsFrom(cfg)) {}

IncrementalDecoder::~IncrementalDecoder() = default;

absl::StatusOr<std::unique_ptr<IncrementalDecoder>> IncrementalDecoder::Create(
    const config::ModelConfig& cfg, const model::ParamStore& params, kernels::Backend* ops,
    const model::RopeTables& rope, DecoderOptions options) {
  if (ops == nullptr) return absl::InvalidArgumentError("decoder: no backend");
  const int64_t d = cfg.hidden_size(), vocab = cfg.vocab_size(), heads = cfg.num_attention_heads();
  const int64_t dn = cfg.qk_nope_head_dim(), dr = cfg.qk_rope_head_dim(), dv = cfg.v_head_dim();
  const int64_t rkv = cfg.kv_lora_rank(), dqk = dn + dr;
  if (d <= 0 || vocab <= 0 || heads <= 0 || rkv <= 0 || dr <= 0 || dr % 2 != 0 || dv <= 0 || dn < 0 ||
      cfg.num_hidden_layers() <= 0) {
    return absl::InvalidArgumentError(
        "decoder: the model config needs positive hidden_size, vocab_size, num_hidden_layers, "
        "num_attention_heads, kv_lora_rank, v_head_dim and an even qk_rope_head_dim");
  }
  if (rope.half_dim != dr / 2 || rope.max_positions <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("decoder: RoPE tables of half width ", rope.half_dim,
                                                   " do not fit qk_rope_head_dim ", dr));
  }
  if (options.max_length < 0 || options.max_length > rope.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat("decoder: max_length ", options.max_length,
                                                   " exceeds the RoPE tables' ", rope.max_positions,
                                                   " positions; build the tables for the longer length"));
  }
  std::unique_ptr<IncrementalDecoder> dec(new IncrementalDecoder(cfg, ops, rope, options));
  ASSIGN_OR_RETURN(dec->embed_, Require(params, "model.embed_tokens.weight", {vocab, d}));
  ASSIGN_OR_RETURN(dec->final_norm_, Require(params, "model.norm.weight", {d}));
  ASSIGN_OR_RETURN(dec->lm_head_, Require(params, "lm_head.weight", {vocab, d}));
  for (int64_t l = 0; l < cfg.num_hidden_layers(); ++l) {
    const std::string pre = absl::StrCat("model.layers.", l, ".");
    const std::string att = pre + "self_attn.";
    auto L = std::make_unique<Layer>();
    ASSIGN_OR_RETURN(L->input_norm, Require(params, pre + "input_layernorm.weight", {d}));
    ASSIGN_OR_RETURN(L->post_norm, Require(params, pre + "post_attention_layernorm.weight", {d}));
    if (cfg.has_q_lora_rank() && cfg.q_lora_rank() > 0) {
      const int64_t rq = cfg.q_lora_rank();
      ASSIGN_OR_RETURN(L->q_a_proj, Require(params, att + "q_a_proj.weight", {rq, d}));
      ASSIGN_OR_RETURN(L->q_a_norm, Require(params, att + "q_a_layernorm.weight", {rq}));
      ASSIGN_OR_RETURN(L->q_b_proj, Require(params, att + "q_b_proj.weight", {heads * dqk, rq}));
    } else {
      ASSIGN_OR_RETURN(L->q_proj, Require(params, att + "q_proj.weight", {heads * dqk, d}));
    }
    ASSIGN_OR_RETURN(L->kv_a_proj, Require(params, att + "kv_a_proj_with_mqa.weight", {rkv + dr, d}));
    ASSIGN_OR_RETURN(L->kv_a_norm, Require(params, att + "kv_a_layernorm.weight", {rkv}));
    ASSIGN_OR_RETURN(L->kv_b_proj, Require(params, att + "kv_b_proj.weight", {heads * (dn + dv), rkv}));
    ASSIGN_OR_RETURN(L->o_proj, Require(params, att + "o_proj.weight", {d, heads * dv}));
    // The absorbed per-head blocks: contiguous row blocks of kv_b_proj, row stride rkv.
    const float* kv_b = L->kv_b_proj->working.data();
    for (int64_t h = 0; h < heads; ++h) {
      L->w_uk.push_back(kv_b + h * (dn + dv) * rkv);
      L->w_uv.push_back(kv_b + (h * (dn + dv) + dn) * rkv);
    }
    const std::string mlp = pre + "mlp.";
    if (model::IsMoeLayer(cfg, l)) {
      const int64_t e_count = cfg.n_routed_experts(), ie = cfg.moe_intermediate_size();
      ASSIGN_OR_RETURN(L->router, Require(params, mlp + "gate.weight", {e_count, d}));
      if (cfg.topk_method() == "noaux_tc") {
        ASSIGN_OR_RETURN(L->bias, Require(params, mlp + "gate.e_score_correction_bias", {e_count}));
      }
      for (int64_t e = 0; e < e_count; ++e) {
        const std::string p = absl::StrCat(mlp, "experts.", e, ".");
        const Param *g, *u, *dn_p;
        ASSIGN_OR_RETURN(g, Require(params, p + "gate_proj.weight", {ie, d}));
        ASSIGN_OR_RETURN(u, Require(params, p + "up_proj.weight", {ie, d}));
        ASSIGN_OR_RETURN(dn_p, Require(params, p + "down_proj.weight", {d, ie}));
        L->expert_gate.push_back(g);
        L->expert_up.push_back(u);
        L->expert_down.push_back(dn_p);
      }
      if (cfg.n_shared_experts() > 0) {
        const int64_t inter = cfg.n_shared_experts() * ie;
        const std::string p = mlp + "shared_experts.";
        ASSIGN_OR_RETURN(L->gate_proj, Require(params, p + "gate_proj.weight", {inter, d}));
        ASSIGN_OR_RETURN(L->up_proj, Require(params, p + "up_proj.weight", {inter, d}));
        ASSIGN_OR_RETURN(L->down_proj, Require(params, p + "down_proj.weight", {d, inter}));
      }
    } else {
      const int64_t inter = cfg.intermediate_size();
      ASSIGN_OR_RETURN(L->gate_proj, Require(params, mlp + "gate_proj.weight", {inter, d}));
      ASSIGN_OR_RETURN(L->up_proj, Require(params, mlp + "up_proj.weight", {inter, d}));
      ASSIGN_OR_RETURN(L->down_proj, Require(params, mlp + "down_proj.weight", {d, inter}));
    }
    dec->layers_.push_back(std::move(L));
  }
  return dec;
}

void IncrementalDecoder::Store(float* x, int64_t n) const {
  if (bf16_) ops_->RoundToBf16(x, n);
}

void IncrementalDecoder::Linear(const Param& w, const float* x, float* y) {
  const int64_t out = w.shape[0], in = w.shape[1];
  ops_->Gemm(Transpose::kNo, Transpose::kYes, {1, out, in, x, in, w.working.data(), in, y, out}, 1.0f, 0.0f);
}

void IncrementalDecoder::Reset() {
  position_ = 0;
  for (auto& L : layers_) {
    L->ckv.clear();
    L->kr.clear();
  }
}

// One token's MLA in the absorbed form; appends its cKV and kR to the layer's cache. out [d] written.
void IncrementalDecoder::Attention(Layer& L, const float* u, float* out) {
  const int64_t heads = cfg_.num_attention_heads(), dn = cfg_.qk_nope_head_dim();
  const int64_t dr = cfg_.qk_rope_head_dim(), dv = cfg_.v_head_dim(), rkv = cfg_.kv_lora_rank();
  const int64_t dqk = dn + dr, d = cfg_.hidden_size();
  const int32_t pos = static_cast<int32_t>(position_);
  float rstd = 0.0f;

  // Query q [H, dqk] = [qN ; RoPE(qR)] per head.
  std::vector<float> q(heads * dqk);
  if (L.q_a_proj != nullptr) {
    const int64_t rq = L.q_a_proj->shape[0];
    std::vector<float> qa(rq), cq(rq);
    Linear(*L.q_a_proj, u, qa.data());
    Store(qa.data(), rq);
    ops_->RmsNormForward(qa.data(), L.q_a_norm->working.data(), 1, rq, model::kLatentNormEps, bf16_, cq.data(),
                         &rstd);
    Store(cq.data(), rq);
    Linear(*L.q_b_proj, cq.data(), q.data());
  } else {
    Linear(*L.q_proj, u, q.data());
  }
  Store(q.data(), heads * dqk);
  kernels::RopeView view;
  view.x = q.data();
  view.num_tokens = 1;
  view.num_heads = heads;
  view.token_stride = heads * dqk;
  view.head_stride = dqk;
  view.offset = dn;
  view.half_dim = dr / 2;
  view.positions = &pos;
  view.cos = rope_.cos.data();
  view.sin = rope_.sin.data();
  ops_->RopeForward(view);
  Store(q.data(), heads * dqk);

  // The new cache entries: cKV_t = RMSNorm(a[:rkv]) [rkv] and kR_t = RoPE(a[rkv:]) [dr].
  std::vector<float> a(rkv + dr);
  Linear(*L.kv_a_proj, u, a.data());
  Store(a.data(), rkv + dr);
  const int64_t t_len = position_ + 1;
  L.ckv.resize(t_len * rkv);
  L.kr.resize(t_len * dr);
  float* ckv_t = &L.ckv[position_ * rkv];
  float* kr_t = &L.kr[position_ * dr];
  ops_->RmsNormForward(a.data(), L.kv_a_norm->working.data(), 1, rkv, model::kLatentNormEps, bf16_, ckv_t, &rstd);
  Store(ckv_t, rkv);
  std::copy_n(&a[rkv], dr, kr_t);
  view.x = kr_t;
  view.num_heads = 1;
  view.token_stride = dr;
  view.head_stride = dr;
  view.offset = 0;
  ops_->RopeForward(view);
  Store(kr_t, dr);

  // Absorbed queries q̃_h = W_UK_hᵀ qN_h, i.e. the row qN_h [1, dn] times W_UK_h [dn, rkv].
  std::vector<float> q_abs(heads * rkv);
  std::vector<GemmProblem> problems(heads);
  for (int64_t h = 0; h < heads; ++h) {
    problems[h] = GemmProblem{1, rkv, dn, q.data() + h * dqk, dqk, L.w_uk[h], rkv, q_abs.data() + h * rkv, rkv};
  }
  ops_->GroupedGemm(Transpose::kNo, Transpose::kNo, problems, 1.0f, 0.0f);

  // Scores S [H, T] = scale·(Q̃ [H, rkv] CKVᵀ + QR [H, dr] KRᵀ), then a softmax per head (FP32).
  std::vector<float> s(heads * t_len);
  ops_->Gemm(Transpose::kNo, Transpose::kYes, {heads, t_len, rkv, q_abs.data(), rkv, L.ckv.data(), rkv, s.data(), t_len},
             softmax_scale_, 0.0f);
  ops_->Gemm(Transpose::kNo, Transpose::kYes, {heads, t_len, dr, q.data() + dn, dqk, L.kr.data(), dr, s.data(), t_len},
             softmax_scale_, 1.0f);
  for (int64_t h = 0; h < heads; ++h) {
    float* row = &s[h * t_len];
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < t_len; ++j) mx = std::max(mx, row[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < t_len; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < t_len; ++j) row[j] *= inv;
  }

  // Ō [H, rkv] = P CKV, then o_h = W_UV_h ō_h [dv] (the row ō_h times W_UV_hᵀ).
  std::vector<float> o_lat(heads * rkv);
  ops_->Gemm(Transpose::kNo, Transpose::kNo, {heads, rkv, t_len, s.data(), t_len, L.ckv.data(), rkv, o_lat.data(), rkv},
             1.0f, 0.0f);
  std::vector<float> o(heads * dv);
  for (int64_t h = 0; h < heads; ++h) {
    problems[h] = GemmProblem{1, dv, rkv, o_lat.data() + h * rkv, rkv, L.w_uv[h], rkv, o.data() + h * dv, dv};
  }
  ops_->GroupedGemm(Transpose::kNo, Transpose::kYes, problems, 1.0f, 0.0f);
  Store(o.data(), heads * dv);
  Linear(*L.o_proj, o.data(), out);
  Store(out, d);
}

// The FFN branch for one token: dense SwiGLU, or shared expert + routed experts. out [d] written.
void IncrementalDecoder::FeedForward(const Layer& L, const float* u, float* out) {
  const int64_t d = cfg_.hidden_size();
  auto swiglu = [&](const Param& gate, const Param& up, const Param& down, float* y) {
    const int64_t inter = gate.shape[0];
    std::vector<float> a(inter), c(inter), m(inter);
    Linear(gate, u, a.data());
    Linear(up, u, c.data());
    Store(a.data(), inter);
    Store(c.data(), inter);
    ops_->SwigluForward(a.data(), c.data(), m.data(), inter);
    Store(m.data(), inter);
    Linear(down, m.data(), y);
    Store(y, d);
  };
  std::fill(out, out + d, 0.0f);
  if (L.gate_proj != nullptr) swiglu(*L.gate_proj, *L.up_proj, *L.down_proj, out);
  if (L.router == nullptr) return;

  const int64_t e_count = router_.num_experts, k = router_.top_k;
  std::vector<float> logits(e_count), scores(e_count), weights(k);
  std::vector<int32_t> selected(k);
  Linear(*L.router, u, logits.data());
  ops_->RouterForward(router_, logits.data(), L.bias != nullptr ? L.bias->working.data() : nullptr, 1,
                      scores.data(), selected.data(), weights.data());
  // Combine in ascending expert order (the training forward's row order).
  std::vector<int64_t> order(k);
  for (int64_t i = 0; i < k; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return selected[x] < selected[y]; });
  std::vector<float> routed(d, 0.0f), y(d);
  for (int64_t i : order) {
    const int32_t e = selected[i];
    swiglu(*L.expert_gate[e], *L.expert_up[e], *L.expert_down[e], y.data());
    const float w = weights[i];
    for (int64_t j = 0; j < d; ++j) routed[j] += w * y[j];
  }
  Store(routed.data(), d);
  ops_->Add(routed.data(), out, d);
  Store(out, d);
}

absl::StatusOr<std::vector<float>> IncrementalDecoder::Step(int32_t token) {
  const int64_t d = cfg_.hidden_size(), vocab = cfg_.vocab_size();
  if (token < 0 || token >= vocab) {
    return absl::InvalidArgumentError(absl::StrCat("decoder: token id ", token, " is outside the vocabulary [0, ",
                                                   vocab, ")"));
  }
  if (position_ >= max_length_) {
    return absl::OutOfRangeError(absl::StrCat("decoder: position ", position_, " is beyond the maximum length ",
                                              max_length_, " (the RoPE tables hold ", rope_.max_positions,
                                              " positions); build the decoder for a longer length"));
  }
  const float eps = static_cast<float>(cfg_.rms_norm_eps());
  std::vector<float> h(d), x(d), branch(d);
  float rstd = 0.0f;
  ops_->EmbeddingForward(&token, 1, embed_->working.data(), d, h.data());
  for (auto& lp : layers_) {
    Layer& L = *lp;
    ops_->RmsNormForward(h.data(), L.input_norm->working.data(), 1, d, eps, bf16_, x.data(), &rstd);
    Store(x.data(), d);
    Attention(L, x.data(), branch.data());
    ops_->Add(branch.data(), h.data(), d);
    Store(h.data(), d);
    ops_->RmsNormForward(h.data(), L.post_norm->working.data(), 1, d, eps, bf16_, x.data(), &rstd);
    Store(x.data(), d);
    FeedForward(L, x.data(), branch.data());
    ops_->Add(branch.data(), h.data(), d);
    Store(h.data(), d);
  }
  ++position_;
  ops_->RmsNormForward(h.data(), final_norm_->working.data(), 1, d, eps, bf16_, x.data(), &rstd);
  Store(x.data(), d);
  std::vector<float> logits(vocab);  // FP32, as the training forward's
  Linear(*lm_head_, x.data(), logits.data());
  return logits;
}

absl::StatusOr<std::vector<float>> IncrementalDecoder::Prefill(const std::vector<int32_t>& prompt) {
  if (prompt.empty()) return absl::InvalidArgumentError("decoder: Prefill of an empty prompt");
  std::vector<float> logits;
  for (int32_t token : prompt) {
    ASSIGN_OR_RETURN(logits, Step(token));
  }
  return logits;
}

}  // namespace moe::inference
