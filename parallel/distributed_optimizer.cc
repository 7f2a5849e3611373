#include "parallel/distributed_optimizer.h"

#include <algorithm>
#include <cmath>

namespace moe::parallel {

DistributedOptimizer::DistributedOptimizer(model::ParamStore* params, SyncGroups groups,
                                           kernels::Backend* ops, bool bf16, int64_t bucket_elements)
    : ops_(ops), bf16_(bf16), world_(groups.world) {
  groups_.resize(3);
  groups_[0].comm = groups.world;
  groups_[1].comm = groups.dp;
  groups_[2].comm = groups.expert_dp;
  params->ForEach([&](model::Param& p) {
    if (!p.trainable()) return;
    Group& g = groups_[p.sync == model::ParamSync::kReplicated        ? 0
                       : p.sync == model::ParamSync::kTensorParallel ? 1
                                                                     : 2];
    g.segments.push_back({&p, g.size, p.decays()});
    g.size += p.numel();
  });
  for (Group& g : groups_) {
    const int64_t ranks = g.comm->size();
    const int64_t wanted = std::max<int64_t>(1, std::min(bucket_elements, g.size));
    g.bucket = (wanted + ranks - 1) / ranks * ranks;
    g.num_buckets = (g.size + g.bucket - 1) / g.bucket;
    g.flat.assign(g.num_buckets * g.bucket, 0.0f);
    const int64_t owned = g.num_buckets * g.block();
    g.adam_m.assign(owned, 0.0f);
    g.adam_v.assign(owned, 0.0f);
    g.grad.assign(owned, 0.0f);
    // Masters of the owned elements, from the (identical) full masters; then free the full copies.
    g.master.assign(owned, 0.0f);
    for (const Segment& s : g.segments) std::copy(s.param->master.begin(), s.param->master.end(), &g.flat[s.begin]);
    for (int64_t b = 0; b < g.num_buckets; ++b) {
      std::copy_n(&g.flat[b * g.bucket + g.comm->rank() * g.block()], g.block(), &g.master[b * g.block()]);
    }
    for (const Segment& s : g.segments) {
      std::vector<float>().swap(s.param->master);
      std::vector<float>().swap(s.param->adam_m);
      std::vector<float>().swap(s.param->adam_v);
    }
  }
}

int64_t DistributedOptimizer::owned_elements() const {
  int64_t n = 0;
  for (const Group& g : groups_) n += static_cast<int64_t>(g.master.size());
  return n;
}

void DistributedOptimizer::Pack(Group& g, bool grads) {
  std::fill(g.flat.begin() + g.size, g.flat.end(), 0.0f);  // padding
  for (const Segment& s : g.segments) {
    const std::vector<float>& src = grads ? s.param->grad : s.param->working;
    std::copy(src.begin(), src.end(), &g.flat[s.begin]);
  }
}

void DistributedOptimizer::Unpack(Group& g) {
  for (const Segment& s : g.segments) {
    std::copy_n(&g.flat[s.begin], s.param->numel(), s.param->working.begin());
  }
}

template <typename Fn>
void DistributedOptimizer::ForEachOwnedRange(Group& g, Fn fn) {
  const int64_t block = g.block(), rank = g.comm->rank();
  for (int64_t b = 0; b < g.num_buckets; ++b) {
    const int64_t lo = b * g.bucket + rank * block, hi = lo + block;  // flat range owned
    for (const Segment& s : g.segments) {
      const int64_t begin = std::max(lo, s.begin);
      const int64_t end = std::min(hi, s.begin + s.param->numel());
      if (begin < end) fn(s, b * block + (begin - lo), begin, end);  // owned-state index, flat range
    }
  }
}

std::vector<DistributedOptimizer::OwnedPiece> DistributedOptimizer::OwnedPieces() {
  std::vector<OwnedPiece> pieces;
  for (Group& g : groups_) {
    ForEachOwnedRange(g, [&](const Segment& s, int64_t o, int64_t begin, int64_t end) {
      pieces.push_back({s.param, begin - s.begin, end - begin, &g.master[o], &g.adam_m[o], &g.adam_v[o]});
    });
  }
  return pieces;
}

void DistributedOptimizer::GatherWorking(Group& g) {
  const int64_t block = g.block();
  std::vector<float> mine(block);
  for (int64_t b = 0; b < g.num_buckets; ++b) {
    std::copy_n(&g.master[b * block], block, mine.data());
    if (bf16_) ops_->RoundToBf16(mine.data(), block);
    g.comm->AllGather(mine.data(), &g.flat[b * g.bucket], block);
  }
  Unpack(g);
}

void DistributedOptimizer::SyncWorkingWeights() {
  for (Group& g : groups_) {
    if (g.size > 0) GatherWorking(g);
  }
}

OptimizerStepStats DistributedOptimizer::Step(const config::OptimizerConfig& opt, double lr,
                                              int64_t step) {
  // 1. Reduce-scatter the gradients, bucket by bucket.
  double sum_sq = 0.0;
  for (Group& g : groups_) {
    if (g.size == 0) continue;
    Pack(g, /*grads=*/true);
    for (int64_t b = 0; b < g.num_buckets; ++b) {
      g.comm->ReduceScatterSum(&g.flat[b * g.bucket], &g.grad[b * g.block()], g.block());
    }
    sum_sq += ops_->SumSquares(g.grad.data(), static_cast<int64_t>(g.grad.size()));
  }
  // 2. Global norm (each element owned exactly once in the world) and clipping.
  world_->AllReduceSum(&sum_sq, 1);
  OptimizerStepStats stats;
  stats.grad_norm = std::sqrt(sum_sq);
  if (opt.grad_clip() > 0) {
    const double coef = opt.grad_clip() / (stats.grad_norm + 1e-6);
    if (coef < 1.0) stats.clip_coef = coef;
  }
  kernels::AdamWParams ap;
  ap.lr = static_cast<float>(lr);
  ap.beta1 = static_cast<float>(opt.beta1());
  ap.beta2 = static_cast<float>(opt.beta2());
  ap.eps = static_cast<float>(opt.eps());
  ap.step = step;
  // 3. AdamW on the owned elements, piece by piece (weight decay differs per parameter), then
  // 4. all-gather the new working values.
  for (Group& g : groups_) {
    if (g.size == 0) continue;
    if (stats.clip_coef != 1.0) ops_->Scale(g.grad.data(), static_cast<int64_t>(g.grad.size()),
                                            static_cast<float>(stats.clip_coef));
    ForEachOwnedRange(g, [&](const Segment& s, int64_t o, int64_t begin, int64_t end) {
      ap.weight_decay = s.decay ? static_cast<float>(opt.weight_decay()) : 0.0f;
      ops_->AdamW(ap, &g.master[o], &g.grad[o], &g.adam_m[o], &g.adam_v[o], end - begin);
    });
    GatherWorking(g);
  }
  return stats;
}

}  // namespace moe::parallel
