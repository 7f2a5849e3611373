// One pre-norm decoder block (docs/model.md): h += MLA(RMSNorm(h)); h += FFN(RMSNorm(h)), on this rank's
// token slice, with the activations its backward needs. The main model stacks L of them; each MTP
// module (model/mtp.h) owns one more. Private to the model library.
#pragma once

#include <cstdint>
#include <memory>

#include "base/buffer.h"
#include "model/attention.h"
#include "model/mlp.h"
#include "model/moe.h"
#include "model/params.h"
#include "model/saved_activation.h"

namespace moe::model {

struct DecoderLayer {
  Param* input_norm = nullptr;  // [d]
  Param* post_norm = nullptr;   // [d]
  std::unique_ptr<MlaAttention> attn;
  std::unique_ptr<SwiGluMlp> mlp;     // dense layers: the FFN; MoE layers: the shared expert (or null)
  std::unique_ptr<MoeLayer> moe;      // MoE layers: the routed experts
  int64_t moe_slot = -1;              // index into the model's expert counts
  int64_t first_param = 0, end_param = 0;  // its parameters in the ParamStore: [first, end)
  // MTP depth k (0: a main layer). An MTP block runs on the whole T positions of each sequence so that
  // sequence parallelism slices it like the main layers, but only the first T - k positions are real:
  // the rest feed nothing (causal attention; their loss targets are ignored), and the router sees only
  // the real ones, so expert counts, balance loss and capacity are those of the T - k positions.
  int64_t mtp_depth = 0;
  Buffer<int32_t> real_rows;          // MTP: this rank's rows among the first T - k of their sequence

  // Saved activations of the last forward (n_loc = this rank's tokens, n = the micro-batch's).
  SavedActivation h_in;      // [n_loc, d] block input
  SavedActivation x1;        // [n_loc, d] normed input to attention
  Buffer<float> rstd1;       // [n_loc]
  SavedActivation x1_full;   // [n, d] gathered over TP (unused with one TP rank: x1 is the whole input)
  SavedActivation h_mid;     // [n_loc, d] after the attention residual
  SavedActivation x2;        // [n_loc, d] normed input to the FFN
  Buffer<float> rstd2;       // [n_loc]
  SavedActivation x2_full;   // [n, d] gathered (dense FFN / shared expert)
  SavedActivation x2_real;   // MTP MoE: the rows of x2 the router sees
  MlaAttention::Saved attn_saved;
  SwiGluMlp::Saved mlp_saved;
  MoeLayer::Saved moe_saved;

  int64_t SavedBytes() const {
    return BufferBytes(h_in, x1, rstd1, x1_full, h_mid, x2, rstd2, x2_full, x2_real) + attn_saved.Bytes() +
           mlp_saved.Bytes() + moe_saved.Bytes();
  }
  // Activation recomputation: drop everything but the block input after the forward.
  void ReleaseActivations() {
    for (SavedActivation* v : {&x1, &x1_full, &h_mid, &x2, &x2_full, &x2_real}) v->reset();
    rstd1.reset();
    rstd2.reset();
    attn_saved = {};
    mlp_saved = {};
    moe_saved = {};
  }
};

}  // namespace moe::model
