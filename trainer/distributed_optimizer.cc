#include "trainer/distributed_optimizer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace moe::trainer {

DistributedOptimizer::DistributedOptimizer(model::ParamStore* params, SyncGroups groups,
                                           kernels::Backend* ops, bool bf16, int64_t bucket_elements,
                                           bool overlap_param_gather)
    : ops_(ops), bf16_(bf16), overlap_param_gather_(overlap_param_gather), world_(groups.world) {
  groups_.resize(3);
  groups_[0].comm = groups.world;
  groups_[1].comm = groups.dp;
  groups_[2].comm = groups.expert_dp;
  params->ForEach([&](model::Param& p) {
    if (!p.trainable()) {
      segment_of_.push_back({-1, -1});
      return;
    }
    order_.push_back(&p);
    const int group = p.sync == model::ParamSync::kReplicated        ? 0
                      : p.sync == model::ParamSync::kTensorParallel ? 1
                                                                    : 2;
    Group& g = groups_[group];
    segment_of_.push_back({group, static_cast<int>(g.segments.size())});
    g.segments.push_back({&p, g.size, p.decays()});
    g.size += p.numel();
  });
  for (Group& g : groups_) {
    const int64_t ranks = g.comm->size();
    const int64_t wanted = std::max<int64_t>(1, std::min(bucket_elements, g.size));
    g.bucket = (wanted + ranks - 1) / ranks * ranks;
    g.num_buckets = (g.size + g.bucket - 1) / g.bucket;
    g.flat.resize(g.num_buckets * g.bucket);
    const int64_t owned = g.owned();
    g.adam_m.resize(owned);
    g.adam_v.resize(owned);
    if (g.staged()) {
      g.in_flight.resize(g.num_buckets);
      g.gathering.resize(g.num_buckets);
      ResetReadiness(g);
      g.grad.resize(owned);
      if (bf16_) {
        g.mine_bits.resize(owned);
        g.flat_bits.resize(g.num_buckets * g.bucket);
      } else {
        g.mine.resize(owned);
      }
    }
    g.master.resize(owned);
    ops_->Fill(g.adam_m.data(), owned, 0.0f);
    ops_->Fill(g.adam_v.data(), owned, 0.0f);
    // Masters of the owned elements, from the (identical) full masters; then free the full copies.
    ops_->Fill(g.flat.data(), g.flat.size(), 0.0f);
    for (const Segment& s : g.segments) ops_->Copy(s.param->master.data(), &g.flat[s.begin], s.param->numel());
    for (int64_t b = 0; b < g.num_buckets; ++b) {
      ops_->Copy(&g.flat[b * g.bucket + g.comm->rank() * g.block()], &g.master[b * g.block()], g.block());
    }
  }
  ops_->Synchronize();  // the copies above read the masters freed here
  for (Group& g : groups_) {
    for (const Segment& s : g.segments) s.param->master.reset();
    if (!g.staged()) g.flat.reset();
  }
}

int64_t DistributedOptimizer::owned_elements() const {
  int64_t n = 0;
  for (const Group& g : groups_) n += g.owned();
  return n;
}

template <typename Fn>
void DistributedOptimizer::ForEachPieceInBucket(Group& g, int64_t b, Fn fn) {
  const int64_t lo = b * g.bucket, hi = lo + g.bucket;
  for (const Segment& s : g.segments) {
    const int64_t begin = std::max(lo, s.begin), end = std::min(hi, s.begin + s.param->numel());
    if (begin < end) fn(s, begin, end);
  }
}

template <typename Fn>
void DistributedOptimizer::ForEachStagedBucket(int64_t first, int64_t end, Fn fn) {
  for (int64_t i = first; i < end; ++i) {
    const auto [group, segment] = segment_of_.at(i);
    if (group < 0 || !groups_[group].staged()) continue;
    Group& g = groups_[group];
    const Segment& s = g.segments[segment];
    const int64_t s_end = s.begin + s.param->numel();
    for (int64_t b = s.begin / g.bucket; b * g.bucket < s_end; ++b) {
      const int64_t lo = b * g.bucket;
      fn(g, b, std::min(lo + g.bucket, s_end) - std::max(lo, s.begin));
    }
  }
}

void DistributedOptimizer::StartBucket(Group& g, int64_t b) {
  ForEachPieceInBucket(g, b, [&](const Segment& s, int64_t begin, int64_t end) {
    ops_->Copy(s.param->grad.data() + (begin - s.begin), &g.flat[begin], end - begin);
  });
  const int64_t lo = b * g.bucket, hi = lo + g.bucket;
  if (hi > g.size) ops_->Fill(&g.flat[std::max(lo, g.size)], hi - std::max(lo, g.size), 0.0f);  // padding
  g.in_flight[b] = g.comm->StartReduceScatterSum(&g.flat[lo], &g.grad[b * g.block()], g.block());
}

