#include "model/attention.h"

#include "model/linear.h"

namespace moe::model {

MlaAttention::MlaAttention(ParamStore& store, const std::string& prefix, const MlaDims& dims)
    : dims_(dims) {
  const int64_t hg = dims.heads, h = dims.local_heads(), d = dims.d, dqk = dims.qk_dim();
  const int64_t dkv = dims.nope_dim + dims.v_dim;
  const TpSlice& tp = dims.tp;
  constexpr ParamSync kTp = ParamSync::kTensorParallel;
  if (dims.q_lora_rank > 0) {
    const int64_t rq = dims.q_lora_rank;
    q_a_proj_ = store.Add(prefix + "q_a_proj.weight", {rq, d}, ParamKind::kMatrix);
    q_a_layernorm_ = store.Add(prefix + "q_a_layernorm.weight", {rq}, ParamKind::kNorm);
    q_b_proj_ = store.Add(prefix + "q_b_proj.weight", {h * dqk, rq}, ParamKind::kMatrix, kTp,
                          tp.Spec(0, hg * dqk, rq));
  } else {
    q_proj_ = store.Add(prefix + "q_proj.weight", {h * dqk, d}, ParamKind::kMatrix, kTp,
                        tp.Spec(0, hg * dqk, d));
  }
  kv_a_proj_ = store.Add(prefix + "kv_a_proj_with_mqa.weight", {dims.kv_lora_rank + dims.rope_dim, d},
                         ParamKind::kMatrix);
  kv_a_layernorm_ = store.Add(prefix + "kv_a_layernorm.weight", {dims.kv_lora_rank}, ParamKind::kNorm);
  kv_b_proj_ = store.Add(prefix + "kv_b_proj.weight", {h * dkv, dims.kv_lora_rank}, ParamKind::kMatrix,
                         kTp, tp.Spec(0, hg * dkv, dims.kv_lora_rank));
  o_proj_ = store.Add(prefix + "o_proj.weight", {d, h * dims.v_dim}, ParamKind::kMatrix, kTp,
                      tp.Spec(1, d, hg * dims.v_dim));
}

kernels::RopeView MlaAttention::QueryRopeView(const RopeTables& rope, const int32_t* positions,
                                              float* q, int64_t n) const {
  kernels::RopeView v;
  v.x = q;
  v.num_tokens = n;
  v.num_heads = dims_.local_heads();
  v.token_stride = dims_.local_heads() * dims_.qk_dim();
  v.head_stride = dims_.qk_dim();
  v.offset = dims_.nope_dim;
  v.half_dim = dims_.rope_dim / 2;
  v.positions = positions;
  v.cos = rope.cos.data();
  v.sin = rope.sin.data();
  return v;
}

kernels::RopeView MlaAttention::KeyRopeView(const RopeTables& rope, const int32_t* positions,
                                            float* kr, int64_t n) const {
  kernels::RopeView v = QueryRopeView(rope, positions, kr, n);
  v.num_heads = 1;
  v.token_stride = dims_.rope_dim;
  v.head_stride = dims_.rope_dim;
  v.offset = 0;
  return v;
}

void MlaAttention::Forward(const LayerContext& ctx, const RopeTables& rope, const int32_t* positions,
                           const float* u, int64_t batch, int64_t seq, float* out,
                           Saved* s, const uint16_t* u_bf16) const {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = batch * seq, h = dims_.local_heads(), dqk = dims_.qk_dim(), dn = dims_.nope_dim;
  const int64_t dv = dims_.v_dim, rkv = dims_.kv_lora_rank, dr = dims_.rope_dim;
  s->batch = batch;
  s->seq = seq;
  Scratch::Frame frame(*ctx.scratch);

  // Queries.
  float* q = s->q.Prepare(ctx, frame, n * h * dqk);
  if (q_a_proj_ != nullptr) {
    const int64_t rq = dims_.q_lora_rank;
    float* qa = s->qa.Prepare(ctx, frame, n * rq);
    float* cq = s->cq.Prepare(ctx, frame, n * rq);
    s->qa_rstd.resize(n);
    LinearForward(ops, *q_a_proj_, u, n, qa, u_bf16);
    s->qa.Save(ctx);
    ops.RmsNormForward(qa, q_a_layernorm_->working.data(), n, rq, kLatentNormEps, ctx.bf16(), cq,
                       s->qa_rstd.data());
    s->cq.Save(ctx);
    LinearForward(ops, *q_b_proj_, cq, n, q, s->cq.bits());
  } else {
    LinearForward(ops, *q_proj_, u, n, q, u_bf16);
  }
  ctx.Store(q, n * h * dqk);
  ops.RopeForward(QueryRopeView(rope, positions, q, n));
  s->q.Save(ctx);

  // Keys and values from the compressed latent.
  float* a = frame.Floats(n * (rkv + dr));
  LinearForward(ops, *kv_a_proj_, u, n, a, u_bf16);  // stored: its parts are rounded below
  float* ckv_in = s->ckv_in.Prepare(ctx, frame, n * rkv);
  float* kr = frame.Floats(n * dr);
  ops.Copy2D(a, rkv + dr, ckv_in, rkv, n, rkv, false);
  ops.Copy2D(a + rkv, rkv + dr, kr, dr, n, dr, false);
  s->ckv_in.Save(ctx);
  s->ckv_rstd.resize(n);
  float* ckv = s->ckv.Prepare(ctx, frame, n * rkv);
  ops.RmsNormForward(ckv_in, kv_a_layernorm_->working.data(), n, rkv, kLatentNormEps, ctx.bf16(), ckv,
                     s->ckv_rstd.data());
  s->ckv.Save(ctx);
  ctx.Store(kr, n * dr);  // as kv_a_proj's output, then again as RoPE's
  ops.RopeForward(KeyRopeView(rope, positions, kr, n));
  ctx.Store(kr, n * dr);

  float* kv = frame.Floats(n * h * (dn + dv));
  LinearForward(ops, *kv_b_proj_, ckv, n, kv, s->ckv.bits());  // stored: k and v round it when saved
  float* k = s->k.Prepare(ctx, frame, n * h * dqk);
  float* v = s->v.Prepare(ctx, frame, n * h * dv);
  // K = [kN ; RoPE(kr)] per head (the rope key is shared by the heads), V from kv's value columns.
  ops.Copy2D(kv, dn + dv, k, dqk, n * h, dn, false);
  for (int64_t hh = 0; hh < h; ++hh) ops.Copy2D(kr, dr, k + hh * dqk + dn, h * dqk, n, dr, false);
  ops.Copy2D(kv + dn, dn + dv, v, dv, n * h, dv, false);
  s->k.Save(ctx);
  s->v.Save(ctx);

  // Attention and output projection.
  float* o = s->o.Prepare(ctx, frame, n * h * dv);
  s->lse.resize(batch * h * seq);
  const kernels::AttentionShape shape{batch, seq, h, dqk, dv, dims_.softmax_scale};
  ops.AttentionForward(shape, q, k, v, o, s->lse.data());
  s->o.Save(ctx);
  LinearForward(ops, *o_proj_, o, n, out, s->o.bits());
  ctx.Store(out, n * dims_.d);
}

void MlaAttention::Backward(const LayerContext& ctx, const RopeTables& rope,
                            const int32_t* positions, const float* u, const Saved& s,
                            const float* d_out, float* d_u, const uint16_t* u_bf16) {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = s.batch * s.seq, h = dims_.local_heads(), dqk = dims_.qk_dim(), dn = dims_.nope_dim;
  const int64_t dv = dims_.v_dim, rkv = dims_.kv_lora_rank, dr = dims_.rope_dim;

  Scratch::Frame frame(*ctx.scratch);
  float* d_o = frame.Floats(n * h * dv);
  LinearBackward(ctx, *o_proj_, s.o.fp32(), d_out, n, d_o, GradMode::kWrite, s.o.bits());
  const float* o = s.o.Load(ctx, frame);

  float* dq = frame.Floats(n * h * dqk);
  float* dk = frame.Floats(n * h * dqk);
  float* dvv = frame.Floats(n * h * dv);
  const kernels::AttentionShape shape{s.batch, s.seq, h, dqk, dv, dims_.softmax_scale};
  ops.AttentionBackward(shape, s.q.Load(ctx, frame), s.k.Load(ctx, frame), s.v.Load(ctx, frame), o,
                        s.lse.data(), d_o, dq, dk, dvv);

  // Keys: nope parts and values go to kv_b_proj's output; the shared RoPE key sums over heads
  // (in head order).
  float* dkv = frame.Floats(n * h * (dn + dv));
  float* dkr = frame.Floats(n * dr);
  ops.Copy2D(dk, dqk, dkv, dn + dv, n * h, dn, false);
  ops.Copy2D(dvv, dv, dkv + dn, dn + dv, n * h, dv, false);
  for (int64_t hh = 0; hh < h; ++hh) ops.Copy2D(dk + hh * dqk + dn, h * dqk, dkr, dr, n, dr, hh > 0);
  ops.RopeBackward(KeyRopeView(rope, positions, dkr, n));

  float* dckv = frame.Floats(n * rkv);
  LinearBackward(ctx, *kv_b_proj_, s.ckv.fp32(), dkv, n, dckv, GradMode::kWrite, s.ckv.bits());
  float* dckv_in = frame.Floats(n * rkv);
  ops.RmsNormBackward(s.ckv_in.values(), kv_a_layernorm_->working.data(), s.ckv_rstd.data(), dckv, n,
                      rkv, dckv_in, kv_a_layernorm_->GradForAccumulate(ops));
  float* da = frame.Floats(n * (rkv + dr));
  ops.Copy2D(dckv_in, rkv, da, rkv + dr, n, rkv, false);
  ops.Copy2D(dkr, dr, da + rkv, rkv + dr, n, dr, false);
  LinearBackward(ctx, *kv_a_proj_, u, da, n, d_u, GradMode::kWrite, u_bf16);

  // Queries: undo RoPE on the rope part (dq is in rotated coordinates), then the projections.
  ops.RopeBackward(QueryRopeView(rope, positions, dq, n));
  if (q_a_proj_ != nullptr) {
    const int64_t rq = dims_.q_lora_rank;
    float* dcq = frame.Floats(n * rq);
    float* dqa = frame.Floats(n * rq);
    LinearBackward(ctx, *q_b_proj_, s.cq.fp32(), dq, n, dcq, GradMode::kWrite, s.cq.bits());
    ops.RmsNormBackward(s.qa.values(), q_a_layernorm_->working.data(), s.qa_rstd.data(), dcq, n, rq,
                        dqa, q_a_layernorm_->GradForAccumulate(ops));
    LinearBackward(ctx, *q_a_proj_, u, dqa, n, d_u, GradMode::kAccumulate, u_bf16);
  } else {
    LinearBackward(ctx, *q_proj_, u, dq, n, d_u, GradMode::kAccumulate, u_bf16);
  }
}

}  // namespace moe::model
