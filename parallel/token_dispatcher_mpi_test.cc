// TokenDispatcher over a real EP group (run as 4 ranks by mpi_gtest; holds for any world size). Each
// sent row encodes (source rank, global expert, index within the expert), so the checks see where
// every row landed: grouped by local expert, then by source rank, each source's rows in their order;
// and Combine is Dispatch's exact inverse.
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "parallel/communicator_mpi.h"
#include "parallel/token_dispatcher.h"

namespace moe::parallel {
namespace {

constexpr int64_t kDim = 3;  // row = {source rank, global expert, index}

std::vector<int64_t> RowsPerExpert(int rank, int64_t experts, uint64_t seed) {
  std::mt19937_64 gen(seed * 1000 + rank);
  std::uniform_int_distribution<int64_t> count(0, 5);
  std::vector<int64_t> rows(experts);
  for (int64_t e = 0; e < experts; ++e) rows[e] = (e + rank) % 3 == 0 ? 0 : count(gen);  // some empty runs
  return rows;
}

void CheckDispatch(int64_t experts_per_rank, uint64_t seed) {
  const std::unique_ptr<MpiCommunicator> ep = MpiCommunicator::World(20);
  const int rank = ep->rank(), size = ep->size();
  const int64_t experts = experts_per_rank * size;
  kernels::CpuBackend ops(2);
  const TokenDispatcher dispatcher(ep.get(), experts);
  const std::vector<int64_t> mine = RowsPerExpert(rank, experts, seed);
  const DispatchHandle h = dispatcher.Plan(mine);

  std::vector<float> sorted;
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t i = 0; i < mine[e]; ++i) sorted.insert(sorted.end(), {float(rank), float(e), float(i)});
  }
  ASSERT_EQ(static_cast<int64_t>(sorted.size()), h.rows_sent * kDim);
  std::vector<float> grouped(h.rows_received * kDim, -1.0f);
  dispatcher.Dispatch(ops, h, sorted.data(), kDim, grouped.data());

  std::vector<float> want;
  std::vector<int64_t> offsets = {0};
  for (int64_t j = 0; j < experts_per_rank; ++j) {
    const int64_t e = rank * experts_per_rank + j;
    for (int src = 0; src < size; ++src) {
      const std::vector<int64_t> theirs = RowsPerExpert(src, experts, seed);
      for (int64_t i = 0; i < theirs[e]; ++i) want.insert(want.end(), {float(src), float(e), float(i)});
    }
    offsets.push_back(static_cast<int64_t>(want.size()) / kDim);
  }
  EXPECT_EQ(grouped, want);
  EXPECT_EQ(h.local_expert_offsets, offsets);

  std::vector<float> back(sorted.size(), -1.0f);
  dispatcher.Combine(ops, h, grouped.data(), kDim, back.data());
  EXPECT_EQ(back, sorted);
}

TEST(TokenDispatcherMpi, RowsLandGroupedByLocalExpertThenSourceRank) {
  for (uint64_t seed : {1, 2, 3}) CheckDispatch(3, seed);
}

TEST(TokenDispatcherMpi, OneExpertPerRank) { CheckDispatch(1, 4); }

}  // namespace
}  // namespace moe::parallel
