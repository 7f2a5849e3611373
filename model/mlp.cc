#include "model/mlp.h"

#include "model/linear.h"

namespace moe::model {

SwiGluMlp::SwiGluMlp(ParamStore& store, const std::string& prefix, int64_t d, int64_t inter,
                     TpSlice tp) {
  const int64_t local = inter / tp.size;
  constexpr ParamSync kTp = ParamSync::kTensorParallel;
  gate_ = store.Add(prefix + "gate_proj.weight", {local, d}, ParamKind::kMatrix, kTp, tp.Spec(0, inter, d));
  up_ = store.Add(prefix + "up_proj.weight", {local, d}, ParamKind::kMatrix, kTp, tp.Spec(0, inter, d));
  down_ = store.Add(prefix + "down_proj.weight", {d, local}, ParamKind::kMatrix, kTp, tp.Spec(1, d, inter));
}

void SwiGluMlp::Forward(const LayerContext& ctx, const float* u, int64_t n, float* y,
                        Saved* s, const uint16_t* u_bf16) const {
  kernels::Backend& ops = *ctx.ops;
  const int64_t inter = gate_->shape[0];
  Scratch::Frame frame(*ctx.scratch);
  s->n = n;
  float* a = s->a.Prepare(ctx, frame, n * inter);
  float* c = s->c.Prepare(ctx, frame, n * inter);
  LinearForward(ops, *gate_, u, n, a, u_bf16);
  LinearForward(ops, *up_, u, n, c, u_bf16);
  s->a.Save(ctx);
  s->c.Save(ctx);
  ops.SwigluForward(a, c, s->m.Output(ctx, n * inter), n * inter);  // m only feeds down_proj
  LinearForward(ops, *down_, s->m.fp32(), n, y, s->m.bits());
  ctx.Store(y, n * down_->shape[0]);
}

void SwiGluMlp::Backward(const LayerContext& ctx, const float* u, const Saved& s, const float* d_y,
                         float* d_u, bool accumulate_du, const uint16_t* u_bf16) {
  kernels::Backend& ops = *ctx.ops;
  const int64_t n = s.n, inter = gate_->shape[0];
  Scratch::Frame frame(*ctx.scratch);
  float* dm = frame.Floats(n * inter);
  // da and dc only feed the gate and up products: BF16 bits in BF16 mode.
  const kernels::ValuesOut da = ctx.OperandOut(frame, n * inter), dc = ctx.OperandOut(frame, n * inter);
  LinearBackward(ctx, *down_, s.m.fp32(), d_y, n, dm, GradMode::kWrite, s.m.bits());
  ops.SwigluBackward(s.a.values(), s.c.values(), dm, da, dc, n * inter);
  LinearBackward(ctx, *gate_, u, da.written(), n, d_u, accumulate_du ? GradMode::kAccumulate : GradMode::kWrite,
                 u_bf16);
  LinearBackward(ctx, *up_, u, dc.written(), n, d_u, GradMode::kAccumulate, u_bf16);
}

}  // namespace moe::model
