// Multi-token prediction (DeepSeek-V3 report §2.2; docs/model.md "Multi-token prediction"). Module k of
// D predicts token t+k+1 at position t from the previous depth's hidden state and the embedding of token
// t+k, through its own decoder block and the main model's embedding and output head:
//
//   h^0 = the main model's final-normed hidden states
//   h'  = [RMSNorm(E[x_{t+k}]; enorm) ; RMSNorm(h^{k-1}_t; hnorm)] · eh_projᵀ     (embedding first)
//   h^k = RMSNorm(DecoderBlock_k(h'); shared_head.norm);   logits^k = h^k · lm_headᵀ
//   L^k = mean CE(logits^k_t, x_{t+k+1}) over the B·(T-k) positions t < T-k
//   L_MTP = λ/D · Σ_k L^k
//
// Module k's tensors are named as Hugging Face checkpoints name them, under layer index L+k-1
// (DeepSeek-V3: model.layers.61.). Private to the model library.
#pragma once

#include <cstdint>

#include "base/buffer.h"
#include "model/decoder_layer.h"
#include "model/params.h"

namespace moe::model {

struct MtpModule {
  int64_t depth = 0;          // k, 1-based
  Param* enorm = nullptr;     // [d]
  Param* hnorm = nullptr;     // [d]
  Param* eh_proj = nullptr;   // [d, 2d]: columns 0..d-1 take the embedding, d..2d-1 the hidden state
  Param* head_norm = nullptr; // [d] shared_head.norm
  DecoderLayer block;

  // This step's inputs for this rank's token slice [n_loc]: x_{t+k} and x_{t+k+1} (-1 past the
  // sequence's end, where the input id is a placeholder whose rows receive no gradient).
  Buffer<int32_t> ids, targets;
  // Saved activations.
  SavedActivation emb;          // E[ids] [n_loc, d]
  Buffer<float> rstd_e;         // enorm's rstd
  SavedActivation cat;          // [n_loc, 2d] the normed embedding and hidden state, side by side
  Buffer<float> rstd_g;         // hnorm's rstd
  SavedActivation z;            // [n_loc, d] the block's output
  SavedActivation hk;           // [n_loc, d] h^k
  Buffer<float> rstd_h;         // shared_head.norm's rstd
  Buffer<float> d_hk;           // [n_loc, d] gradient of this depth's loss with respect to h^k

  int64_t SavedBytes() const {
    return BufferBytes(emb, rstd_e, cat, rstd_g, z, hk, rstd_h, d_hk) + block.SavedBytes();
  }
};

}  // namespace moe::model
