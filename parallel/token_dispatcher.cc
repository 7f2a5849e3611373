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
  h.local_expert_offsets.assign(local_experts_ + 1, 0);
  for (int64_t j = 0; j < local_experts_; ++j) {
    int64_t total = 0;
    for (int r = 0; r < ep; ++r) total += received[r * local_experts_ + j];
    h.local_expert_offsets[j + 1] = h.local_expert_offsets[j] + total;
  }
  h.grouped_to_received.resize(h.rows_received);
  h.received_to_grouped.resize(h.rows_received);
  std::vector<int64_t> cursor(h.local_expert_offsets.begin(), h.local_expert_offsets.end() - 1);
  int64_t recv_row = 0;
  for (int r = 0; r < ep; ++r) {
    for (int64_t j = 0; j < local_experts_; ++j) {
      for (int64_t k = 0; k < received[r * local_experts_ + j]; ++k) {
        const int64_t g = cursor[j]++;
        h.grouped_to_received[g] = static_cast<int32_t>(recv_row);
        h.received_to_grouped[recv_row++] = static_cast<int32_t>(g);
      }
    }
  }
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
  ops.GatherRows(received, h.grouped_to_received.data(), h.rows_received, dim, grouped);
}

void TokenDispatcher::Combine(kernels::Backend& ops, const DispatchHandle& h, const float* grouped,
                              int64_t dim, float* sorted) const {
  if (!MovesRows()) {
    if (grouped != sorted) ops.GatherRows(grouped, h.received_to_grouped.data(), h.rows_received, dim, sorted);
    return;
  }
  float* received = Scratch(h.rows_received * dim);
  ops.GatherRows(grouped, h.received_to_grouped.data(), h.rows_received, dim, received);
  std::vector<int64_t> send(h.recv_counts), recv(h.send_counts);
  for (auto& c : send) c *= dim;
  for (auto& c : recv) c *= dim;
  ep_->AllToAllV(received, send, sorted, recv);
}

}  // namespace moe::parallel
