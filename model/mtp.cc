// The multi-token-prediction half of DeepseekV3Model (model/mtp.h has the math).
#include <algorithm>

#include "model/linear.h"
#include "model/model.h"

namespace moe::model {

double DeepseekV3Model::mtp_depth_weight() const {
  return mtp_.empty() ? 0.0 : cfg_.mtp_loss_weight() / static_cast<double>(mtp_.size());
}

void DeepseekV3Model::MtpForward(const int32_t* ids, const int32_t* targets, bool backward, float loss_scale,
                                 LossStats* stats) {
  NeedWeights(lm_head_index_ + 1, params_.size());  // the MTP modules, registered after lm_head
  kernels::Backend& ops = *ctx_.ops;
  ForwardPass& fp = fp_;
  const int64_t seq = fp.seq, n = fp.batch * seq, n_loc = fp.n_loc, offset = fp.offset;
  const int64_t d = cfg_.hidden_size(), vocab = cfg_.vocab_size();
  const float eps = static_cast<float>(cfg_.rms_norm_eps());
  stats->mtp_ce_sum.assign(mtp_.size(), 0.0);
  stats->mtp_tokens.assign(mtp_.size(), 0);
  std::vector<int32_t> host_ids(n_loc), host_targets(n_loc);
  std::vector<int32_t> real_rows;
  Scratch::Frame frame(scratch_);
  float* e_normed = frame.Floats(n_loc * d);
  float* g_normed = frame.Floats(n_loc * d);
  for (auto& mp : mtp_) {
    MtpModule& m = *mp;
    const int64_t k = m.depth;
    // Inputs x_{t+k} and targets x_{t+k+1} for this slice; past the sequence's end a placeholder id
    // (the position's own) and no target. The micro-batch's target count is the loss's denominator.
    int64_t micro_batch_targets = 0;
    for (int64_t p = 0; p < n; ++p) micro_batch_targets += (p % seq + k < seq && targets[p + k] >= 0) ? 1 : 0;
    real_rows.clear();
    for (int64_t i = 0; i < n_loc; ++i) {
      const int64_t p = offset + i;
      const bool real = p % seq + k < seq;
      host_ids[i] = real ? ids[p + k] : ids[p];
      host_targets[i] = real ? targets[p + k] : -1;
      if (real) real_rows.push_back(static_cast<int32_t>(i));
      if (host_targets[i] >= 0) ++stats->mtp_tokens[k - 1];
    }
    // In op order: the last step's MTP ops may still be reading the old inputs.
    UploadToBuffer(ops, host_ids.data(), n_loc, &m.ids);
    UploadToBuffer(ops, host_targets.data(), n_loc, &m.targets);
    UploadToBuffer(ops, real_rows.data(), static_cast<int64_t>(real_rows.size()), &m.block.real_rows);

    // h' = [RMSNorm(E[x_{t+k}]; enorm) ; RMSNorm(h^{k-1}; hnorm)] · eh_projᵀ
    Scratch::Frame step(scratch_);
    const float* h_prev = (k == 1 ? fp.hf : mtp_[k - 2]->hk).Load(ctx_, step);
    float* emb = m.emb.Prepare(ctx_, step, n_loc * d);
    ops.EmbeddingForward(m.ids.data(), n_loc, embed_->working.data(), embed_->working_bits(), d, emb);
    m.emb.Save(ctx_);
    m.rstd_e.resize(n_loc);
    m.rstd_g.resize(n_loc);
    ops.RmsNormForward(emb, m.enorm->working.data(), n_loc, d, eps, ctx_.bf16(), e_normed, m.rstd_e.data());
    ops.RmsNormForward(h_prev, m.hnorm->working.data(), n_loc, d, eps, ctx_.bf16(), g_normed, m.rstd_g.data());
    float* cat = m.cat.Prepare(ctx_, step, n_loc * 2 * d);
    ops.Copy2D(e_normed, d, cat, 2 * d, n_loc, d, false);
    ops.Copy2D(g_normed, d, cat + d, 2 * d, n_loc, d, false);
    m.cat.Save(ctx_);
    float* z = m.z.Prepare(ctx_, step, n_loc * d);
    LinearForward(ops, *m.eh_proj, cat, n_loc, z, m.cat.bits());
    ctx_.Store(z, n_loc * d);

    // The block (in place: z becomes its output), the head norm, the shared head and the loss.
    LayerForward(m.block, z, m.block.moe ? expert_counts_[m.block.moe_slot].data() : nullptr);
    if (recompute_) m.block.ReleaseActivations();
    m.z.Save(ctx_);
    float* hk = m.hk.Prepare(ctx_, step, n_loc * d);
    m.rstd_h.resize(n_loc);
    ops.RmsNormForward(z, m.head_norm->working.data(), n_loc, d, eps, ctx_.bf16(), hk, m.rstd_h.data());
    m.hk.Save(ctx_);
    float* logits = fp.logits.data();  // the main loss is done with it
    LinearForward(ops, *lm_head_, hk, n_loc, logits, m.hk.bits());
    const float ce_scale =
        micro_batch_targets > 0
            ? static_cast<float>(loss_scale * mtp_depth_weight() / static_cast<double>(micro_batch_targets))
            : 0.0f;
    stats->mtp_ce_sum[k - 1] =
        ops.CrossEntropy(logits, m.targets.data(), n_loc, vocab, ce_scale, backward ? logits : nullptr);
    if (backward) {
      m.d_hk.resize(n_loc * d);
      LinearBackward(ctx_, *lm_head_, hk, logits, n_loc, m.d_hk.data(), GradMode::kWrite);
    }
  }
}

void DeepseekV3Model::MtpBackward(float loss_scale, float* d_hf) {
  kernels::Backend& ops = *ctx_.ops;
  const int64_t n_loc = fp_.n_loc, d = cfg_.hidden_size();
  Scratch::Frame frame(scratch_);
  float* dh = frame.Floats(n_loc * d);      // gradient with respect to h^k
  float* d_prev = frame.Floats(n_loc * d);  // ... with respect to h^{k-1}, from depth k
  float* dcat = frame.Floats(n_loc * 2 * d);
  float* d_half = frame.Floats(n_loc * d);
  float* d_emb = frame.Floats(n_loc * d);
  for (auto it = mtp_.rbegin(); it != mtp_.rend(); ++it) {
    MtpModule& m = **it;
    const int64_t k = m.depth;
    // h^k feeds this depth's head and (k < D) the next depth's hnorm.
    ops.Copy(m.d_hk.data(), dh, n_loc * d);
    if (k < static_cast<int64_t>(mtp_.size())) ops.Add(d_prev, dh, n_loc * d);
    float* dz = d_emb;  // free until the embedding half below
    ops.RmsNormBackward(m.z.values(), m.head_norm->working.data(), m.rstd_h.data(), dh, n_loc, d, dz,
                        m.head_norm->GradForAccumulate(ops));
    LayerBackward(m.block, dz, loss_scale);  // dz: now the gradient of h'
    LinearBackward(ctx_, *m.eh_proj, m.cat.fp32(), dz, n_loc, dcat, GradMode::kWrite, m.cat.bits());
    // The hidden half, through hnorm, into h^{k-1}.
    const SavedActivation& h_prev = k == 1 ? fp_.hf : mtp_[k - 2]->hk;
    ops.Copy2D(dcat + d, 2 * d, d_half, d, n_loc, d, false);
    ops.RmsNormBackward(h_prev.values(), m.hnorm->working.data(), m.rstd_g.data(), d_half, n_loc, d, d_prev,
                        m.hnorm->GradForAccumulate(ops));
    // The embedding half, through enorm, into the shared embedding's rows.
    ops.Copy2D(dcat, 2 * d, d_half, d, n_loc, d, false);
    ops.RmsNormBackward(m.emb.values(), m.enorm->working.data(), m.rstd_e.data(), d_half, n_loc, d, d_emb,
                        m.enorm->GradForAccumulate(ops));
    ops.EmbeddingBackward(m.ids.data(), n_loc, d_emb, d, embed_->GradForAccumulate(ops));
  }
  ops.Add(d_prev, d_hf, n_loc * d);  // depth 1's hnorm input is the main model's h^0
}

}  // namespace moe::model
