// Multi-rank tests of MpiCommunicator (run as 4 ranks by the communicator_mpi_test sh_test; they hold
// for any world size >= 2). Values encode (source rank, destination, index) so that each check
// verifies both placement and sums; all values are small integers, exact in FP32.
#include "parallel/communicator_mpi.h"

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace moe::parallel {
namespace {

constexpr double kTimeout = 20;

class MpiCommunicatorTest : public testing::Test {
 protected:
  void SetUp() override {
    comm_ = MpiCommunicator::World(kTimeout);
    rank_ = comm_->rank();
    size_ = comm_->size();
  }
  void TearDown() override {  // back to the defaults
    MpiCommunicator::SetMaxCountForTesting(0);
    MpiCommunicator::SetTwoPhaseMinBytesForTesting(0);
  }

  std::unique_ptr<MpiCommunicator> comm_;
  int rank_ = 0, size_ = 1;
};

// Sum over ranks of rank, i.e. 0 + 1 + ... + (size - 1).
int64_t RankSum(int size) { return static_cast<int64_t>(size) * (size - 1) / 2; }

TEST_F(MpiCommunicatorTest, WorldBasics) {
  int world_rank = 0, world_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  EXPECT_EQ(comm_->name(), "world");
  EXPECT_EQ(rank_, world_rank);
  EXPECT_EQ(size_, world_size);
  ASSERT_EQ(static_cast<int>(comm_->world_ranks().size()), size_);
  for (int r = 0; r < size_; ++r) EXPECT_EQ(comm_->world_ranks()[r], r);
  ASSERT_GE(size_, 2) << "run this test with several ranks";
}

TEST_F(MpiCommunicatorTest, AllReduceSumFloat) {
  const int64_t n = 1000;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(rank_ * 1000 + i);
  comm_->AllReduceSum(x.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], static_cast<float>(1000 * RankSum(size_) + size_ * i)) << i;
}

TEST_F(MpiCommunicatorTest, AllReduceSumDoubleAndInt64) {
  const int64_t n = 37;
  std::vector<double> d(n);
  std::vector<int64_t> k(n);
  for (int64_t i = 0; i < n; ++i) {
    d[i] = 0.5 * rank_ + i;
    k[i] = (int64_t{1} << 40) * (rank_ + 1) + i;  // beyond int32
  }
  comm_->AllReduceSum(d.data(), n);
  comm_->AllReduceSum(k.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(d[i], 0.5 * RankSum(size_) + size_ * i);
    EXPECT_EQ(k[i], (int64_t{1} << 40) * (RankSum(size_) + size_) + size_ * i);
  }
}

TEST_F(MpiCommunicatorTest, AllReduceMax) {
  std::vector<double> x = {static_cast<double>(rank_), -static_cast<double>(rank_), rank_ == 1 ? 7.5 : 0.0};
  comm_->AllReduceMax(x.data(), 3);
  EXPECT_EQ(x[0], size_ - 1);
  EXPECT_EQ(x[1], 0);
  EXPECT_EQ(x[2], 7.5);
}

// The same inputs give the same bits every call and on every rank (the documented assumption).
TEST_F(MpiCommunicatorTest, AllReduceSumIsDeterministicAndIdenticalOnAllRanks) {
  for (int64_t n : {int64_t{5}, int64_t{4099}, int64_t{300000}}) {
    std::mt19937 gen(1234 + rank_);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> input(n);
    for (float& v : input) v = dist(gen) * (1 << (gen() % 20));
    std::vector<float> a = input, b = input;
    comm_->AllReduceSum(a.data(), n);
    comm_->AllReduceSum(b.data(), n);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * n), 0) << "n=" << n;
    std::vector<float> all(static_cast<size_t>(size_) * n);
    comm_->AllGather(a.data(), all.data(), n);
    for (int r = 0; r < size_; ++r) {
      ASSERT_EQ(std::memcmp(all.data() + r * n, a.data(), sizeof(float) * n), 0)
          << "rank " << r << " differs, n=" << n;
    }
  }
}

// Rank `r`'s input for the rank-order tests: random values of varied magnitude (so that the order of
// the additions shows in the bits); every rank can generate every rank's input.
template <typename T>
std::vector<T> RandomInput(int r, int64_t n) {
  std::mt19937 gen(777 + r);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (T& e : v) e = static_cast<T>(dist(gen) * (1 << (gen() % 24)));
  return v;
}

