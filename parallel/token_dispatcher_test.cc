#include "parallel/token_dispatcher.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "parallel/local_communicator.h"

namespace moe::parallel {
namespace {

// With one EP rank the grouped order is the sorted order: Dispatch and Combine copy rows unchanged
// between two buffers and leave one buffer passed as both untouched.
TEST(TokenDispatcher, OneRankIsTheIdentityOutOfPlaceAndInPlace) {
  kernels::CpuBackend ops(1);
  LocalCommunicator ep("ep", &ops);
  const TokenDispatcher dispatcher(&ep, 3);
  EXPECT_FALSE(dispatcher.MovesRows());
  const DispatchHandle h = dispatcher.Plan({2, 0, 3});
  ASSERT_EQ(h.rows_sent, 5);
  ASSERT_EQ(h.rows_received, 5);
  const int64_t dim = 4;
  std::vector<float> sorted(5 * dim);
  for (size_t i = 0; i < sorted.size(); ++i) sorted[i] = 0.5f * static_cast<float>(i) - 3.0f;

  std::vector<float> grouped(sorted.size(), -1.0f), back(sorted.size(), -1.0f);
  dispatcher.Dispatch(ops, h, sorted.data(), dim, grouped.data());
  EXPECT_EQ(grouped, sorted);
  dispatcher.Combine(ops, h, grouped.data(), dim, back.data());
  EXPECT_EQ(back, sorted);

  std::vector<float> in_place = sorted;
  dispatcher.Dispatch(ops, h, in_place.data(), dim, in_place.data());
  EXPECT_EQ(in_place, sorted);
  dispatcher.Combine(ops, h, in_place.data(), dim, in_place.data());
  EXPECT_EQ(in_place, sorted);
}

}  // namespace
}  // namespace moe::parallel