void DistributedOptimizer::ResetReadiness(Group& g) {
  g.unready.resize(g.num_buckets);
  for (int64_t b = 0; b < g.num_buckets; ++b) g.unready[b] = std::min(g.bucket, g.size - b * g.bucket);
}

void DistributedOptimizer::GradsReady(int64_t first, int64_t end) {
  FinishWeightSync();  // FP32 mode gathers the working values into the buffer gradients are packed in
  ForEachStagedBucket(first, end, [&](Group& g, int64_t b, int64_t elements) {
    g.unready[b] -= elements;
    if (g.unready[b] == 0 && !g.in_flight[b]) StartBucket(g, b);
  });
  TestPending();
}

const float* DistributedOptimizer::OwnedGrad(Group& g, const Segment& s, int64_t o, int64_t begin) {
  return g.staged() ? &g.grad[o] : s.param->grad.data() + (begin - s.begin);
}

void DistributedOptimizer::FinishGather(Group& g, int64_t b) {
  g.gathering[b]->Finish();
  g.gathering[b].reset();
  ForEachPieceInBucket(g, b, [&](const Segment& s, int64_t begin, int64_t end) {
    model::Param& p = *s.param;
    const int64_t local = begin - s.begin, n = end - begin;
    if (!bf16_) {
      ops_->Copy(&g.flat[begin], p.working.data() + local, n);
    } else if (!p.working_bf16.empty()) {
      ops_->CopyBf16(&g.flat_bits[begin], p.working_bf16.data() + local, n);
    } else {
      ops_->UnpackBf16(&g.flat_bits[begin], n, p.working.data() + local);  // norm weights: FP32 words
    }
  });
}

void DistributedOptimizer::FinishWeightSync() {
  for (Group& g : groups_) {
    for (int64_t b = 0; b < static_cast<int64_t>(g.gathering.size()); ++b) {
      if (g.gathering[b]) FinishGather(g, b);
    }
  }
}

void DistributedOptimizer::WeightsNeeded(int64_t first, int64_t end) {
  ForEachStagedBucket(first, end, [&](Group& g, int64_t b, int64_t) {
    if (g.gathering[b]) FinishGather(g, b);
  });
  TestPending();
}

