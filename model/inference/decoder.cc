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
using model::WithWorkingB;

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

// One multi-token-prediction module: its norms and projection, its block with its own cache.
struct IncrementalDecoder::MtpModule {
  const Param* enorm = nullptr;      // [d]
  const Param* hnorm = nullptr;      // [d]
  const Param* eh_proj = nullptr;    // [d, 2d]
  const Param* head_norm = nullptr;  // [d] shared_head.norm
  std::unique_ptr<Layer> block;
  int64_t position = 0;              // positions in its cache
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
  if (static_cast<int64_t>(p->working.size() + p->working_bf16.size()) != p->numel()) {
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
  const int64_t rkv = cfg.kv_lora_rank();
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
    ASSIGN_OR_RETURN(std::unique_ptr<Layer> layer, CreateLayer(cfg, params, l));
    dec->layers_.push_back(std::move(layer));
  }
  for (int64_t k = 1; options.mtp && k <= cfg.num_nextn_predict_layers(); ++k) {
    const int64_t l = cfg.num_hidden_layers() + k - 1;
    const std::string pre = absl::StrCat("model.layers.", l, ".");
    auto m = std::make_unique<MtpModule>();
    ASSIGN_OR_RETURN(m->enorm, Require(params, pre + "enorm.weight", {d}));
    ASSIGN_OR_RETURN(m->hnorm, Require(params, pre + "hnorm.weight", {d}));
    ASSIGN_OR_RETURN(m->eh_proj, Require(params, pre + "eh_proj.weight", {d, 2 * d}));
    ASSIGN_OR_RETURN(m->head_norm, Require(params, pre + "shared_head.norm.weight", {d}));
    ASSIGN_OR_RETURN(m->block, CreateLayer(cfg, params, l));
    dec->mtp_.push_back(std::move(m));
  }
  return dec;
}

// Decoder block `l` (HF layer index; MTP blocks follow the main ones).
absl::StatusOr<std::unique_ptr<IncrementalDecoder::Layer>> IncrementalDecoder::CreateLayer(
    const config::ModelConfig& cfg, const model::ParamStore& params, int64_t l) {
  const int64_t d = cfg.hidden_size(), heads = cfg.num_attention_heads();
  const int64_t dn = cfg.qk_nope_head_dim(), dr = cfg.qk_rope_head_dim(), dv = cfg.v_head_dim();
  const int64_t rkv = cfg.kv_lora_rank(), dqk = dn + dr;
  {
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
    return L;
  }
}

void IncrementalDecoder::Store(float* x, int64_t n) const {
  if (bf16_) ops_->RoundToBf16(x, n);
}

void IncrementalDecoder::Linear(const Param& w, const float* x, int64_t n, float* y) {
  const int64_t out = w.shape[0], in = w.shape[1];
  ops_->Gemm(Transpose::kNo, Transpose::kYes, WithWorkingB({n, out, in, x, in, nullptr, in, y, out}, w), 1.0f, 0.0f);
}

void IncrementalDecoder::Reset() {
  Truncate(0);
  for (int64_t k = 1; k <= mtp_depths(); ++k) MtpTruncate(k, 0);
}

void IncrementalDecoder::Truncate(int64_t length) {
  position_ = std::min(position_, std::max<int64_t>(0, length));
  for (auto& L : layers_) {
    L->ckv.resize(position_ * cfg_.kv_lora_rank());
    L->kr.resize(position_ * cfg_.qk_rope_head_dim());
  }
}

int64_t IncrementalDecoder::mtp_position(int64_t k) const { return mtp_[k - 1]->position; }

void IncrementalDecoder::MtpTruncate(int64_t k, int64_t length) {
  MtpModule& m = *mtp_[k - 1];
  m.position = std::min(m.position, std::max<int64_t>(0, length));
  m.block->ckv.resize(m.position * cfg_.kv_lora_rank());
  m.block->kr.resize(m.position * cfg_.qk_rope_head_dim());
}

