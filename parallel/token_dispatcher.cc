#include "parallel/token_dispatcher.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>

namespace moe::parallel {

TokenDispatcher::TokenDispatcher(Communicator* ep, int64_t num_experts)
    : ep_(ep), num_experts_(num_experts), local_experts_(num_experts / ep->size()) {
  if (num_experts % ep->size() != 0) {  // validated with a clear message before we get here
    std::fprintf(stderr, "TokenDispatcher: %lld experts not divisible by EP size %d\n",
                 static_cast<long long>(num_experts), ep->size());
    std::abort();
  }
}

DispatchHandle TokenDispatcher::Plan(const std::vector<int64_t>& rows_per_expert) const {
  const int ep = ep_->size();
  DispatchHandle h;
  h.local_experts = local_experts_;
  // rows_per_expert is already grouped by destination rank (experts are contiguous per rank), so an
  // equal all-to-all of local_experts counts tells each rank what its experts will receive.
  std::vector<int64_t> received(ep * local_experts_);  // [src][local expert]
  ep_->AllToAll(rows_per_expert.data(), received.data(), local_experts_);
  h.send_counts.assign(ep, 0);
  h.recv_counts.assign(ep, 0);
  for (int r = 0; r < ep; ++r) {
    for (int64_t j = 0; j < local_experts_; ++j) {
      h.send_counts[r] += rows_per_expert[r * local_experts_ + j];
      h.recv_counts[r] += received[r * local_experts_ + j];
    }
    h.rows_sent += h.send_counts[r];
    h.rows_received += h.recv_counts[r];
  }
  // Received rows are ordered (source rank, local expert, row); group them by (local expert, source).
  // Run (r, j), i = r·L + j, starts at received row recv_first[i] and lands at grouped row
  // grouped_first[i].
  std::vector<int64_t> recv_first(ep * local_experts_), grouped_first(ep * local_experts_);
  for (int64_t row = 0, i = 0; i < ep * local_experts_; ++i) {
    recv_first[i] = row;
    row += received[i];
  }
  h.local_expert_offsets.assign(local_experts_ + 1, 0);
  for (int64_t j = 0, row = 0; j < local_experts_; ++j) {
    for (int r = 0; r < ep; ++r) {
      grouped_first[r * local_experts_ + j] = row;
      row += received[r * local_experts_ + j];
    }
    h.local_expert_offsets[j + 1] = row;
  }
  auto append = [](std::vector<kernels::Backend::RowBlock>& blocks, int64_t src_row, int64_t rows) {
    if (rows == 0) return;
    if (!blocks.empty() && blocks.back().src_row + blocks.back().rows == src_row) {
      blocks.back().rows += rows;  // continues the last run
    } else {
      blocks.push_back({src_row, rows});
    }
  };
  for (int64_t j = 0; j < local_experts_; ++j) {  // in grouped order
    for (int r = 0; r < ep; ++r) append(h.grouped_from_received, recv_first[r * local_experts_ + j], received[r * local_experts_ + j]);
  }
  for (int64_t i = 0; i < ep * local_experts_; ++i) append(h.received_from_grouped, grouped_first[i], received[i]);
  return h;
}

float* TokenDispatcher::Scratch(int64_t n) const {
  if (scratch_.size() < n) scratch_.resize(n);
  return scratch_.data();
}

void TokenDispatcher::Dispatch(kernels::Backend& ops, const DispatchHandle& h, const float* sorted,
                               int64_t dim, float* grouped) const {
  if (!MovesRows() && sorted == grouped) return;  // the identity, in place
  const float* received = sorted;  // one EP rank: what it sends is what it receives
  if (MovesRows()) {
    std::vector<int64_t> send(h.send_counts), recv(h.recv_counts);
    for (auto& c : send) c *= dim;
    for (auto& c : recv) c *= dim;
    float* buffer = Scratch(h.rows_received * dim);
    ep_->AllToAllV(sorted, send, buffer, recv);
    received = buffer;
  }
  ops.GatherRowBlocks(received, h.grouped_from_received, dim, grouped);
}

void TokenDispatcher::Combine(kernels::Backend& ops, const DispatchHandle& h, const float* grouped,
                              int64_t dim, float* sorted) const {
  if (!MovesRows()) {
    if (grouped != sorted) ops.GatherRowBlocks(grouped, h.received_from_grouped, dim, sorted);
    return;
  }
  float* received = Scratch(h.rows_received * dim);
  ops.GatherRowBlocks(grouped, h.received_from_grouped, dim, received);
  std::vector<int64_t> send(h.recv_counts), recv(h.send_counts);
  for (auto& c : send) c *= dim;
  for (auto& c : recv) c *= dim;
  ep_->AllToAllV(received, send, sorted, recv);
}

}  // namespace moe::parallel
