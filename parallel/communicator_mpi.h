// MpiCommunicator: the Communicator interface over one MPI communicator, on host buffers.
//
// Every collective is started non-blocking (MPI_Iallreduce, MPI_Iallgather(v), MPI_Ialltoall(v),
// MPI_Ibcast, MPI_Ibarrier) and then waited for by polling MPI_Test with
// a backoff (spin, then yield, then 1 ms sleeps once idle for 100 ms), so the wait is bounded (no
// collective may hang the job): when the group's timeout passes, this rank prints one line naming itself, the group,
// the collective, the element count and the group's members, and aborts the whole job with
// MPI_Abort(MPI_COMM_WORLD, 2). A dead or stopped peer therefore ends the job instead of hanging it.
// MPI errors are returned (MPI_ERRORS_RETURN) and reported the same way.
//
// Sums. ReduceScatterSum, and float/double AllReduceSum of >= 64 KiB, are built from an all-to-all
// (MPI_Ialltoall / MPI_Ialltoallv) that brings every rank's copy of a block to the block's owner, a
// local sum of the copies in rank order 0, 1, ..., size-1, and (AllReduceSum) an MPI_Iallgatherv.
// So each element is ((x_0 + x_1) + x_2) + ... exactly, on every rank, every call, whatever algorithm
// Open MPI picks. Smaller sums (latency-bound) and int64 sums use MPI_Iallreduce, whose libnbc
// algorithm (binomial tree: reduce to a root, then broadcast) is chosen from the group size and the
// message size alone; so for a fixed group and element count the result is still the same bits on
// every call and on every rank (the assumption, tested in communicator_mpi_test). Results may differ
// between groups of different sizes. (Measured on one machine, 2-4 ranks x 16 MB: the all-to-all
// reduce-scatter was 10-17x faster than Open MPI's MPI_Reduce_scatter_block, and the two-phase
// all-reduce within ~20% of MPI_Iallreduce either way; see tools/bench_comm.)
//
// StartReduceScatterSum posts the same all-to-all and leaves the rank-order sum to Test or Finish, so a
// started reduce-scatter gives ReduceScatterSum's bits; its buffers are its own (taken from and
// returned to a pool that the next step's buckets reuse), so blocking collectives may run meanwhile.
//
// Large counts: MPI counts are int. Every path works on pieces of at most INT_MAX elements per MPI
// call (the rank-order sums on pieces of 2^24 elements, which also bounds their scratch buffer).
// AllToAllV describes each side with a contiguous datatype of g elements, g = gcd of that side's
// counts, when a count or displacement exceeds INT_MAX (MoE dispatch counts are multiples of the
// hidden size, so this covers any realistic payload); if even that does not fit, it refuses with a
// clear line and aborts.
//
// Threading: MPI is initialised MPI_THREAD_FUNNELED; call from the thread that initialised MPI.
// Buffers of AllToAllV/ReduceScatterSum/AllGather must not overlap (in != out). Not thread-safe (one
// scratch buffer per communicator).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace moe::parallel {

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction, before MPI_Finalize) unless it is
  // MPI_COMM_WORLD or MPI_COMM_SELF. Collective over `comm` (it gathers the members' world ranks).
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_seconds);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  // A communicator named "world" over a duplicate of MPI_COMM_WORLD. Collective over the world.
  static std::unique_ptr<MpiCommunicator> World(double timeout_seconds);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  double timeout_seconds() const { return timeout_seconds_; }
  MPI_Comm comm() const { return comm_; }
  // World rank of each member, in group rank order.
  const std::vector<int>& world_ranks() const { return world_ranks_; }

  void AllReduceSum(float* x, int64_t n) override;
  void AllReduceSum(double* x, int64_t n) override;
  void AllReduceSum(int64_t* x, int64_t n) override;
  void AllReduceMax(double* x, int64_t n) override;

  void ReduceScatterSum(const float* in, float* out, int64_t n) override;
  // Started at once (the first chunk's all-to-all posted); sums and later chunks in Test and Finish.
  std::unique_ptr<PendingCollective> StartReduceScatterSum(const float* in, float* out, int64_t n) override;
  void AllGather(const float* in, float* out, int64_t n) override;
  void AllGather(const uint16_t* in, uint16_t* out, int64_t n) override;
  void AllGather(const int64_t* in, int64_t* out, int64_t n) override;
  // Started at once; as ReduceScatterSum, a gather of more than an MPI count goes in chunks.
  std::unique_ptr<PendingCollective> StartAllGather(const float* in, float* out, int64_t n) override;
  std::unique_ptr<PendingCollective> StartAllGather(const uint16_t* in, uint16_t* out, int64_t n) override;

  void AllToAllV(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                 const std::vector<int64_t>& recv_counts) override;
  void AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts, int32_t* recv,
                 const std::vector<int64_t>& recv_counts) override;
  void AllToAll(const int64_t* in, int64_t* out, int64_t n) override;

  void Broadcast(float* x, int64_t n, int root) override;
  void Broadcast(int64_t* x, int64_t n, int root) override;
  void Barrier() override;

  // Tests only: the largest element count passed to one MPI call (default INT_MAX), so that the
  // chunked and derived-datatype paths can be exercised with small buffers. Process-wide; every rank
  // must set the same value.
  static void SetMaxCountForTesting(int64_t max_count);
  // Tests only: the size from which float/double AllReduceSum takes the two-phase rank-order path
  // (default 64 KiB; <= 0 restores it). Process-wide; every rank must set the same value.
  static void SetTwoPhaseMinBytesForTesting(int64_t min_bytes);

 private:
  struct Op;  // the collective being waited for, for the timeout message
  class ChunkedCollective;
  class PendingReduceScatter;
  template <typename T>
  class PendingAllGather;

  template <typename T>
  void AllReduceImpl(T* x, int64_t n, MPI_Op op, const char* what);
  template <typename T>
  void RankOrderSum(T* x, int64_t n, const Op& op, double deadline);
  template <typename T>
  T* Scratch(int64_t n);  // reusable buffer of n elements (contents undefined)
  template <typename T>
  void AllGatherImpl(const T* in, T* out, int64_t n);
  template <typename T>
  void AllToAllVImpl(const T* send, const std::vector<int64_t>& send_counts, T* recv,
                     const std::vector<int64_t>& recv_counts);
  template <typename T>
  void BroadcastImpl(T* x, int64_t n, int root);
  // Receive buffers of reduce-scatters, kept for the next ones (a step's buckets reuse the last
  // step's): a buffer of n floats, and its return once its collective has finished.
  std::vector<float> TakeBuffer(int64_t n);
  void ReturnBuffer(std::vector<float> buffer);

  // Polls `req` until it completes or the deadline passes (then reports and aborts).
  void Wait(MPI_Request* req, const Op& op, double deadline) const;
  // Reports an MPI error code from starting a collective and aborts.
  void CheckStart(int mpi_err, const Op& op) const;
  [[noreturn]] void Fail(const Op& op, const std::string& why) const;
  double Deadline() const;

  MPI_Comm comm_;
  bool owns_comm_;
  std::string name_;
  double timeout_seconds_;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  std::vector<int> world_ranks_;
  std::vector<double> scratch_;  // received block copies of the rank-order all-reduces
  std::vector<std::vector<float>> spare_buffers_;  // of finished reduce-scatters
};

}  // namespace moe::parallel
