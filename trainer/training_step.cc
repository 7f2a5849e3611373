#include "trainer/training_step.h"

#include <algorithm>

#include "base/status.h"

namespace moe::trainer {
namespace {

// Sums every MoE layer's expert counts over the world (each rank routed different tokens), so the
// bias update sees the whole global batch and stays identical on every rank.
void ReduceExpertCounts(model::DeepseekV3Model& net, parallel::Communicator& world) {
  std::vector<int64_t> flat;
  for (const auto& c : net.expert_counts()) flat.insert(flat.end(), c.begin(), c.end());
  if (flat.empty()) return;
  world.AllReduceSum(flat.data(), static_cast<int64_t>(flat.size()));
  size_t o = 0;
  for (auto& c : net.expert_counts()) {
    std::copy_n(&flat[o], c.size(), c.begin());
    o += c.size();
  }
}

}  // namespace

absl::StatusOr<TrainingModel> CreateTrainingModel(
    const config::TrainConfig& cfg, kernels::Backend& ops, int64_t max_positions, const model::ModelParallel& parallel,
    SyncGroups groups, const std::function<absl::Status(model::ParamStore&)>& load_weights) {
  const bool bf16 = cfg.precision() == config::BF16;
  TrainingModel m;
  m.net = std::make_unique<model::DeepseekV3Model>(cfg.model(), bf16 ? model::Numerics::kBf16 : model::Numerics::kFp32,
                                                   &ops, max_positions, parallel);
  m.net->set_activation_recompute(cfg.activation_recompute());
  m.net->params().Initialize(cfg.seed(), cfg.model().initializer_range(), ops);
  m.net->params().RefreshWorking(bf16, ops);
  if (load_weights) RETURN_IF_ERROR(load_weights(m.net->params()));
  m.optimizer = std::make_unique<DistributedOptimizer>(&m.net->params(), groups, &ops, bf16,
                                                       cfg.parallel().grad_bucket_elements(),
                                                       cfg.parallel().overlap_param_gather());
  if (cfg.parallel().overlap_param_gather()) {  // each forward finishes the gathers of what it reads
    DistributedOptimizer* optimizer = m.optimizer.get();
    m.net->set_weights_needed_hook([optimizer](int64_t first, int64_t end) { optimizer->WeightsNeeded(first, end); });
  }
  return m;
}

void LossSums::Add(const model::LossStats& s) {
  sums_[0] += s.ce_loss_sum;
  sums_[1] += static_cast<double>(s.tokens);
  for (int64_t k = 0; k < depths_; ++k) {
    sums_[2 + 2 * k] += s.mtp_ce_sum[k];
    sums_[3 + 2 * k] += static_cast<double>(s.mtp_tokens[k]);
  }
}

double LossSums::weighted_mtp_loss(double depth_weight) const {
  double sum = 0;
  for (int64_t k = 1; k <= depths_; ++k) sum += mtp_loss(k);
  return depth_weight * sum;
}

StepOutcome RunTrainingStep(model::DeepseekV3Model& net, DistributedOptimizer& optimizer,
                            parallel::Communicator& world, const config::TrainConfig& cfg,
                            int64_t step, double lr, int64_t num_micro, int64_t micro_batch, int64_t seq,
                            float loss_scale, const FillMicroBatch& fill) {
  StepOutcome out;
  out.losses = LossSums(net.mtp_depths());
  net.params().ZeroGrads();
  net.ResetExpertCounts();
  std::vector<int32_t> ids(micro_batch * seq), targets(micro_batch * seq);
  double sums[2] = {0, 0};  // balance loss (the same on TP ranks), dropped assignments
  for (int64_t m = 0; m < num_micro; ++m) {
    fill(m, ids.data(), targets.data());
    // The last backward finishes the gradients: the optimizer may start reducing them as they come.
    if (m == num_micro - 1 && cfg.parallel().overlap_grad_reduce()) {
      net.set_grads_ready_hook([&](int64_t first, int64_t end) { optimizer.GradsReady(first, end); });
    }
    const model::LossStats s = net.Step(ids.data(), targets.data(), micro_batch, seq, true, loss_scale);
    net.set_grads_ready_hook(nullptr);
    out.losses.Add(s);
    sums[0] += s.balance_loss / static_cast<double>(num_micro);
    sums[1] += static_cast<double>(s.dropped);
  }
  out.optimizer = optimizer.Step(cfg.optimizer(), lr, step);
  if (!out.optimizer.updated()) return out;  // the same verdict on every rank: the norm is global
  out.losses.AllReduce(world);
  world.AllReduceSum(sums, 2);
  out.balance_loss = sums[0] / world.size();
  out.dropped = sums[1];
  ReduceExpertCounts(net, world);
  out.load = net.ExpertLoadMaxOverMean();
  net.UpdateCorrectionBiases(cfg.model().bias_update_speed());
  return out;
}

}  // namespace moe::trainer
