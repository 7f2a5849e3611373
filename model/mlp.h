// SwiGLU feed-forward (docs/model.md "SwiGLU and MoE layers", "Backward: SwiGLU"), used for dense layers
// and the shared experts:
//   a = u gate_projᵀ [n, I],  c = u up_projᵀ [n, I],  m = silu(a) ⊙ c [n, I],  y = m down_projᵀ [n, d]
// Under tensor parallelism (Megatron column- then row-parallel), TP rank r holds rows
// [r·I/tp, (r+1)·I/tp) of gate/up and the same columns of down, and y is a partial sum over TP ranks
// (the caller reduce-scatters it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/layer_context.h"
#include "model/saved_activation.h"
#include "model/params.h"

namespace moe::model {

class SwiGluMlp {
 public:
  struct Saved {
    int64_t n = 0;
    SavedActivation a, c, m;  // [n, I] each
    int64_t Bytes() const { return BufferBytes(a, c, m); }
  };

  // Registers `<prefix>gate_proj.weight`, `up_proj.weight` [inter, d] and `down_proj.weight` [d, inter]
  // (this TP rank's slices).
  SwiGluMlp(ParamStore& store, const std::string& prefix, int64_t d, int64_t inter,
            TpSlice tp = {});

  // y [n, d] written.
  // u_bf16 (may be null): u's values as BF16 bits, read in place by the input projections.
  void Forward(const LayerContext& ctx, const float* u, int64_t n, float* y, Saved* saved,
               const uint16_t* u_bf16 = nullptr) const;
  // d_u [n, d] written, or accumulated if accumulate_du. u only feeds the weight gradients, so it may be
  // given as BF16 bits alone (u_bf16 set, u null).
  void Backward(const LayerContext& ctx, const float* u, const Saved& saved, const float* d_y,
                float* d_u, bool accumulate_du, const uint16_t* u_bf16 = nullptr);

 private:
  Param* gate_ = nullptr;
  Param* up_ = nullptr;
  Param* down_ = nullptr;
};

}  // namespace moe::model
