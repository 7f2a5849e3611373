// The model and optimizer as `train` sets them up, and one training step as it runs it, both shared
// with tools/bench_step so the benchmark times exactly the trainer's step. The step: zero the gradients and expert counts, forward and backward every micro-batch of
// this rank, the optimizer (reduce-scatter, global-norm clip, AdamW, all-gather), then the losses and
// expert counts summed over the world and the aux-loss-free bias update (docs/model.md "Optimizer step").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "trainer/distributed_optimizer.h"

namespace moe::trainer {

// The network for cfg (numerics from cfg.precision, activation recompute as configured, RoPE tables for
// max_positions) with seeded initial weights and their working copies, and its ZeRO-1 optimizer over
// `groups`, which takes the masters over. load_weights (optional: --init_from) replaces the seeded
// weights first; it must leave the working copies refreshed.
struct TrainingModel {
  std::unique_ptr<model::DeepseekV3Model> net;
  std::unique_ptr<DistributedOptimizer> optimizer;
};
absl::StatusOr<TrainingModel> CreateTrainingModel(
    const config::TrainConfig& cfg, kernels::Backend& ops, int64_t max_positions, const model::ModelParallel& parallel,
    SyncGroups groups, const std::function<absl::Status(model::ParamStore&)>& load_weights = nullptr);

// The cross-entropy sums of micro-batches (main model and each MTP depth), summed over micro-batches
// and then over ranks, as global means.
class LossSums {
 public:
  explicit LossSums(int64_t mtp_depths) : sums_(2 + 2 * mtp_depths, 0.0), depths_(mtp_depths) {}
  void Add(const model::LossStats& s);
  void AllReduce(parallel::Communicator& group) { group.AllReduceSum(sums_.data(), static_cast<int64_t>(sums_.size())); }
  double ce_loss() const { return Mean(0); }
  double tokens() const { return sums_[1]; }
  // L^k, the raw loss of depth k (1-based), and λ/D · Σ_k L^k.
  double mtp_loss(int64_t k) const { return Mean(2 * k); }
  double weighted_mtp_loss(double depth_weight) const;

 private:
  double Mean(size_t i) const { return sums_[i + 1] > 0 ? sums_[i] / sums_[i + 1] : 0.0; }
  std::vector<double> sums_;  // {CE sum, tokens} of the main model, then of each depth
  int64_t depths_;
};

struct StepOutcome {
  LossSums losses{0};             // summed over the world
  double balance_loss = 0;        // mean over micro-batches and ranks
  double dropped = 0;             // routed assignments over capacity, whole world
  OptimizerStepStats optimizer;   // !optimizer.updated(): nothing below happened (no bias update)
  std::vector<double> load;       // max/mean expert load per MoE layer
};

// The micro-batch source: fills ids and targets [micro_batch, seq] of micro-batch m of this step.
using FillMicroBatch = std::function<void(int64_t m, int32_t* ids, int32_t* targets)>;

// Collective over `world`. loss_scale weighs each micro-batch's mean (1 / (micro-batches · DP ranks)
// for the mean over the global batch).
StepOutcome RunTrainingStep(model::DeepseekV3Model& net, DistributedOptimizer& optimizer,
                            parallel::Communicator& world, const config::TrainConfig& cfg,
                            int64_t step, double lr, int64_t num_micro, int64_t micro_batch, int64_t seq,
                            float loss_scale, const FillMicroBatch& fill);

}  // namespace moe::trainer
