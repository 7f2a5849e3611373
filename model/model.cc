#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "model/linear.h"
#include "parallel/local_communicator.h"

namespace moe::model {

kernels::RouterParams RouterParamsFrom(const config::ModelConfig& m) {
  kernels::RouterParams p;
  p.num_experts = m.n_routed_experts();
  p.top_k = m.num_experts_per_tok();
  p.n_group = m.n_group();
  p.topk_group = m.topk_group();
  p.scoring = m.scoring_func() == "softmax" ? kernels::ScoringFunc::kSoftmax
                                            : kernels::ScoringFunc::kSigmoid;
  if (m.topk_method() == "greedy") {
    p.method = kernels::TopkMethod::kGreedy;
  } else if (m.topk_method() == "group_limited_greedy") {
    p.method = kernels::TopkMethod::kGroupLimitedGreedy;
  } else {
    p.method = kernels::TopkMethod::kNoauxTc;
  }
  p.norm_topk_prob = m.norm_topk_prob();
  p.routed_scaling_factor = static_cast<float>(m.routed_scaling_factor());
  return p;
}

namespace {

// Sequence-parallel edges of a TP block: gather the slice's rows from every TP rank before it, and
// sum-and-scatter its partial output after it (each other's backward). With one TP rank the slice is
// the whole micro-batch: the gather returns its input and blocks write their output in place.
// `full` holds n_local * d * tp.size() floats (unused with one TP rank).
const float* GatherTokens(parallel::Communicator& tp, const float* local, int64_t n_local, int64_t d,
                          float* full) {
  if (tp.size() == 1) return local;
  tp.AllGather(local, full, n_local * d);
  return full;
}

// x [n_local, d] gathered over TP into `saved` (kept for the backward); x itself with one TP rank.
const float* GatherAndSave(const LayerContext& ctx, parallel::Communicator& tp, const float* x, int64_t n_local,
                           int64_t d, Scratch::Frame& frame, SavedActivation* saved) {
  if (tp.size() == 1) return x;
  float* full = saved->Prepare(ctx, frame, tp.size() * n_local * d);
  tp.AllGather(x, full, n_local * d);
  saved->Save(ctx);
  return full;
}

// Where a TP block's input is kept (what GatherAndSave returned): `local` with one TP rank, the
// gathered `full` otherwise.
const SavedActivation& KeptBlockInput(parallel::Communicator& tp, const SavedActivation& local,
                                      const SavedActivation& full) {
  return tp.size() == 1 ? local : full;
}

// Where a TP block writes its [n, d] output: the partial-sum buffer, or the slice itself (one rank).
float* BlockOutput(parallel::Communicator& tp, float* local, float* partial) {
  return tp.size() == 1 ? local : partial;
}

void ReduceScatterTokens(parallel::Communicator& tp, const float* full_partial, int64_t n_local,
                         int64_t d, float* local) {
  if (full_partial != local) tp.ReduceScatterSum(full_partial, local, n_local * d);
}

// A block's output partials summed into this rank's slice and stored. With one TP rank the block wrote
// the slice itself, and its output is stored already (the blocks end with a Store).
void ReduceScatterBlockOutput(const LayerContext& ctx, parallel::Communicator& tp, const float* full_partial,
                              int64_t n_local, int64_t d, float* local) {
  if (full_partial == local) return;
  ReduceScatterTokens(tp, full_partial, n_local, d, local);
  ctx.Store(local, n_local * d);
}

}  // namespace

DeepseekV3Model::DeepseekV3Model(const config::ModelConfig& cfg, Numerics numerics,
                                 kernels::Backend* ops, int64_t max_positions, ModelParallel parallel)
    : cfg_(cfg) {
  if (parallel.tp == nullptr) {
    own_tp_ = std::make_unique<parallel::LocalCommunicator>("tp", ops);
    parallel.tp = own_tp_.get();
  }
  if (parallel.ep == nullptr) {
    own_ep_ = std::make_unique<parallel::LocalCommunicator>("ep", ops);
    parallel.ep = own_ep_.get();
  }
  ctx_.ops = ops;
  ctx_.scratch = &scratch_;
  ctx_.numerics = numerics;
  ctx_.tp = parallel.tp;
  ctx_.ep = parallel.ep;
  const TpSlice tp{parallel.tp->rank(), parallel.tp->size()};
  const int64_t d = cfg.hidden_size(), vocab = cfg.vocab_size();
  rope_ = BuildRopeTables(cfg, max_positions, *ops);

  embed_ = params_.Add("model.embed_tokens.weight", {vocab, d}, ParamKind::kMatrix);
  MlaDims mla;
  mla.d = d;
  mla.heads = cfg.num_attention_heads();
  mla.q_lora_rank = cfg.has_q_lora_rank() ? cfg.q_lora_rank() : 0;
  mla.kv_lora_rank = cfg.kv_lora_rank();
  mla.nope_dim = cfg.qk_nope_head_dim();
  mla.rope_dim = cfg.qk_rope_head_dim();
  mla.v_dim = cfg.v_head_dim();
  mla.softmax_scale = static_cast<float>(SoftmaxScale(cfg));
  mla.tp = tp;

  // Decoder block `l` (HF layer index; MTP blocks continue after the main ones).
  auto build_layer = [&](int64_t l, int64_t mtp_depth, DecoderLayer* layer) {
    const std::string prefix = absl::StrCat("model.layers.", l, ".");
    layer->first_param = params_.size();
    layer->mtp_depth = mtp_depth;
    layer->input_norm = params_.Add(prefix + "input_layernorm.weight", {d}, ParamKind::kNorm);
    layer->attn = std::make_unique<MlaAttention>(params_, prefix + "self_attn.", mla);
    layer->post_norm = params_.Add(prefix + "post_attention_layernorm.weight", {d}, ParamKind::kNorm);
    if (IsMoeLayer(cfg, l)) {
      MoeDims md;
      md.d = d;
      md.expert_inter = cfg.moe_intermediate_size();
      md.router = RouterParamsFrom(cfg);
      md.has_correction_bias = cfg.topk_method() == "noaux_tc";
      md.aux_loss_alpha = static_cast<float>(cfg.aux_loss_alpha());
      md.seq_aux = cfg.seq_aux();
      md.capacity_factor = parallel.capacity_factor;
      layer->moe = std::make_unique<MoeLayer>(params_, prefix + "mlp.", md, parallel.ep);
      if (cfg.n_shared_experts() > 0) {
        layer->mlp = std::make_unique<SwiGluMlp>(params_, prefix + "mlp.shared_experts.", d,
                                                 cfg.n_shared_experts() * cfg.moe_intermediate_size(), tp);
      }
      layer->moe_slot = static_cast<int64_t>(moe_layer_index_.size());
      moe_layer_index_.push_back(l);
      expert_counts_.emplace_back(cfg.n_routed_experts(), 0);
    } else {
      layer->mlp = std::make_unique<SwiGluMlp>(params_, prefix + "mlp.", d, cfg.intermediate_size(), tp);
    }
    layer->end_param = params_.size();
  };
  for (int64_t l = 0; l < cfg.num_hidden_layers(); ++l) {
    layers_.push_back(std::make_unique<DecoderLayer>());
    build_layer(l, 0, layers_.back().get());
  }
  final_norm_index_ = params_.size();
  final_norm_ = params_.Add("model.norm.weight", {d}, ParamKind::kNorm);
  lm_head_index_ = params_.size();
  lm_head_ = params_.Add("lm_head.weight", {vocab, d}, ParamKind::kMatrix);
  // MTP modules after the main model, so its tensors keep their order with or without them.
  for (int64_t k = 1; k <= cfg.num_nextn_predict_layers(); ++k) {
    auto m = std::make_unique<MtpModule>();
    const int64_t l = cfg.num_hidden_layers() + k - 1;
    const std::string prefix = absl::StrCat("model.layers.", l, ".");
    m->depth = k;
    build_layer(l, k, &m->block);
    m->enorm = params_.Add(prefix + "enorm.weight", {d}, ParamKind::kNorm);
    m->hnorm = params_.Add(prefix + "hnorm.weight", {d}, ParamKind::kNorm);
    m->eh_proj = params_.Add(prefix + "eh_proj.weight", {d, 2 * d}, ParamKind::kMatrix);
    m->head_norm = params_.Add(prefix + "shared_head.norm.weight", {d}, ParamKind::kNorm);
    mtp_.push_back(std::move(m));
  }
}

DeepseekV3Model::~DeepseekV3Model() = default;

void DeepseekV3Model::ResetExpertCounts() {
  for (auto& c : expert_counts_) std::fill(c.begin(), c.end(), 0);
}

void DeepseekV3Model::UpdateCorrectionBiases(double gamma) {
  kernels::Backend& ops = *ctx_.ops;
  std::vector<DecoderLayer*> blocks;
  for (auto& l : layers_) blocks.push_back(l.get());
  for (auto& m : mtp_) blocks.push_back(&m->block);
  for (DecoderLayer* block : blocks) {
    DecoderLayer& layer = *block;
    if (!layer.moe || layer.moe->correction_bias() == nullptr) continue;
    const std::vector<int64_t>& c = expert_counts_[layer.moe_slot];
    double mean = 0;
    for (int64_t v : c) mean += static_cast<double>(v);
    mean /= static_cast<double>(c.size());
    Param* b = layer.moe->correction_bias();
    std::vector<float> bias = DownloadBuffer(ops, b->master);
    for (size_t e = 0; e < c.size(); ++e) {
      const double diff = mean - static_cast<double>(c[e]);
      const double sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
      bias[e] = static_cast<float>(bias[e] + gamma * sign);
    }
    UploadToBuffer(ops, bias.data(), static_cast<int64_t>(bias.size()), &b->master);
    UploadToBuffer(ops, bias.data(), static_cast<int64_t>(bias.size()), &b->working);
  }
}

int64_t DeepseekV3Model::SavedActivationBytes() const {
  int64_t total = 0;
  for (const auto& l : layers_) total += l->SavedBytes();
  for (const auto& m : mtp_) total += m->SavedBytes();
  return total;
}

std::vector<double> DeepseekV3Model::ExpertLoadMaxOverMean() const {
  std::vector<double> out;
  for (const auto& c : expert_counts_) {
    double sum = 0, mx = 0;
    for (int64_t v : c) {
      sum += static_cast<double>(v);
      mx = std::max(mx, static_cast<double>(v));
    }
    out.push_back(sum > 0 ? mx / (sum / static_cast<double>(c.size())) : 0.0);
  }
  return out;
}

// One decoder block's forward on this rank's slice h [n_loc, d] (updated in place), saving what its
// backward needs in L. `counts` receives the expert assignments (null: a recomputation, which must not
// count them, nor the balance loss, twice).
void DeepseekV3Model::LayerForward(DecoderLayer& L, float* h, int64_t* counts) {
  NeedWeights(L.first_param, L.end_param);
  kernels::Backend& ops = *ctx_.ops;
  parallel::Communicator& tp = *ctx_.tp;
  ForwardPass& fp = fp_;
  const int64_t batch = fp.batch, seq = fp.seq, n = batch * seq, d = cfg_.hidden_size();
  const int64_t n_loc = fp.n_loc;
  const float eps = static_cast<float>(cfg_.rms_norm_eps());
  Scratch::Frame frame(scratch_);
  float* branch = frame.Floats(n_loc * d);
  float* partial = tp.size() > 1 ? frame.Floats(n * d) : nullptr;
  L.h_in.SaveCopy(ctx_, h, n_loc * d);
  L.rstd1.resize(n_loc);
  float* x1 = L.x1.Prepare(ctx_, frame, n_loc * d);
  ops.RmsNormForward(h, L.input_norm->working.data(), n_loc, d, eps, ctx_.bf16(), x1, L.rstd1.data());
  L.x1.Save(ctx_);
  const float* x1_full = GatherAndSave(ctx_, tp, x1, n_loc, d, frame, &L.x1_full);
  float* out = BlockOutput(tp, branch, partial);
  L.attn->Forward(ctx_, rope_, fp.positions.data(), x1_full, batch, seq, out, &L.attn_saved,
                  KeptBlockInput(tp, L.x1, L.x1_full).bits());
  ReduceScatterBlockOutput(ctx_, tp, out, n_loc, d, branch);
  ctx_.AddStored(branch, h, n_loc * d);
  L.h_mid.SaveCopy(ctx_, h, n_loc * d);
  L.rstd2.resize(n_loc);
  float* x2 = L.x2.Prepare(ctx_, frame, n_loc * d);
  ops.RmsNormForward(h, L.post_norm->working.data(), n_loc, d, eps, ctx_.bf16(), x2, L.rstd2.data());
  L.x2.Save(ctx_);
  if (L.mlp) {  // dense FFN or shared expert: tensor-parallel over the gathered tokens (writes all of branch)
    const float* x2_full = GatherAndSave(ctx_, tp, x2, n_loc, d, frame, &L.x2_full);
    L.mlp->Forward(ctx_, x2_full, n, out, &L.mlp_saved, KeptBlockInput(tp, L.x2, L.x2_full).bits());
    ReduceScatterBlockOutput(ctx_, tp, out, n_loc, d, branch);
  } else {
    ops.Fill(branch, n_loc * d, 0.0f);
  }
  if (L.moe) {  // routed experts on this rank's tokens
    float* routed = frame.Floats(n_loc * d);
    RoutedExpertsForward(L, x2, routed, counts);
    ctx_.AddStored(routed, branch, n_loc * d);
  }
  ctx_.AddStored(branch, h, n_loc * d);
}

// out [n_loc, d] = the routed experts' combined output for this rank's rows x2 [n_loc, d]. An MTP block
// routes only its real rows (the first T - k of each sequence), gathered into x2_real, as a micro-batch
// of B sequences of T - k tokens; its other rows get zeros.
void DeepseekV3Model::RoutedExpertsForward(DecoderLayer& L, const float* x2, float* out, int64_t* counts) {
  kernels::Backend& ops = *ctx_.ops;
  ForwardPass& fp = fp_;
  const int64_t d = cfg_.hidden_size();
  std::vector<int64_t> scratch_counts(cfg_.n_routed_experts());
  int64_t* count_into = counts != nullptr ? counts : scratch_counts.data();
  double balance = 0;
  if (L.mtp_depth == 0) {
    const TokenSlice slice{fp.batch, fp.seq, fp.offset, fp.n_loc};
    balance = L.moe->Forward(ctx_, x2, slice, out, &L.moe_saved, count_into);
  } else {
    const int64_t real_len = fp.seq - L.mtp_depth, rows = L.real_rows.size();
    // This slice's real rows are consecutive among all real rows of the micro-batch.
    const int64_t first = fp.offset / fp.seq * real_len + std::min(fp.offset % fp.seq, real_len);
    const TokenSlice slice{fp.batch, real_len, first, rows};
    Scratch::Frame frame(scratch_);
    float* routed = frame.Floats(rows * d);
    float* x2_real = L.x2_real.Prepare(ctx_, frame, rows * d);
    ops.GatherRows(x2, L.real_rows.data(), rows, d, x2_real);
    L.x2_real.Save(ctx_);
    balance = L.moe->Forward(ctx_, x2_real, slice, routed, &L.moe_saved, count_into);
    ops.Fill(out, fp.n_loc * d, 0.0f);
    ops.ScatterAddRows(routed, L.real_rows.data(), nullptr, rows, d, out);
  }
  if (counts != nullptr) {  // a recomputation must not count or report twice
    fp.balance_loss += balance;
    fp.dropped += MoeLayer::Dropped(L.moe_saved);
  }
}

// d_x2 [n_loc, d] written: the gradient of the routed experts' input given dh, their output's.
void DeepseekV3Model::RoutedExpertsBackward(DecoderLayer& L, const float* dh, float loss_scale, float* d_x2) {
  kernels::Backend& ops = *ctx_.ops;
  const int64_t d = cfg_.hidden_size();
  Scratch::Frame frame(scratch_);
  // The experts' input only feeds the router's weight gradient: read as kept (BF16 bits in BF16 mode).
  if (L.mtp_depth == 0) {
    L.moe->Backward(ctx_, L.x2.fp32(), L.moe_saved, dh, loss_scale, d_x2, L.x2.bits());
    return;
  }
  const int64_t rows = L.real_rows.size();
  float* dh_real = frame.Floats(rows * d);
  float* dx_real = frame.Floats(rows * d);
  ops.GatherRows(dh, L.real_rows.data(), rows, d, dh_real);
  L.moe->Backward(ctx_, L.x2_real.fp32(), L.moe_saved, dh_real, loss_scale, dx_real, L.x2_real.bits());
  ops.Fill(d_x2, fp_.n_loc * d, 0.0f);
  ops.ScatterAddRows(dx_real, L.real_rows.data(), nullptr, rows, d, d_x2);
}

void DeepseekV3Model::RunForward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq) {
  kernels::Backend& ops = *ctx_.ops;
  parallel::Communicator& tp = *ctx_.tp;
  ForwardPass& fp = fp_;
  const int64_t n = batch * seq, d = cfg_.hidden_size(), vocab = cfg_.vocab_size();
  const int64_t n_loc = n / tp.size(), offset = tp.rank() * n_loc;  // this rank's token slice
  const float eps = static_cast<float>(cfg_.rms_norm_eps());
  // The inputs go in by copies in op order: the last step's ops may still be reading the old ones.
  if (fp.batch != batch || fp.seq != seq) {
    std::vector<int32_t> positions(n);
    for (int64_t i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(i % seq);
    UploadToBuffer(ops, positions.data(), n, &fp.positions);
  }
  fp.batch = batch;
  fp.seq = seq;
  fp.n_loc = n_loc;
  fp.offset = offset;
  UploadToBuffer(ops, ids + offset, n_loc, &fp.ids);
  if (targets != nullptr) UploadToBuffer(ops, targets + offset, n_loc, &fp.targets);
  fp.balance_loss = 0;
  fp.dropped = 0;

  fp.h.resize(n_loc * d);
  NeedWeights(0, 1);  // the embedding, registered first
  ops.EmbeddingForward(fp.ids.data(), n_loc, embed_->working.data(), embed_->working_bits(), d, fp.h.data());
  // The blocks save their input as BF16: rows of a table kept as BF16 bits are BF16 values already.
  if (embed_->working_bits() == nullptr) ctx_.Store(fp.h.data(), n_loc * d);
  for (auto& lp : layers_) {
    DecoderLayer& L = *lp;
    LayerForward(L, fp.h.data(), L.moe ? expert_counts_[L.moe_slot].data() : nullptr);
    if (recompute_) L.ReleaseActivations();  // keep only h_in; the backward recomputes the rest
  }
  Scratch::Frame frame(scratch_);
  NeedWeights(final_norm_index_, lm_head_index_ + 1);
  float* hf = fp.hf.Prepare(ctx_, frame, n_loc * d);
  fp.rstd_f.resize(n_loc);
  ops.RmsNormForward(fp.h.data(), final_norm_->working.data(), n_loc, d, eps, ctx_.bf16(), hf,
                     fp.rstd_f.data());
  fp.hf.Save(ctx_);
  // FP32 logits: the loss is computed in FP32 (docs/model.md "Batch layout and cross-entropy").
  fp.logits.resize(n_loc * vocab);
  LinearForward(ops, *lm_head_, hf, n_loc, fp.logits.data(), fp.hf.bits());
}

std::vector<float> DeepseekV3Model::Logits(const int32_t* ids, int64_t batch, int64_t seq) {
  RunForward(ids, nullptr, batch, seq);
  return DownloadBuffer(*ctx_.ops, fp_.logits);
}

LossStats DeepseekV3Model::Step(const int32_t* ids, const int32_t* targets, int64_t batch,
                                int64_t seq, bool backward, float loss_scale) {
  kernels::Backend& ops = *ctx_.ops;
  const int64_t n = batch * seq, d = cfg_.hidden_size(), vocab = cfg_.vocab_size();
  RunForward(ids, targets, batch, seq);
  ForwardPass& fp = fp_;
  const int64_t n_loc = fp.n_loc, offset = fp.offset;
  LossStats stats;
  int64_t micro_batch_tokens = 0;  // the mean runs over the whole micro-batch, not the slice
  for (int64_t i = 0; i < n; ++i) micro_batch_tokens += targets[i] >= 0 ? 1 : 0;
  for (int64_t i = 0; i < n_loc; ++i) stats.tokens += targets[offset + i] >= 0 ? 1 : 0;
  const float ce_scale = micro_batch_tokens > 0 ? loss_scale / static_cast<float>(micro_batch_tokens) : 0.0f;
  float* logits = fp.logits.data();
  stats.ce_loss_sum = ops.CrossEntropy(logits, fp.targets.data(), n_loc, vocab, ce_scale,
                                       backward ? logits : nullptr);
  Scratch::Frame frame(scratch_);
  float* d_hf = backward ? frame.Floats(n_loc * d) : nullptr;
  // The head's gradient first: the MTP depths then reuse the logits buffer.
  if (backward) LinearBackward(ctx_, *lm_head_, fp.hf.fp32(), logits, n_loc, d_hf, GradMode::kWrite, fp.hf.bits());
  if (!mtp_.empty()) MtpForward(ids, targets, backward, loss_scale, &stats);
  stats.balance_loss = fp.balance_loss;  // the MTP blocks' MoE included
  stats.dropped = fp.dropped;
  if (!backward) return stats;

  // ---- Backward (activation gradients written, parameter gradients accumulated) ----
  if (!mtp_.empty()) MtpBackward(loss_scale, d_hf);
  GradsDone(lm_head_index_, params_.size());  // the MTP modules are registered after lm_head
  float* dh = frame.Floats(n_loc * d);  // gradient of the residual stream (this rank's slice)
  ops.RmsNormBackward(fp.h.data(), final_norm_->working.data(), fp.rstd_f.data(), d_hf, n_loc, d, dh,
                      final_norm_->GradForAccumulate(ops));
  GradsDone(final_norm_index_, final_norm_index_ + 1);
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    LayerBackward(**it, dh, loss_scale);
    GradsDone((*it)->first_param, (*it)->end_param);
  }
  ops.EmbeddingBackward(fp.ids.data(), n_loc, dh, d, embed_->GradForAccumulate(ops));
  GradsDone(0, 1);  // the embedding, registered first
  params_.FinishGrads(ops);  // a no-op while the ranges above cover every parameter
  return stats;
}