// The MLA of n tokens at positions position.. in the absorbed form: their cKV and kR are appended to the
// layer's cache first, then token i attends to cache entries 0 .. position+i. out [n, d] written.
void IncrementalDecoder::Attention(Layer& L, int64_t position, const float* u, int64_t n, float* out) {
  const int64_t heads = cfg_.num_attention_heads(), dn = cfg_.qk_nope_head_dim();
  const int64_t dr = cfg_.qk_rope_head_dim(), dv = cfg_.v_head_dim(), rkv = cfg_.kv_lora_rank();
  const int64_t dqk = dn + dr, d = cfg_.hidden_size();
  std::vector<int32_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(position + i);
  std::vector<float> rstd(n);

  // Queries q [n, H, dqk] = [qN ; RoPE(qR)] per head.
  std::vector<float> q(n * heads * dqk);
  if (L.q_a_proj != nullptr) {
    const int64_t rq = L.q_a_proj->shape[0];
    std::vector<float> qa(n * rq), cq(n * rq);
    Linear(*L.q_a_proj, u, n, qa.data());
    Store(qa.data(), n * rq);
    ops_->RmsNormForward(qa.data(), L.q_a_norm->working.data(), n, rq, model::kLatentNormEps, bf16_, cq.data(),
                         rstd.data());
    Store(cq.data(), n * rq);
    Linear(*L.q_b_proj, cq.data(), n, q.data());
  } else {
    Linear(*L.q_proj, u, n, q.data());
  }
  Store(q.data(), n * heads * dqk);
  kernels::RopeView view;
  view.x = q.data();
  view.num_tokens = n;
  view.num_heads = heads;
  view.token_stride = heads * dqk;
  view.head_stride = dqk;
  view.offset = dn;
  view.half_dim = dr / 2;
  view.positions = pos.data();
  view.cos = rope_.cos.data();
  view.sin = rope_.sin.data();
  ops_->RopeForward(view);
  Store(q.data(), n * heads * dqk);

  // The new cache entries: cKV_t = RMSNorm(a[:rkv]) [rkv] and kR_t = RoPE(a[rkv:]) [dr].
  std::vector<float> a(n * (rkv + dr));
  Linear(*L.kv_a_proj, u, n, a.data());
  Store(a.data(), n * (rkv + dr));
  L.ckv.resize((position + n) * rkv);
  L.kr.resize((position + n) * dr);
  float* ckv_new = &L.ckv[position * rkv];
  float* kr_new = &L.kr[position * dr];
  std::vector<float> a_kv(n * rkv);
  ops_->Copy2D(a.data(), rkv + dr, a_kv.data(), rkv, n, rkv, false);
  ops_->RmsNormForward(a_kv.data(), L.kv_a_norm->working.data(), n, rkv, model::kLatentNormEps, bf16_, ckv_new,
                       rstd.data());
  Store(ckv_new, n * rkv);
  ops_->Copy2D(a.data() + rkv, rkv + dr, kr_new, dr, n, dr, false);
  view.x = kr_new;
  view.num_heads = 1;
  view.token_stride = dr;
  view.head_stride = dr;
  view.offset = 0;
  ops_->RopeForward(view);
  Store(kr_new, n * dr);

  std::vector<float> o(n * heads * dv);
  std::vector<GemmProblem> problems(heads);
  std::vector<float> q_abs(heads * rkv), o_lat(heads * rkv);
  for (int64_t i = 0; i < n; ++i) {
    const float* qi = q.data() + i * heads * dqk;
    const int64_t t_len = position + i + 1;
    // Absorbed queries q̃_h = W_UK_hᵀ qN_h, i.e. the row qN_h [1, dn] times W_UK_h [dn, rkv]. W_UK_h and
    // W_UV_h are contiguous row blocks of kv_b_proj (row stride rkv): rows h(dn+dv) .. and h(dn+dv)+dn ..
    for (int64_t h = 0; h < heads; ++h) {
      problems[h] = WithWorkingB({1, rkv, dn, qi + h * dqk, dqk, nullptr, rkv, q_abs.data() + h * rkv, rkv},
                                 *L.kv_b_proj, h * (dn + dv) * rkv);
    }
    ops_->GroupedGemm(Transpose::kNo, Transpose::kNo, problems, 1.0f, 0.0f);
    // Scores S [H, T] = scale·(Q̃ [H, rkv] CKVᵀ + QR [H, dr] KRᵀ), then a softmax per head (FP32).
    std::vector<float> s(heads * t_len);
    ops_->Gemm(Transpose::kNo, Transpose::kYes,
               {heads, t_len, rkv, q_abs.data(), rkv, L.ckv.data(), rkv, s.data(), t_len}, softmax_scale_, 0.0f);
    ops_->Gemm(Transpose::kNo, Transpose::kYes, {heads, t_len, dr, qi + dn, dqk, L.kr.data(), dr, s.data(), t_len},
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
    ops_->Gemm(Transpose::kNo, Transpose::kNo,
               {heads, rkv, t_len, s.data(), t_len, L.ckv.data(), rkv, o_lat.data(), rkv}, 1.0f, 0.0f);
    float* oi = o.data() + i * heads * dv;
    for (int64_t h = 0; h < heads; ++h) {
      problems[h] = WithWorkingB({1, dv, rkv, o_lat.data() + h * rkv, rkv, nullptr, rkv, oi + h * dv, dv},
                                 *L.kv_b_proj, (h * (dn + dv) + dn) * rkv);
    }
    ops_->GroupedGemm(Transpose::kNo, Transpose::kYes, problems, 1.0f, 0.0f);
  }
  Store(o.data(), n * heads * dv);
  Linear(*L.o_proj, o.data(), n, out);
  Store(out, n * d);
}

// The FFN branch of n tokens: dense SwiGLU, or shared expert + routed experts. out [n, d] written.
void IncrementalDecoder::FeedForward(const Layer& L, const float* u, int64_t n, float* out) {
  const int64_t d = cfg_.hidden_size();
  auto swiglu = [&](const Param& gate, const Param& up, const Param& down, const float* x, int64_t rows, float* y) {
    const int64_t inter = gate.shape[0];
    std::vector<float> a(rows * inter), c(rows * inter), m(rows * inter);
    Linear(gate, x, rows, a.data());
    Linear(up, x, rows, c.data());
    Store(a.data(), rows * inter);
    Store(c.data(), rows * inter);
    ops_->SwigluForward(a.data(), c.data(), m.data(), rows * inter);
    Store(m.data(), rows * inter);
    Linear(down, m.data(), rows, y);
    Store(y, rows * d);
  };
  std::fill(out, out + n * d, 0.0f);
  if (L.gate_proj != nullptr) swiglu(*L.gate_proj, *L.up_proj, *L.down_proj, u, n, out);
  if (L.router == nullptr) return;

  const int64_t e_count = router_.num_experts, k = router_.top_k;
  std::vector<float> logits(n * e_count), scores(n * e_count), weights(n * k);
  std::vector<int32_t> selected(n * k);
  Linear(*L.router, u, n, logits.data());
  ops_->RouterForward(router_, logits.data(), L.bias != nullptr ? L.bias->working.data() : nullptr, n,
                      scores.data(), selected.data(), weights.data());
  std::vector<float> routed(d), y(d);
  for (int64_t t = 0; t < n; ++t) {
    // Combine in ascending expert order (the training forward's row order).
    std::vector<int64_t> order(k);
    for (int64_t i = 0; i < k; ++i) order[i] = t * k + i;
    std::sort(order.begin(), order.end(), [&](int64_t x, int64_t z) { return selected[x] < selected[z]; });
    std::fill(routed.begin(), routed.end(), 0.0f);
    for (int64_t i : order) {
      const int32_t e = selected[i];
      swiglu(*L.expert_gate[e], *L.expert_up[e], *L.expert_down[e], u + t * d, 1, y.data());
      const float w = weights[i];
      for (int64_t j = 0; j < d; ++j) routed[j] += w * y[j];
    }
    Store(routed.data(), d);
    ops_->Add(routed.data(), out + t * d, d);
  }
  Store(out, n * d);
}

void IncrementalDecoder::Block(Layer& L, int64_t position, float* h, int64_t n) {
  const int64_t d = cfg_.hidden_size();
  const float eps = static_cast<float>(cfg_.rms_norm_eps());
  std::vector<float> x(n * d), branch(n * d), rstd(n);
  ops_->RmsNormForward(h, L.input_norm->working.data(), n, d, eps, bf16_, x.data(), rstd.data());
  Store(x.data(), n * d);
  Attention(L, position, x.data(), n, branch.data());
  ops_->Add(branch.data(), h, n * d);
  Store(h, n * d);
  ops_->RmsNormForward(h, L.post_norm->working.data(), n, d, eps, bf16_, x.data(), rstd.data());
  Store(x.data(), n * d);
  FeedForward(L, x.data(), n, branch.data());
  ops_->Add(branch.data(), h, n * d);
  Store(h, n * d);
}

DecodeOutput IncrementalDecoder::Head(const Param& norm, const float* h, int64_t n) {
  const int64_t d = cfg_.hidden_size();
  DecodeOutput out;
  out.n = n;
  out.hidden.resize(n * d);
  out.logits.resize(n * cfg_.vocab_size());  // FP32, as the training forward's
  std::vector<float> rstd(n);
  ops_->RmsNormForward(h, norm.working.data(), n, d, static_cast<float>(cfg_.rms_norm_eps()), bf16_,
                       out.hidden.data(), rstd.data());
  Store(out.hidden.data(), n * d);
  Linear(*lm_head_, out.hidden.data(), n, out.logits.data());
  return out;
}

absl::Status IncrementalDecoder::CheckTokens(const std::vector<int32_t>& tokens, int64_t position) const {
  const int64_t vocab = cfg_.vocab_size();
  if (tokens.empty()) return absl::InvalidArgumentError("decoder: no tokens");
  for (int32_t token : tokens) {
    if (token < 0 || token >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("decoder: token id ", token, " is outside the vocabulary [0, ",
                                                     vocab, ")"));
    }
  }
  const int64_t last = position + static_cast<int64_t>(tokens.size()) - 1;
  if (last >= max_length_) {
    return absl::OutOfRangeError(absl::StrCat("decoder: position ", last, " is beyond the maximum length ",
                                              max_length_, " (the RoPE tables hold ", rope_.max_positions,
                                              " positions); build the decoder for a longer length"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DecodeOutput> IncrementalDecoder::Forward(const std::vector<int32_t>& tokens) {
  RETURN_IF_ERROR(CheckTokens(tokens, position_));
  const int64_t n = static_cast<int64_t>(tokens.size()), d = cfg_.hidden_size();
  std::vector<float> h(n * d);
  ops_->EmbeddingForward(tokens.data(), n, embed_->working.data(), embed_->working_bits(), d, h.data());
  for (auto& L : layers_) Block(*L, position_, h.data(), n);
  position_ += n;
  return Head(*final_norm_, h.data(), n);
}

absl::StatusOr<std::vector<float>> IncrementalDecoder::Step(int32_t token) {
  ASSIGN_OR_RETURN(DecodeOutput out, Forward({token}));
  return std::move(out.logits);
}

absl::StatusOr<DecodeOutput> IncrementalDecoder::MtpForward(int64_t k, const std::vector<float>& h_prev,
                                                            const std::vector<int32_t>& tokens) {
  if (k < 1 || k > mtp_depths()) {
    return absl::InvalidArgumentError(absl::StrCat("decoder: no MTP module ", k, " (", mtp_depths(), " loaded)"));
  }
  MtpModule& m = *mtp_[k - 1];
  RETURN_IF_ERROR(CheckTokens(tokens, m.position));
  const int64_t n = static_cast<int64_t>(tokens.size()), d = cfg_.hidden_size();
  if (static_cast<int64_t>(h_prev.size()) != n * d) {
    return absl::InvalidArgumentError(absl::StrCat("decoder: MTP module ", k, " got ", h_prev.size(),
                                                   " hidden values for ", n, " positions of width ", d));
  }
  // h' = [RMSNorm(E[x_{t+k}]; enorm) ; RMSNorm(h^{k-1}; hnorm)] · eh_projᵀ, as the training forward.
  const float eps = static_cast<float>(cfg_.rms_norm_eps());
  std::vector<float> emb(n * d), normed(n * d), cat(n * 2 * d), rstd(n), h(n * d);
  ops_->EmbeddingForward(tokens.data(), n, embed_->working.data(), embed_->working_bits(), d, emb.data());
  ops_->RmsNormForward(emb.data(), m.enorm->working.data(), n, d, eps, bf16_, normed.data(), rstd.data());
  ops_->Copy2D(normed.data(), d, cat.data(), 2 * d, n, d, false);
  ops_->RmsNormForward(h_prev.data(), m.hnorm->working.data(), n, d, eps, bf16_, normed.data(), rstd.data());
  ops_->Copy2D(normed.data(), d, cat.data() + d, 2 * d, n, d, false);
  Store(cat.data(), n * 2 * d);
  Linear(*m.eh_proj, cat.data(), n, h.data());
  Store(h.data(), n * d);
  Block(*m.block, m.position, h.data(), n);
  m.position += n;
  return Head(*m.head_norm, h.data(), n);
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