// AllReduceSum gives exactly ((x_0 + x_1) + x_2) + ... in rank order.
template <typename T>
void CheckRankOrderAllReduce(MpiCommunicator& comm, int64_t n) {
  std::vector<T> want = RandomInput<T>(0, n);
  for (int r = 1; r < comm.size(); ++r) {
    const std::vector<T> in = RandomInput<T>(r, n);
    for (int64_t i = 0; i < n; ++i) want[i] += in[i];
  }
  std::vector<T> x = RandomInput<T>(comm.rank(), n);
  comm.AllReduceSum(x.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], want[i]) << "n=" << n << " i=" << i;
  ASSERT_EQ(std::memcmp(x.data(), want.data(), sizeof(T) * n), 0) << "n=" << n;
}

TEST_F(MpiCommunicatorTest, LargeAllReduceSumIsTheRankOrderSum) {
  CheckRankOrderAllReduce<float>(*comm_, 300000);  // >= 64 KiB: the two-phase path
  CheckRankOrderAllReduce<float>(*comm_, 16387);
  CheckRankOrderAllReduce<double>(*comm_, 100003);
}

TEST_F(MpiCommunicatorTest, TwoPhaseAllReduceSumOnTinyAndChunkedSizes) {
  MpiCommunicator::SetTwoPhaseMinBytesForTesting(1);
  for (int64_t n : {1, 2, 3, 5, 17, 1000}) {  // n < size leaves some ranks an empty block
    CheckRankOrderAllReduce<float>(*comm_, n);
    CheckRankOrderAllReduce<double>(*comm_, n);
  }
  MpiCommunicator::SetMaxCountForTesting(7);  // pieces of 7 elements
  CheckRankOrderAllReduce<float>(*comm_, 50);
  CheckRankOrderAllReduce<double>(*comm_, 7);
}

TEST_F(MpiCommunicatorTest, ReduceScatterSumIsTheRankOrderSum) {
  for (int64_t max_count : {int64_t{0}, int64_t{7}}) {  // 7: chunks of 1 element per block on 4 ranks
    MpiCommunicator::SetMaxCountForTesting(max_count);
    const int64_t n = 1001;
    std::vector<float> want(n);
    for (int s = 0; s < size_; ++s) {
      const std::vector<float> in = RandomInput<float>(s, size_ * n);
      for (int64_t j = 0; j < n; ++j) want[j] = s == 0 ? in[rank_ * n + j] : want[j] + in[rank_ * n + j];
    }
    const std::vector<float> in = RandomInput<float>(rank_, size_ * n);
    std::vector<float> out(n);
    comm_->ReduceScatterSum(in.data(), out.data(), n);
    ASSERT_EQ(std::memcmp(out.data(), want.data(), sizeof(float) * n), 0) << "max_count=" << max_count;
  }
}

// Started reduce-scatters give ReduceScatterSum's bits with several in flight at once, other
// collectives on the same group in between, and the finishes in another order than the starts.
TEST_F(MpiCommunicatorTest, StartedReduceScattersGiveTheBlockingResult) {
  // Every float all-reduce takes the two-phase path (all-to-all, then all-gather), whatever its size.
  MpiCommunicator::SetTwoPhaseMinBytesForTesting(1);
  for (int64_t max_count : {int64_t{0}, int64_t{7}}) {  // 7: several chunks per collective
    MpiCommunicator::SetMaxCountForTesting(max_count);
    const std::vector<int64_t> sizes = {1001, 3, 0, 4096};
    std::vector<std::vector<float>> in, want, out;
    for (size_t k = 0; k < sizes.size(); ++k) {
      in.push_back(RandomInput<float>(rank_ + 10 * static_cast<int>(k), size_ * sizes[k]));
      want.emplace_back(sizes[k]);
      comm_->ReduceScatterSum(in[k].data(), want[k].data(), sizes[k]);
      out.emplace_back(sizes[k], -1.0f);
    }
    std::vector<std::unique_ptr<PendingCollective>> pending;
    for (size_t k = 0; k < sizes.size(); ++k) {
      pending.push_back(comm_->StartReduceScatterSum(in[k].data(), out[k].data(), sizes[k]));
      // A blocking two-phase all-reduce while they are in flight (1000 floats: with 7-element MPI
      // calls a large one is tens of thousands of collectives, which on 4 ranks sharing 2 cores can
      // pass the 20 s timeout).
      std::vector<float> x(1000, 1.0f);
      comm_->AllReduceSum(x.data(), static_cast<int64_t>(x.size()));
      ASSERT_EQ(x[123], static_cast<float>(size_));
      for (auto& p : pending) p->Test();
    }
    for (size_t k = sizes.size(); k-- > 0;) {
      pending[k]->Finish();
      pending[k]->Finish();  // a second Finish does nothing
      EXPECT_TRUE(pending[k]->Test());
      ASSERT_EQ(out[k], want[k]) << "collective " << k << " max_count=" << max_count;
    }
    std::vector<float> dropped(size_ * 5, 1.0f), result(5);  // destroyed unfinished: finishes first
    comm_->StartReduceScatterSum(dropped.data(), result.data(), 5).reset();
    EXPECT_EQ(result, std::vector<float>(5, static_cast<float>(size_)));
  }
}

