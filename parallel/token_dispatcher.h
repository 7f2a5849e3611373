// Expert-parallel token dispatch (docs/architecture.md "Parallel layout"; Megatron's all-to-all token
// dispatcher, DeepEP's dispatch/combine pair). The routed experts are split over the EP group in contiguous
// blocks: EP rank r holds global experts [r·E/ep, (r+1)·E/ep).
//
// The caller sorts its (token, slot) rows by global expert (model/moe.h RoutingPlan), so the rows for
// each EP rank are contiguous and in rank order. Plan() exchanges the per-expert counts; Dispatch()
// sends the rows to their experts' ranks and regroups what arrives by local expert, ready for one
// grouped GEMM; Combine() is its exact inverse. Dispatch and Combine are each other's backward, and
// both reuse the one DispatchHandle.
//
// The rows live wherever the op backend runs (base/buffer.h); the regrouping is a GatherRowBlocks op:
// the received rows come as one run per (source rank, local expert), so the regrouping is a list of
// runs that Plan builds on the host from the exchanged counts, and no index array is written.
// With one EP rank there is nothing to send and the exchange is skipped (the regroup alone remains).
#pragma once

#include <cstdint>
#include <vector>

#include "base/buffer.h"
#include "kernels/backend.h"
#include "parallel/communicator.h"

namespace moe::parallel {

struct DispatchHandle {
  int64_t local_experts = 0;
  int64_t rows_sent = 0;                      // rows this rank routes (R)
  int64_t rows_received = 0;                  // rows its local experts process (R')
  std::vector<int64_t> send_counts;           // [ep] rows to each EP rank
  std::vector<int64_t> recv_counts;           // [ep] rows from each EP rank
  std::vector<int64_t> local_expert_offsets;  // [local_experts + 1] over the grouped rows
  // The grouped rows as runs of received rows (local expert major, source rank minor), and the
  // received rows as runs of grouped rows (its inverse); adjacent runs merged.
  std::vector<kernels::Backend::RowBlock> grouped_from_received;
  std::vector<kernels::Backend::RowBlock> received_from_grouped;
};

class TokenDispatcher {
 public:
  TokenDispatcher(Communicator* ep, int64_t num_experts);

  int64_t first_local_expert() const { return ep_->rank() * local_experts_; }
  // Whether Dispatch and Combine move rows. With one EP rank the grouped order is the sorted order
  // (both are expert order), so they are plain copies: a caller may pass one buffer as both source and
  // destination, and they then do nothing.
  bool MovesRows() const { return ep_->size() > 1; }
  int64_t local_experts() const { return local_experts_; }

  // rows_per_expert [E]: rows this rank sends to each global expert. Collective over the EP group.
  DispatchHandle Plan(const std::vector<int64_t>& rows_per_expert) const;
  // sorted [R, dim] (global-expert order) -> grouped [R', dim] (local-expert order).
  void Dispatch(kernels::Backend& ops, const DispatchHandle& h, const float* sorted, int64_t dim,
                float* grouped) const;
  // grouped [R', dim] -> sorted [R, dim]: the inverse of Dispatch.
  void Combine(kernels::Backend& ops, const DispatchHandle& h, const float* grouped, int64_t dim,
               float* sorted) const;

 private:
  // The rank-ordered receive buffer, kept across calls: a freshly allocated buffer costs a page fault
  // per 4 KiB inside the all-to-all (measured 10-40x slower than a warm one on this machine).
  float* Scratch(int64_t n) const;

  Communicator* ep_;
  int64_t num_experts_;
  int64_t local_experts_;
  mutable Buffer<float> scratch_;
};

}  // namespace moe::parallel