void DistributedOptimizer::TestPending() {  // lets the started ones move (MPI advances only inside its calls)
  for (Group& g : groups_) {
    for (auto* list : {&g.in_flight, &g.gathering}) {
      for (auto& pending : *list) {
        if (pending) pending->Test();
      }
    }
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
  ops_->Synchronize();  // callers read and write the pieces on the host
  std::vector<OwnedPiece> pieces;
  for (Group& g : groups_) {
    ForEachOwnedRange(g, [&](const Segment& s, int64_t o, int64_t begin, int64_t end) {
      pieces.push_back({s.param, begin - s.begin, end - begin, &g.master[o], &g.adam_m[o], &g.adam_v[o]});
    });
  }
  return pieces;
}

void DistributedOptimizer::GatherWorking(Group& g, bool wait) {
  if (!g.staged()) {
    // One rank owns every element, and its owned state is laid out as the flat buffer: the working
    // weights come straight from the masters.
    for (const Segment& s : g.segments) {
      model::Param& p = *s.param;
      const float* master = &g.master[s.begin];
      if (!p.working_bf16.empty()) {
        ops_->PackBf16(master, p.numel(), p.working_bf16.data());  // the nearest-even BF16 of each master
        continue;
      }
      ops_->Copy(master, p.working.data(), p.numel());
      if (bf16_) ops_->RoundToBf16(p.working.data(), p.numel());
    }
    return;
  }
  const int64_t block = g.block();
  for (int64_t b = 0; b < g.num_buckets; ++b) {
    const int64_t o = b * block;
    if (bf16_) {
      ops_->PackBf16(&g.master[o], block, &g.mine_bits[o]);  // the nearest-even BF16 of each
      g.gathering[b] = g.comm->StartAllGather(&g.mine_bits[o], &g.flat_bits[b * g.bucket], block);
    } else {
      ops_->Copy(&g.master[o], &g.mine[o], block);
      g.gathering[b] = g.comm->StartAllGather(&g.mine[o], &g.flat[b * g.bucket], block);
    }
  }
  if (!wait) return;
  for (int64_t b = 0; b < g.num_buckets; ++b) FinishGather(g, b);
}

void DistributedOptimizer::SyncWorkingWeights() {
  FinishWeightSync();
  for (Group& g : groups_) {
    if (g.size > 0) GatherWorking(g, /*wait=*/true);
  }
}

OptimizerStepStats DistributedOptimizer::Step(const config::OptimizerConfig& opt, double lr,
                                              int64_t step) {
  FinishWeightSync();  // the last step's gathers, where no forward finished them
  // 1. Reduce-scatter the gradients, bucket by bucket.
  double sum_sq = 0.0, grad_sync_s = 0.0;
  for (Group& g : groups_) {
    if (g.size == 0) continue;
    if (!g.staged()) {  // one rank: the gradients are reduced where they are
      std::vector<kernels::Backend::Piece> pieces;
      for (const Segment& s : g.segments) pieces.push_back({s.param->grad.data(), s.param->numel()});
      std::vector<double> each(pieces.size());
      ops_->SumSquaresEach(pieces, each.data());
      for (double x : each) sum_sq += x;  // in segment order, as one call per piece summed
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < g.num_buckets; ++b) {
      if (!g.in_flight[b]) StartBucket(g, b);
      g.in_flight[b]->Finish();
      g.in_flight[b].reset();
    }
    ResetReadiness(g);
    grad_sync_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    sum_sq += ops_->SumSquares(g.grad.data(), g.owned());
  }
  // 2. Global norm (each element owned exactly once in the world) and clipping.
  world_->AllReduceSum(&sum_sq, 1);
  OptimizerStepStats stats;
  stats.grad_norm = std::sqrt(sum_sq);
  stats.grad_sync_s = grad_sync_s;
  if (!std::isfinite(stats.grad_norm)) {  // nothing may reach the weights or the moments
    stats.first_nonfinite = FirstNonFinite();
    return stats;
  }
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
  ap.grad_scale = static_cast<float>(stats.clip_coef);  // clipping, folded into the update
  const float decay = static_cast<float>(opt.weight_decay());
  for (Group& g : groups_) {
    if (g.size == 0) continue;
    if (!g.staged()) {
      // 3'. One rank: AdamW per tensor (all of them in one call), reading its gradient and writing its
      // working weights (and their BF16 bits) in the same pass.
      std::vector<kernels::Backend::AdamWPiece> pieces;
      ForEachOwnedRange(g, [&](const Segment& s, int64_t o, int64_t begin, int64_t end) {
        model::Param& p = *s.param;
        const int64_t local = begin - s.begin;
        kernels::AdamWWorking working;  // BF16 matrices: bits only; the rest: FP32 words
        working.values = p.working.empty() ? nullptr : p.working.data() + local;
        working.bits = p.working_bf16.empty() ? nullptr : p.working_bf16.data() + local;
        working.round_bf16 = bf16_;
        pieces.push_back({&g.master[o], OwnedGrad(g, s, o, begin), &g.adam_m[o], &g.adam_v[o], end - begin,
                          s.decay ? decay : 0.0f, working});
      });
      ops_->AdamWEach(ap, pieces);
      continue;
    }
    // 3. AdamW on the owned elements, one piece per run of consecutive owned pieces with the same
    // weight decay (matrices decay, norms do not), all in one call (one launch on CUDA), then
    // 4. all-gather the new working values.
    std::vector<kernels::Backend::AdamWPiece> runs;
    ForEachOwnedRange(g, [&](const Segment& s, int64_t o, int64_t begin, int64_t end) {
      const float wd = s.decay ? decay : 0.0f;
      if (!runs.empty() && runs.back().param + runs.back().n == &g.master[o] && runs.back().weight_decay == wd) {
        runs.back().n += end - begin;
        return;
      }
      runs.push_back({&g.master[o], &g.grad[o], &g.adam_m[o], &g.adam_v[o], end - begin, wd, {}});
    });
    ops_->AdamWEach(ap, runs);
    GatherWorking(g, /*wait=*/!overlap_param_gather_);
  }
  return stats;
}

std::string DistributedOptimizer::FirstNonFinite() {
  // -(order index) of this rank's first owned piece whose gradient is not finite; the world's maximum
  // is the smallest index anywhere.
  double first = -static_cast<double>(order_.size());
  for (Group& g : groups_) {
    ForEachOwnedRange(g, [&](const Segment& s, int64_t o, int64_t begin, int64_t end) {
      if (std::isfinite(ops_->SumSquares(OwnedGrad(g, s, o, begin), end - begin))) return;
      const auto it = std::find(order_.begin(), order_.end(), s.param);
      first = std::max(first, -static_cast<double>(it - order_.begin()));
    });
  }
  world_->AllReduceMax(&first, 1);
  const int64_t index = static_cast<int64_t>(-first);
  return index < static_cast<int64_t>(order_.size()) ? order_[index]->name : "(none found)";
}

}  // namespace moe::trainer
