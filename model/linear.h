// Bias-free linear layer y = x Wᵀ on the backend GEMM, W stored [out, in] (the HF nn.Linear layout).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "model/params.h"

namespace moe::model {

enum class GradMode { kWrite, kAccumulate };

// y[n, out] = x[n, in] · Wᵀ.
inline void LinearForward(kernels::Backend& ops, const Param& w, const float* x, int64_t n, float* y) {
  const int64_t out = w.shape[0], in = w.shape[1];
  ops.Gemm(kernels::Transpose::kNo, kernels::Transpose::kYes,
           {n, out, in, x, in, w.working.data(), in, y, out}, 1.0f, 0.0f);
}

// dx[n, in] (= or += per mode) dy · W;  dW += dyᵀ x.  dx may be null (input needs no gradient).
inline void LinearBackward(kernels::Backend& ops, Param& w, const float* x, const float* dy, int64_t n,
                           float* dx, GradMode dx_mode) {
  const int64_t out = w.shape[0], in = w.shape[1];
  if (dx != nullptr) {
    ops.Gemm(kernels::Transpose::kNo, kernels::Transpose::kNo,
             {n, in, out, dy, out, w.working.data(), in, dx, in}, 1.0f,
             dx_mode == GradMode::kAccumulate ? 1.0f : 0.0f);
  }
  ops.Gemm(kernels::Transpose::kYes, kernels::Transpose::kNo,
           {out, in, n, dy, out, x, in, w.grad.data(), in}, 1.0f, 1.0f);
}

}  // namespace moe::model