// Started all-gathers (BF16 bits and floats) give AllGather's result with started reduce-scatters and
// a blocking collective in flight between them, finished in another order than started.
TEST_F(MpiCommunicatorTest, StartedAllGathersGiveTheBlockingResult) {
  for (int64_t max_count : {int64_t{0}, int64_t{7}}) {  // 7: several chunks per gather
    MpiCommunicator::SetMaxCountForTesting(max_count);
    const int64_t n = 1003;
    std::vector<uint16_t> bits(n), bits_out(size_ * n), bits_want(size_ * n);
    std::vector<float> words(n), words_out(size_ * n), words_want(size_ * n);
    for (int64_t i = 0; i < n; ++i) {
      bits[i] = static_cast<uint16_t>(rank_ * 7919 + i);
      words[i] = static_cast<float>(rank_ * 100000 + i);
    }
    comm_->AllGather(bits.data(), bits_want.data(), n);
    comm_->AllGather(words.data(), words_want.data(), n);
    const std::vector<float> rs_in = RandomInput<float>(rank_, size_ * 50);
    std::vector<float> rs_out(50), rs_want(50);
    comm_->ReduceScatterSum(rs_in.data(), rs_want.data(), 50);

    auto a = comm_->StartAllGather(bits.data(), bits_out.data(), n);
    auto b = comm_->StartReduceScatterSum(rs_in.data(), rs_out.data(), 50);
    double x = 1;
    comm_->AllReduceSum(&x, 1);
    auto c = comm_->StartAllGather(words.data(), words_out.data(), n);
    a->Test();
    c->Test();
    c->Finish();
    b->Finish();
    a->Finish();
    EXPECT_EQ(x, size_);
    ASSERT_EQ(bits_out, bits_want) << "max_count=" << max_count;
    ASSERT_EQ(words_out, words_want) << "max_count=" << max_count;
    ASSERT_EQ(rs_out, rs_want) << "max_count=" << max_count;
    for (int r = 0; r < size_; ++r) ASSERT_EQ(words_out[r * n + 5], static_cast<float>(r * 100000 + 5));
  }
}

TEST_F(MpiCommunicatorTest, ReduceScatterSum) {
  const int64_t n = 10;
  std::vector<float> in(size_ * n), out(n, -1);
  // in[r * n + j] on rank s = s * 100 + r * 10 + j
  for (int r = 0; r < size_; ++r) {
    for (int64_t j = 0; j < n; ++j) in[r * n + j] = static_cast<float>(rank_ * 100 + r * 10 + j);
  }
  comm_->ReduceScatterSum(in.data(), out.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    EXPECT_EQ(out[j], static_cast<float>(100 * RankSum(size_) + size_ * (rank_ * 10 + j))) << j;
  }
}

TEST_F(MpiCommunicatorTest, AllGather) {
  const int64_t n = 6;
  std::vector<float> in(n), out(size_ * n, -1);
  std::vector<int64_t> in64(n), out64(size_ * n, -1);
  std::vector<uint16_t> in16(n), out16(size_ * n, 0xFFFF);  // BF16 bits
  for (int64_t j = 0; j < n; ++j) {
    in[j] = static_cast<float>(rank_ * 1000 + j);
    in64[j] = (int64_t{1} << 35) * rank_ + j;
    in16[j] = static_cast<uint16_t>(0x3F80 + rank_ * 64 + j);
  }
  comm_->AllGather(in.data(), out.data(), n);
  comm_->AllGather(in64.data(), out64.data(), n);
  comm_->AllGather(in16.data(), out16.data(), n);
  for (int r = 0; r < size_; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_EQ(out[r * n + j], static_cast<float>(r * 1000 + j));
      EXPECT_EQ(out64[r * n + j], (int64_t{1} << 35) * r + j);
      EXPECT_EQ(out16[r * n + j], 0x3F80 + r * 64 + j);
    }
  }
}