void DeepseekV3Model::GradsDone(int64_t first, int64_t end) {
  params_.FinishGrads(*ctx_.ops, first, end);
  if (grads_ready_) grads_ready_(first, end);
}

void DeepseekV3Model::LayerBackward(DecoderLayer& L, float* dh, float loss_scale) {
  kernels::Backend& ops = *ctx_.ops;
  parallel::Communicator& tp = *ctx_.tp;
  const int64_t n = fp_.batch * fp_.seq, n_loc = fp_.n_loc, d = cfg_.hidden_size();
  Scratch::Frame frame(scratch_);
  float* d_branch_in = frame.Floats(n_loc * d);
  float* d_x = frame.Floats(n_loc * d);
  float* d_in_full = tp.size() > 1 ? frame.Floats(n * d) : nullptr;
  float* d_full = tp.size() > 1 ? frame.Floats(n * d) : nullptr;  // dh gathered over TP
  if (recompute_) {  // rebuild this block's saved activations from its input (same ops, same bits)
    float* h_in = frame.Floats(n_loc * d);
    {
      Scratch::Frame load(scratch_);
      ops.Copy(L.h_in.Load(ctx_, load), h_in, n_loc * d);
    }
    LayerForward(L, h_in, nullptr);
  }
  // FFN half: h_out = h_mid + FFN(norm(h_mid)).
  if (L.moe) {
    RoutedExpertsBackward(L, dh, loss_scale, d_branch_in);
  } else {
    ops.Fill(d_branch_in, n_loc * d, 0.0f);
  }
  if (L.mlp) {
    const float* d_out_full = GatherTokens(tp, dh, n_loc, d, d_full);
    float* d_in = BlockOutput(tp, d_x, d_in_full);
    // The block input only feeds weight gradients: read as kept (BF16 bits in BF16 mode).
    const SavedActivation& x2_full = KeptBlockInput(tp, L.x2, L.x2_full);
    L.mlp->Backward(ctx_, x2_full.fp32(), L.mlp_saved, d_out_full, d_in, false, x2_full.bits());
    ReduceScatterTokens(tp, d_in, n_loc, d, d_x);
    ops.Add(d_x, d_branch_in, n_loc * d);
  }
  ops.RmsNormBackward(L.h_mid.values(), L.post_norm->working.data(), L.rstd2.data(), d_branch_in, n_loc, d,
                      d_x, L.post_norm->GradForAccumulate(ops));
  ops.Add(d_x, dh, n_loc * d);
  // Attention half: h_mid = h_in + MLA(norm(h_in)).
  const float* d_out_full = GatherTokens(tp, dh, n_loc, d, d_full);
  float* d_in = BlockOutput(tp, d_branch_in, d_in_full);
  const SavedActivation& x1_full = KeptBlockInput(tp, L.x1, L.x1_full);
  L.attn->Backward(ctx_, rope_, fp_.positions.data(), x1_full.fp32(), L.attn_saved, d_out_full, d_in,
                   x1_full.bits());
  ReduceScatterTokens(tp, d_in, n_loc, d, d_branch_in);
  ops.RmsNormBackward(L.h_in.values(), L.input_norm->working.data(), L.rstd1.data(), d_branch_in,
                      n_loc, d, d_x, L.input_norm->GradForAccumulate(ops));
  ops.Add(d_x, dh, n_loc * d);
  if (recompute_) L.ReleaseActivations();
}

}  // namespace moe::model
