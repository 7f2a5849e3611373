// DistributedOptimizer on one process: a finite step updates the weights; a NaN or an infinity in a
// gradient skips the update (masters, moments and working weights untouched) and names the first
// tensor, in the model's order, whose gradient is not finite; in BF16 the matrices' BF16 bits follow
// their working weights through every update.
#include "trainer/distributed_optimizer.h"

#include <cmath>
#include <limits>
#include <vector>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "parallel/local_communicator.h"

namespace moe::trainer {
namespace {

struct Fixture {
  kernels::CpuBackend ops{1};
  parallel::LocalCommunicator world{"world"}, dp{"dp"}, expert_dp{"expert_dp"};
  model::ParamStore params;
  config::OptimizerConfig opt;

  Fixture() {
    params.Add("a.weight", {4, 3}, model::ParamKind::kMatrix);
    params.Add("b.weight", {5}, model::ParamKind::kNorm);
    params.Add("c.weight", {2, 2}, model::ParamKind::kMatrix, model::ParamSync::kExpert);
    params.Initialize(7, 0.02, ops);
    params.RefreshWorking(false, ops);
    opt.set_lr(1e-2);
    opt.set_grad_clip(1.0);
  }
  void SetGrads(float value) {
    params.ForEach([&](model::Param& p) {
      for (int64_t i = 0; i < p.numel(); ++i) p.grad[i] = value * static_cast<float>(i + 1);
    });
  }
  std::vector<std::vector<float>> Working() {
    std::vector<std::vector<float>> w;
    params.ForEach([&](const model::Param& p) {
      std::vector<float> values(p.numel());
      for (int64_t i = 0; i < p.numel(); ++i) values[i] = p.WorkingValue(i);
      w.push_back(std::move(values));
    });
    return w;
  }
};

TEST(DistributedOptimizer, NonFiniteGradientSkipsTheUpdateAndNamesTheTensor) {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    Fixture f;
    DistributedOptimizer optimizer(&f.params, {&f.world, &f.dp, &f.expert_dp}, &f.ops, false);
    f.SetGrads(0.1f);
    const OptimizerStepStats first = optimizer.Step(f.opt, 1e-2, 1);  // a normal step: moments non-zero
    EXPECT_TRUE(first.updated());
    EXPECT_TRUE(std::isfinite(first.grad_norm));
    const auto before = f.Working();
    std::vector<float> state_before;
    for (const auto& piece : optimizer.OwnedPieces()) {
      for (int64_t i = 0; i < piece.size; ++i) {
        state_before.insert(state_before.end(), {piece.master[i], piece.adam_m[i], piece.adam_v[i]});
      }
    }
    f.SetGrads(0.1f);
    f.params.Find("c.weight")->grad[3] = bad;  // the later tensors hold bad values too
    f.params.Find("b.weight")->grad[2] = bad;
    const OptimizerStepStats stats = optimizer.Step(f.opt, 1e-2, 2);
    EXPECT_FALSE(std::isfinite(stats.grad_norm));
    EXPECT_FALSE(stats.updated());
    EXPECT_EQ(stats.first_nonfinite, "b.weight");
    EXPECT_EQ(f.Working(), before);
    std::vector<float> state_after;
    for (const auto& piece : optimizer.OwnedPieces()) {
      for (int64_t i = 0; i < piece.size; ++i) {
        state_after.insert(state_after.end(), {piece.master[i], piece.adam_m[i], piece.adam_v[i]});
      }
    }
    EXPECT_EQ(state_after, state_before);
    // Finite gradients again: the run could go on.
    f.SetGrads(0.1f);
    EXPECT_TRUE(optimizer.Step(f.opt, 1e-2, 2).updated());
    EXPECT_NE(f.Working(), before);
  }
}

// BF16: the matrices' working copy is 2-byte BF16 bits only, the nearest-even rounding of the masters
// after every update; norm weights keep FP32 words holding BF16 values, and no bits.
TEST(DistributedOptimizer, Bf16WorkingCopiesFollowTheMasters) {
  Fixture f;
  f.params.RefreshWorking(true, f.ops);
  DistributedOptimizer optimizer(&f.params, {&f.world, &f.dp, &f.expert_dp}, &f.ops, true);
  auto before = f.Working();
  for (int64_t step = 1; step <= 2; ++step) {
    f.SetGrads(0.1f * static_cast<float>(step));
    ASSERT_TRUE(optimizer.Step(f.opt, 1e-2, step).updated());
    EXPECT_NE(f.Working(), before);
    before = f.Working();
    for (const DistributedOptimizer::OwnedPiece& piece : optimizer.OwnedPieces()) {  // one rank: every element
      const model::Param& p = *piece.param;
      const bool matrix = p.kind == model::ParamKind::kMatrix;
      ASSERT_EQ(p.working_bits() != nullptr, matrix) << p.name;
      ASSERT_EQ(p.working.empty(), matrix) << p.name;
      for (int64_t i = 0; i < piece.size; ++i) {
        const int64_t e = piece.local_begin + i;
        if (matrix) {
          ASSERT_EQ(p.working_bf16[e], moe::FloatToBf16Bits(piece.master[i])) << p.name << " " << e;
        } else {
          ASSERT_EQ(p.working[e], moe::RoundToBf16(piece.master[i])) << p.name << " " << e;
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe::trainer