// Elements rank `src` sends to rank `dst`: uneven, with zeros (e.g. 0 -> 0, 3 -> 1 with 4 ranks).
int64_t Count(int src, int dst, int64_t scale) { return ((src * 3 + dst * 5) % 4) * scale; }
float Value(int src, int dst, int64_t k) { return static_cast<float>(src * 100000 + dst * 1000 + k); }

template <typename T>
void CheckAllToAllV(MpiCommunicator& comm, int64_t scale) {
  const int me = comm.rank(), size = comm.size();
  std::vector<int64_t> send_counts(size), recv_counts(size);
  std::vector<T> send;
  for (int dst = 0; dst < size; ++dst) {
    send_counts[dst] = Count(me, dst, scale);
    for (int64_t k = 0; k < send_counts[dst]; ++k) send.push_back(static_cast<T>(Value(me, dst, k)));
  }
  int64_t recv_total = 0;
  for (int src = 0; src < size; ++src) recv_total += recv_counts[src] = Count(src, me, scale);
  std::vector<T> recv(recv_total + 1, static_cast<T>(-7));  // one guard element past the end
  comm.AllToAllV(send.data(), send_counts, recv.data(), recv_counts);
  int64_t at = 0;
  for (int src = 0; src < size; ++src) {
    for (int64_t k = 0; k < recv_counts[src]; ++k, ++at) {
      ASSERT_EQ(recv[at], static_cast<T>(Value(src, me, k))) << "from " << src << " element " << k;
    }
  }
  EXPECT_EQ(recv[recv_total], static_cast<T>(-7)) << "wrote past the received elements";
}

TEST_F(MpiCommunicatorTest, AllToAllVFloatUnevenWithZeros) {
  CheckAllToAllV<float>(*comm_, 1);
  CheckAllToAllV<float>(*comm_, 5);
}

TEST_F(MpiCommunicatorTest, AllToAllVInt32UnevenWithZeros) { CheckAllToAllV<int32_t>(*comm_, 3); }

TEST_F(MpiCommunicatorTest, AllToAllVAllZeroOnOneRank) {
  // Rank 0 sends nothing and receives nothing; the others exchange one element each.
  std::vector<int64_t> send_counts(size_, rank_ == 0 ? 0 : 1), recv_counts(size_, rank_ == 0 ? 0 : 1);
  send_counts[0] = recv_counts[0] = 0;
  std::vector<float> send, recv;
  for (int dst = 0; dst < size_; ++dst) {
    for (int64_t k = 0; k < send_counts[dst]; ++k) send.push_back(Value(rank_, dst, k));
  }
  recv.resize(size_, -1);
  comm_->AllToAllV(send.data(), send_counts, recv.data(), recv_counts);
  int at = 0;
  for (int src = 0; src < size_; ++src) {
    if (recv_counts[src] == 1) {
      EXPECT_EQ(recv[at], Value(src, rank_, 0)) << "from " << src;
      ++at;
    }
  }
}

TEST_F(MpiCommunicatorTest, AllToAllCounts) {
  const int64_t n = 3;
  std::vector<int64_t> in(size_ * n), out(size_ * n, -1);
  for (int dst = 0; dst < size_; ++dst) {
    for (int64_t j = 0; j < n; ++j) in[dst * n + j] = rank_ * 100 + dst * 10 + j;
  }
  comm_->AllToAll(in.data(), out.data(), n);
  for (int src = 0; src < size_; ++src) {
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(out[src * n + j], src * 100 + rank_ * 10 + j);
  }
}

TEST_F(MpiCommunicatorTest, BroadcastFromEveryRoot) {
  for (int root = 0; root < size_; ++root) {
    std::vector<float> x(9, static_cast<float>(rank_ == root ? 0 : -1));
    std::vector<int64_t> k(4, rank_ == root ? 0 : -1);
    if (rank_ == root) {
      for (int j = 0; j < 9; ++j) x[j] = static_cast<float>(root * 10 + j);
      for (int j = 0; j < 4; ++j) k[j] = (int64_t{1} << 33) + root * 10 + j;
    }
    comm_->Broadcast(x.data(), 9, root);
    comm_->Broadcast(k.data(), 4, root);
    for (int j = 0; j < 9; ++j) EXPECT_EQ(x[j], static_cast<float>(root * 10 + j));
    for (int j = 0; j < 4; ++j) EXPECT_EQ(k[j], (int64_t{1} << 33) + root * 10 + j);
  }
}

