// The communicator interface: the collectives the trainer needs over one process group, on host
// buffers (MPI) today and device buffers (NCCL) with --config=cuda. Every call is bounded by the
// group's timeout: a peer that dies or hangs makes the call fail with a message naming this rank,
// the group, the collective and (where known) the peer, and the job is aborted instead of hanging.
//
// Reductions are sums in FP32 (gradients, docs/architecture.md "Numerics") or FP64/int64 for statistics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moe::parallel {

// The element type's name in timeout and error messages ("... 1048576 floats ...").
template <typename T>
const char* UnitName();
template <>
inline const char* UnitName<float>() { return "floats"; }
template <>
inline const char* UnitName<double>() { return "doubles"; }
template <>
inline const char* UnitName<int64_t>() { return "int64s"; }
template <>
inline const char* UnitName<int32_t>() { return "int32s"; }
template <>
inline const char* UnitName<uint16_t>() { return "BF16 values"; }

// A collective started without waiting (Communicator::StartReduceScatterSum). Its buffers belong to it
// until Finish returns; destroying it unfinished finishes it first. It must not outlive its group.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Lets the collective advance without blocking (MPI moves data only inside its calls, so a rank
  // that computes between the start and the finish should call this now and then); true once the
  // data has arrived.
  virtual bool Test() = 0;
  // Waits for the collective (bounded by the group's timeout, as every call) and writes its result.
  virtual void Finish() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // rank within this group
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;  // e.g. "tp", "dp", "ep", "expert_dp", "world"

  // In place: x[i] = Σ_ranks x[i].
  virtual void AllReduceSum(float* x, int64_t n) = 0;
  virtual void AllReduceSum(double* x, int64_t n) = 0;
  virtual void AllReduceSum(int64_t* x, int64_t n) = 0;
  virtual void AllReduceMax(double* x, int64_t n) = 0;

  // in [size * n] -> out [n]: out = Σ_ranks in[rank * n : (rank+1) * n] (this rank's block).
  virtual void ReduceScatterSum(const float* in, float* out, int64_t n) = 0;
  // ReduceScatterSum, started now and finished by the returned handle's Finish, which leaves in `out`
  // the same bits ReduceScatterSum would; the caller leaves `in` and `out` alone until then. A group
  // matches its collectives in the order they are started, so every member starts them in the same
  // order (blocking calls in between included). This default runs the collective at once.
  virtual std::unique_ptr<PendingCollective> StartReduceScatterSum(const float* in, float* out, int64_t n);
  // in [n] -> out [size * n], block r from rank r. The uint16_t form moves BF16 bits (tensor data:
  // BF16 working weights), which are only moved, never reduced.
  virtual void AllGather(const float* in, float* out, int64_t n) = 0;
  virtual void AllGather(const uint16_t* in, uint16_t* out, int64_t n) = 0;
  virtual void AllGather(const int64_t* in, int64_t* out, int64_t n) = 0;
  // AllGather started now and finished by the handle, as StartReduceScatterSum.
  virtual std::unique_ptr<PendingCollective> StartAllGather(const float* in, float* out, int64_t n);
  virtual std::unique_ptr<PendingCollective> StartAllGather(const uint16_t* in, uint16_t* out, int64_t n);

  // Variable all-to-all: send_counts[r] elements (contiguous, in rank order) go to rank r;
  // recv_counts[r] elements arrive from rank r, placed in rank order.
  virtual void AllToAllV(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                         const std::vector<int64_t>& recv_counts) = 0;
  virtual void AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts, int32_t* recv,
                         const std::vector<int64_t>& recv_counts) = 0;
  // Equal all-to-all of int64 counts: in [size * n] -> out [size * n].
  virtual void AllToAll(const int64_t* in, int64_t* out, int64_t n) = 0;

  virtual void Broadcast(float* x, int64_t n, int root) = 0;
  virtual void Broadcast(int64_t* x, int64_t n, int root) = 0;
  virtual void Barrier() = 0;
};

namespace internal {
// A collective that completed when it was started.
class FinishedCollective final : public PendingCollective {
 public:
  bool Test() override { return true; }
  void Finish() override {}
};
}  // namespace internal

inline std::unique_ptr<PendingCollective> Communicator::StartReduceScatterSum(const float* in, float* out,
                                                                              int64_t n) {
  ReduceScatterSum(in, out, n);
  return std::make_unique<internal::FinishedCollective>();
}

inline std::unique_ptr<PendingCollective> Communicator::StartAllGather(const float* in, float* out, int64_t n) {
  AllGather(in, out, n);
  return std::make_unique<internal::FinishedCollective>();
}

inline std::unique_ptr<PendingCollective> Communicator::StartAllGather(const uint16_t* in, uint16_t* out,
                                                                       int64_t n) {
  AllGather(in, out, n);
  return std::make_unique<internal::FinishedCollective>();
}

}  // namespace moe::parallel
