// The DeepSeek-V3 model (docs/model.md "The forward pass"): embedding, decoder layers (MLA + dense SwiGLU
// or MoE, pre-RMSNorm residual blocks), final norm, LM head and the losses, with an explicit backward per
// layer.
//
// One call runs a micro-batch of B sequences of T tokens: ids, targets [B, T] (every rank of a TP
// group passes the same micro-batch). Sequence parallelism (Megatron): the residual stream, norms,
// embedding, head and loss hold this TP rank's contiguous 1/tp slice of the B·T tokens; each attention
// or dense/shared-expert block all-gathers its normed input over TP, runs its heads / FFN columns, and
// reduce-scatters its output back to the slice. The routed experts take the slice's tokens directly.
// The hidden stream is FP32 storage holding BF16 values in BF16 mode. Every tensor is a Buffer in the
// backend's memory space; the host touches them only after ops->Synchronize() (base/buffer.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "kernels/backend.h"
#include "model/attention.h"
#include "model/decoder_layer.h"
#include "model/layer_context.h"
#include "model/mlp.h"
#include "model/model_stats.h"  // IsMoeLayer
#include "model/moe.h"
#include "model/mtp.h"
#include "model/params.h"
#include "model/rope.h"
#include "parallel/communicator.h"

namespace moe::model {

struct LossStats {
  double ce_loss_sum = 0;   // Σ over this rank's tokens of the cross-entropy (main model)
  int64_t tokens = 0;       // this rank's tokens with a target
  double balance_loss = 0;  // Σ over MoE layers (MTP blocks' included) of the micro-batch's balance loss
  int64_t dropped = 0;      // routed assignments dropped by the capacity limit (this rank)
  // Multi-token prediction, per depth k = 1..D (index k-1): Σ of the raw cross-entropy L^k over this
  // rank's positions with a target t+k+1, and how many there are.
  std::vector<double> mtp_ce_sum;
  std::vector<int64_t> mtp_tokens;
  double ce_loss() const { return tokens ? ce_loss_sum / tokens : 0.0; }
  // L^k, the mean over this rank's positions (k is 1-based).
  double mtp_ce_loss(int64_t k) const {
    return mtp_tokens[k - 1] ? mtp_ce_sum[k - 1] / mtp_tokens[k - 1] : 0.0;
  }
};

// The process groups the model's layers talk to (null: a one-rank group).
struct ModelParallel {
  parallel::Communicator* tp = nullptr;
  parallel::Communicator* ep = nullptr;
  double capacity_factor = 0.0;  // routed-expert capacity per rank (0: dropless), see MoeDims
};

class DeepseekV3Model {
 public:
  // Builds the parameters (not initialised: call params().Initialize or load weights).
  // `max_positions` sizes the RoPE tables. With num_nextn_predict_layers = D > 0 the D MTP modules
  // (model/mtp.h) are built after the main model's tensors and trained with it.
  DeepseekV3Model(const config::ModelConfig& cfg, Numerics numerics, kernels::Backend* ops,
                  int64_t max_positions, ModelParallel parallel = {});
  ~DeepseekV3Model();

  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  const config::ModelConfig& config() const { return cfg_; }
  Numerics numerics() const { return ctx_.numerics; }

  // Forward (and, if `backward`, backward accumulating parameter gradients) of one micro-batch.
  // ids and targets are host arrays (copied in).
  // The gradient is that of loss_scale · (mean CE over the micro-batch's B·T tokens + balance losses
  // + λ/D · Σ_k L^k with D MTP depths); with sequence parallelism each TP rank contributes its tokens'
  // part. Forward only (backward false) evaluates the MTP losses too.
  // Expert assignment counts are added to expert_counts().
  LossStats Step(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                 bool backward, float loss_scale);

  // Hooks on ranges of parameters [first, end) (ParamStore order), for the optimizer's overlap
  // (trainer/distributed_optimizer.h "Overlap"). grads_ready: during the backward, once their gradients
  // are final for this Step, in a fixed order: lm_head with the MTP modules' tensors, the final norm,
  // each decoder block from the last to the first, the embedding; unwritten ones are zeroed before (the
  // trainer sets it for a step's last micro-batch). weights_needed: in every forward, before their
  // working values are read: the embedding, each block, the final norm with lm_head, the MTP modules.
  using ParamRangeHook = std::function<void(int64_t first, int64_t end)>;
  void set_grads_ready_hook(ParamRangeHook hook) { grads_ready_ = std::move(hook); }
  void set_weights_needed_hook(ParamRangeHook hook) { weights_needed_ = std::move(hook); }

  // Per-layer activation recomputation: the forward keeps only each block's input, the backward
  // recomputes the block before differentiating it (about one extra forward of compute for the memory
  // of L block inputs). Results are bit-identical either way.
  void set_activation_recompute(bool on) { recompute_ = on; }

