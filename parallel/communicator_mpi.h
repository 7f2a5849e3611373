// MpiCommunicator: the Communicator interface over one MPI communicator, on host buffers.
//
// Every collective is started non-blocking (MPI_Iallreduce, MPI_Ireduce_scatter_block, MPI_Iallgather,
// MPI_Ialltoallv, MPI_Ialltoall, MPI_Ibcast, MPI_Ibarrier) and then waited for by polling MPI_Test with
// a backoff (spin, then yield, then nanosleep growing to 1 ms), so the wait is bounded (STYLE
// principle 9): when the group's timeout passes, this rank prints one line naming itself, the group,
// the collective, the element count and the group's members, and aborts the whole job with
// MPI_Abort(MPI_COMM_WORLD, 2). A dead or stopped peer therefore ends the job instead of hanging it.
// MPI errors are returned (MPI_ERRORS_RETURN) and reported the same way.
//
// Large counts: MPI counts are int. Reductions, broadcasts, reduce-scatters and all-gathers longer
// than the per-call limit (INT_MAX elements) run as several calls of at most that many elements.
// AllToAllV describes each side with a contiguous datatype of g elements, g = gcd of that side's
// counts, when a count or displacement exceeds the limit (MoE dispatch counts are multiples of the
// hidden size, so this covers any realistic payload); if even that does not fit, it refuses with a
// clear line and aborts.
//
// Determinism: AllReduceSum/ReduceScatterSum leave the reduction order to Open MPI, which picks its
// algorithm (tuned/libnbc decision functions) from the communicator size and the message size only.
// So for a fixed group and element count the result is the same bits on every call and on every rank
// of the group (tested in communicator_mpi_test); it may differ from a group of another size.
//
// Threading: MPI is initialised MPI_THREAD_FUNNELED; call from the thread that initialised MPI.
// Buffers of AllToAllV/ReduceScatterSum/AllGather must not overlap (in != out).
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
  void AllGather(const float* in, float* out, int64_t n) override;
  void AllGather(const int64_t* in, int64_t* out, int64_t n) override;

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

 private:
  struct Op;  // the collective being waited for, for the timeout message

  template <typename T>
  void AllReduceImpl(T* x, int64_t n, MPI_Op op, const char* what);
  template <typename T>
  void AllGatherImpl(const T* in, T* out, int64_t n);
  template <typename T>
  void AllToAllVImpl(const T* send, const std::vector<int64_t>& send_counts, T* recv,
                     const std::vector<int64_t>& recv_counts);
  template <typename T>
  void BroadcastImpl(T* x, int64_t n, int root);

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
};

}  // namespace moe::parallel
