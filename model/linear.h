// Bias-free linear layer y = x Wᵀ on the backend GEMM, W stored [out, in] (the HF nn.Linear layout).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "model/layer_context.h"
#include "model/params.h"

namespace moe::model {

enum class GradMode { kWrite, kAccumulate };

// y[n, out] = x[n, in] · Wᵀ. x_bf16 (may be null): the same values as BF16 bits (a saved activation
// already kept), which the product then reads in place. W is read as its BF16 bits when it keeps them.
inline void LinearForward(kernels::Backend& ops, const Param& w, const float* x, int64_t n, float* y,
                          const uint16_t* x_bf16 = nullptr) {
  const int64_t out = w.shape[0], in = w.shape[1];
  kernels::GemmProblem p = WithWorkingB({n, out, in, x, in, nullptr, in, y, out}, w);
  p.a_bf16 = x_bf16;
  ops.Gemm(kernels::Transpose::kNo, kernels::Transpose::kYes, p, 1.0f, 0.0f);
}

// dx[n, in] (= or += per mode) dy · W;  dW += dyᵀ x.  dx may be null (input needs no gradient). x may be
// given as BF16 bits instead (x_bf16: a saved activation kept as BF16; x is then null). dy is FP32 words
// or BF16 bits (ctx.OperandOut); in BF16 mode an FP32 dy that feeds both products is converted to BF16
// once.
inline void LinearBackward(const LayerContext& ctx, Param& w, const float* x, kernels::ValuesIn dy, int64_t n,
                           float* dx, GradMode dx_mode, const uint16_t* x_bf16 = nullptr) {
  const int64_t out = w.shape[0], in = w.shape[1];
  Scratch::Frame frame(*ctx.scratch);
  const uint16_t* dy_bf16 =
      dy.bf16 != nullptr ? dy.bf16 : dx != nullptr ? ctx.OperandBits(frame, dy.f32, n * out) : nullptr;
  if (dx != nullptr) {
    kernels::GemmProblem p = WithWorkingB({n, in, out, dy.f32, out, nullptr, in, dx, in}, w);
    p.a_bf16 = dy_bf16;
    ctx.ops->Gemm(kernels::Transpose::kNo, kernels::Transpose::kNo, p, 1.0f,
                  dx_mode == GradMode::kAccumulate ? 1.0f : 0.0f);
  }
  kernels::GemmProblem wgrad{out, in, n, dy.f32, out, x, in, w.grad.data(), in};
  wgrad.a_bf16 = dy_bf16;
  wgrad.b_bf16 = x_bf16;
  ctx.ops->Gemm(kernels::Transpose::kYes, kernels::Transpose::kNo, wgrad, 1.0f, w.TakeGradBeta());
}

}  // namespace moe::model