  // Bytes of activations the last Step saved for its backward (all layers, this rank): the memory
  // that grows with micro-batch and sequence length.
  int64_t SavedActivationBytes() const;

  // Multi-token prediction depths D (0: none) and the weight λ/D of each raw L^k in the training loss.
  int64_t mtp_depths() const { return static_cast<int64_t>(mtp_.size()); }
  double mtp_depth_weight() const;
  // λ for the following steps (DeepSeek-V3 lowers it from 0.3 to 0.1 late in training; 0 evaluates
  // the MTP losses without their gradient).
  void set_mtp_loss_weight(double lambda) { cfg_.set_mtp_loss_weight(lambda); }

  // FP32 logits [n_loc, V] of this rank's token slice (all B·T tokens on one rank), forward only,
  // main model only, copied to the host.
  std::vector<float> Logits(const int32_t* ids, int64_t batch, int64_t seq);
  // The RoPE tables (positions < max_positions) and the layer context, for inference tools.
  const RopeTables& rope() const { return rope_; }

  // Per MoE layer (in layer order): the layer index and its counts [E] since the last reset.
  const std::vector<int64_t>& moe_layer_indices() const { return moe_layer_index_; }
  std::vector<std::vector<int64_t>>& expert_counts() { return expert_counts_; }
  void ResetExpertCounts();
  // The aux-loss-free bias update (docs/model.md "Bias update") from the current counts (already summed
  // over every rank): b_i += γ · sign(mean(c) − c_i).
  void UpdateCorrectionBiases(double gamma);
  // max_i c_i / mean(c) for each MoE layer (docs/model.md "Load statistics").
  std::vector<double> ExpertLoadMaxOverMean() const;

 private:
  // The forward's inputs and the results that the loss and the backward need (kept across steps, so
  // a step reuses its buffers).
  struct ForwardPass {
    int64_t batch = 0, seq = 0, n_loc = 0, offset = 0;
    Buffer<int32_t> positions;    // [B·T]
    Buffer<int32_t> ids;          // [n_loc] this rank's slice of the inputs
    Buffer<int32_t> targets;      // [n_loc]
    Buffer<float> h;              // [n_loc, d] final residual stream
    SavedActivation hf;           // [n_loc, d] after the final norm (h^0 of the MTP depths)
    Buffer<float> rstd_f;         // [n_loc]
    Buffer<float> logits;         // [n_loc, V]
    double balance_loss = 0;
    int64_t dropped = 0;
  };
  // Copies the slice's ids (and targets, if given) in and runs the forward into fp_.
  void RunForward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq);
  // One decoder block on the residual stream h [n_loc, d] (in place); its backward turns dh, the
  // gradient of the block's output, into that of its input (in place).
  void LayerForward(DecoderLayer& L, float* h, int64_t* counts);
  void LayerBackward(DecoderLayer& L, float* dh, float loss_scale);
  // The MoE half of a block: the router sees only the rows an MTP block treats as real.
  void RoutedExpertsForward(DecoderLayer& L, const float* x2, float* out, int64_t* counts);
  void RoutedExpertsBackward(DecoderLayer& L, const float* dh, float loss_scale, float* d_x2);
  // Multi-token prediction (model/mtp.h): every depth's forward and loss after the main model's
  // (with `backward`, each depth's head gradient is taken at once, so one logits buffer serves all
  // depths); the backward adds the gradient reaching h^0 into d_hf.
  void MtpForward(const int32_t* ids, const int32_t* targets, bool backward, float loss_scale, LossStats* stats);
  void MtpBackward(float loss_scale, float* d_hf);
  // ParamStore::FinishGrads on [first, end), then the grads_ready hook.
  void GradsDone(int64_t first, int64_t end);
  // The weights_needed hook, if set.
  void NeedWeights(int64_t first, int64_t end) {
    if (weights_needed_) weights_needed_(first, end);
  }
  bool recompute_ = false;
  ParamRangeHook grads_ready_, weights_needed_;
  int64_t final_norm_index_ = 0, lm_head_index_ = 0;  // their ParamStore indices
  ForwardPass fp_;
  Scratch scratch_;

  config::ModelConfig cfg_;
  LayerContext ctx_;
  ParamStore params_;
  RopeTables rope_;
  Param* embed_ = nullptr;       // [V, d]
  Param* final_norm_ = nullptr;  // [d]
  Param* lm_head_ = nullptr;     // [V, d]
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
  std::vector<std::unique_ptr<MtpModule>> mtp_;
  std::vector<int64_t> moe_layer_index_;
  std::vector<std::vector<int64_t>> expert_counts_;
  std::unique_ptr<parallel::Communicator> own_tp_, own_ep_;  // one-rank groups when none are given
};

// Router settings from the model config.
kernels::RouterParams RouterParamsFrom(const config::ModelConfig& m);

}  // namespace moe::model