TEST_F(MpiCommunicatorTest, BarrierAndZeroCounts) {
  comm_->Barrier();
  comm_->AllReduceSum(static_cast<float*>(nullptr), 0);
  comm_->Broadcast(static_cast<float*>(nullptr), 0, 0);
  comm_->AllGather(static_cast<const float*>(nullptr), nullptr, 0);
  comm_->Barrier();
}

// Per-call limit lowered to 7 elements: reductions, broadcasts, reduce-scatters and all-gathers run
// in chunks; AllToAllV describes both sides in blocks of the counts' gcd.
TEST_F(MpiCommunicatorTest, ChunkedPathsGiveTheSameResults) {
  MpiCommunicator::SetMaxCountForTesting(7);
  {
    const int64_t n = 50;
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(rank_ * 1000 + i);
    comm_->AllReduceSum(x.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], static_cast<float>(1000 * RankSum(size_) + size_ * i));
  }
  {
    const int64_t n = 13;
    std::vector<float> in(size_ * n), out(n, -1);
    for (int r = 0; r < size_; ++r) {
      for (int64_t j = 0; j < n; ++j) in[r * n + j] = static_cast<float>(rank_ * 100 + r * 10 + j);
    }
    comm_->ReduceScatterSum(in.data(), out.data(), n);
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_EQ(out[j], static_cast<float>(100 * RankSum(size_) + size_ * (rank_ * 10 + j)));
    }
  }
  {
    const int64_t n = 11;
    std::vector<int64_t> in(n), out(size_ * n, -1);
    for (int64_t j = 0; j < n; ++j) in[j] = rank_ * 1000 + j;
    comm_->AllGather(in.data(), out.data(), n);
    for (int r = 0; r < size_; ++r) {
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(out[r * n + j], r * 1000 + j);
    }
  }
  {
    const int64_t n = 30;
    std::vector<float> x(n, -1);
    if (rank_ == 1) {
      for (int64_t j = 0; j < n; ++j) x[j] = static_cast<float>(j);
    }
    comm_->Broadcast(x.data(), n, 1);
    for (int64_t j = 0; j < n; ++j) ASSERT_EQ(x[j], static_cast<float>(j));
  }
  // Counts are multiples of 4 (up to 12 per peer), so totals exceed 7 but gcd blocks fit.
  CheckAllToAllV<float>(*comm_, 4);
  CheckAllToAllV<int32_t>(*comm_, 4);
}

// A communicator per rank (MPI_Comm_split with color = rank): every collective is a local copy.
TEST_F(MpiCommunicatorTest, GroupOfOne) {
  MPI_Comm c;
  MPI_Comm_split(MPI_COMM_WORLD, rank_, 0, &c);
  MpiCommunicator one(c, "self", kTimeout);
  EXPECT_EQ(one.size(), 1);
  EXPECT_EQ(one.rank(), 0);
  ASSERT_EQ(one.world_ranks(), std::vector<int>{rank_});
  std::vector<float> x = {1, 2, 3}, y(3);
  one.AllReduceSum(x.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  one.ReduceScatterSum(x.data(), y.data(), 3);
  EXPECT_EQ(y, x);
  one.AllGather(x.data(), y.data(), 3);
  EXPECT_EQ(y, x);
  std::vector<int32_t> s = {4, 5}, r(2);
  one.AllToAllV(s.data(), {2}, r.data(), {2});
  EXPECT_EQ(r, s);
  one.Broadcast(x.data(), 3, 0);
  one.Barrier();
}

// Two groups of interleaved ranks ({0, 2, ...} and {1, 3, ...}): membership and sums stay inside.
TEST_F(MpiCommunicatorTest, SubGroup) {
  MPI_Comm c;
  MPI_Comm_split(MPI_COMM_WORLD, rank_ % 2, rank_, &c);
  MpiCommunicator half(c, "half", kTimeout);
  EXPECT_EQ(half.name(), "half");
  EXPECT_EQ(half.rank(), rank_ / 2);
  std::vector<int> expected;
  for (int r = rank_ % 2; r < size_; r += 2) expected.push_back(r);
  EXPECT_EQ(half.world_ranks(), expected);
  int64_t x = rank_;
  half.AllReduceSum(&x, 1);
  int64_t want = 0;
  for (int r : expected) want += r;
  EXPECT_EQ(x, want);
}

}  // namespace
}  // namespace moe::parallel
