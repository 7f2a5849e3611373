// DistributedOptimizer over several ranks (run as 3 ranks by the distributed_optimizer_mpi_test
// sh_test; it holds for any world size): the staged path (reduce-scatter, sharded AdamW, all-gather of
// the working copies, FP32 words in FP32 mode and BF16 bits in BF16 mode) gives every rank exactly the
// working weights of a one-process optimizer fed the summed gradients. Buckets smaller than the group
// (and not a multiple of the world size) put tensors across bucket and owner boundaries.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "parallel/communicator_mpi.h"
#include "parallel/local_communicator.h"
#include "trainer/distributed_optimizer.h"

namespace moe::trainer {
namespace {

constexpr double kTimeout = 30;

void AddParams(model::ParamStore* params) {
  params->Add("a.weight", {7, 5}, model::ParamKind::kMatrix);
  params->Add("b.weight", {9}, model::ParamKind::kNorm);
  params->Add("c.weight", {4, 6}, model::ParamKind::kMatrix);
  params->Add("d.weight", {3, 11}, model::ParamKind::kMatrix, model::ParamSync::kExpert);
  kernels::CpuBackend ops(1);
  params->Initialize(11, 0.5, ops);
}

// Gradient of element i of `p` at `step` on `rank` (small integers over 64: exact sums in FP32).
float Grad(const model::Param& p, int64_t i, int64_t step, int rank) {
  return static_cast<float>((i * 7 + step * 3 + rank * 5 + static_cast<int64_t>(p.name[0])) % 13 - 6) / 64.0f;
}

// Every working value of `params`, in order.
std::vector<float> Working(const model::ParamStore& params) {
  std::vector<float> w;
  params.ForEach([&](const model::Param& p) {
    for (int64_t i = 0; i < p.numel(); ++i) w.push_back(p.WorkingValue(i));
  });
  return w;
}

void CheckAgainstOneProcess(bool bf16) {
  std::unique_ptr<parallel::MpiCommunicator> world = parallel::MpiCommunicator::World(kTimeout);
  const int ranks = world->size();
  kernels::CpuBackend ops(1);
  config::OptimizerConfig opt;
  opt.set_lr(1e-2);
  opt.set_grad_clip(0.5);  // clips: the norm is reduced over the world
  opt.set_weight_decay(0.1);

  model::ParamStore staged_params, local_params, overlap_params;
  for (model::ParamStore* p : {&staged_params, &local_params, &overlap_params}) {
    AddParams(p);
    p->RefreshWorking(bf16, ops);
  }
  // The world is every group here: replicated and expert tensors alike are summed over all ranks.
  DistributedOptimizer staged(&staged_params, {world.get(), world.get(), world.get()}, &ops, bf16,
                              /*bucket_elements=*/17);
  // Overlap: buckets started from GradsReady as a backward would report the tensors (last first), and
  // the weight gathers left in flight by Step, finished as a forward would ask for them.
  DistributedOptimizer overlap(&overlap_params, {world.get(), world.get(), world.get()}, &ops, bf16,
                               /*bucket_elements=*/17, /*overlap_param_gather=*/true);
  parallel::LocalCommunicator lw("world"), ldp("dp"), lep("expert_dp");
  DistributedOptimizer local(&local_params, {&lw, &ldp, &lep}, &ops, bf16);

  for (int64_t step = 1; step <= 3; ++step) {
    staged_params.ForEach([&](model::Param& p) {
      if (!p.trainable()) return;
      for (int64_t i = 0; i < p.numel(); ++i) p.grad[i] = Grad(p, i, step, world->rank());
    });
    // Each tensor's gradient is written just before it is reported, as a backward does (a bucket
    // started early would pack the NaN left before); step 1 leaves the first tensor unreported (Step
    // starts what is left), step 2 reports them all at once.
    std::vector<model::Param*> in_order;
    overlap_params.ForEach([&](model::Param& p) {
      in_order.push_back(&p);
      if (p.trainable()) std::fill(p.grad.begin(), p.grad.end(), std::nanf(""));
    });
    for (int64_t k = static_cast<int64_t>(in_order.size()) - 1; k >= 0; --k) {
      model::Param& p = *in_order[k];
      if (p.trainable()) {
        for (int64_t i = 0; i < p.numel(); ++i) p.grad[i] = Grad(p, i, step, world->rank());
      }
      if (step != 2 && (step != 1 || k > 0)) overlap.GradsReady(k, k + 1);
    }
    if (step == 2) overlap.GradsReady(0, overlap_params.size());
    local_params.ForEach([&](model::Param& p) {
      if (!p.trainable()) return;
      for (int64_t i = 0; i < p.numel(); ++i) {
        float sum = 0.0f;
        for (int r = 0; r < ranks; ++r) sum += Grad(p, i, step, r);
        p.grad[i] = sum;
      }
    });
    const OptimizerStepStats a = staged.Step(opt, 1e-2, step);
    const OptimizerStepStats b = local.Step(opt, 1e-2, step);
    const OptimizerStepStats c = overlap.Step(opt, 1e-2, step);
    ASSERT_TRUE(a.updated() && b.updated() && c.updated());
    EXPECT_EQ(a.grad_norm, c.grad_norm);
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-12 * b.grad_norm);
    EXPECT_LT(a.clip_coef, 1.0);  // the check covers clipping
    ops.Synchronize();
    ASSERT_EQ(Working(staged_params), Working(local_params)) << "step " << step << (bf16 ? " BF16" : " FP32");
    if (step == 1) {
      overlap.WeightsNeeded(0, overlap_params.size());
    } else {
      if (step == 2) overlap.WeightsNeeded(0, 2);
      overlap.FinishWeightSync();
    }
    ASSERT_EQ(Working(overlap_params), Working(staged_params)) << "overlap, step " << step;
  }
  staged_params.ForEach([&](const model::Param& p) {  // BF16: matrices hold bits only
    EXPECT_EQ(p.working_bits() != nullptr, bf16 && p.kind == model::ParamKind::kMatrix) << p.name;
  });
}

TEST(DistributedOptimizerMpi, Fp32StagedEqualsOneProcess) { CheckAgainstOneProcess(false); }
TEST(DistributedOptimizerMpi, Bf16StagedEqualsOneProcess) { CheckAgainstOneProcess(true); }

}  // namespace
}  // namespace moe::trainer
