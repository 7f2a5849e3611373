// The communicator interface: the collectives the trainer needs over one process group, on host
// buffers (MPI) today and device buffers (NCCL) with --config=cuda. Every call is bounded by the
// group's timeout: a peer that dies or hangs makes the call fail with a message naming this rank,
// the group, the collective and (where known) the peer, and the job is aborted instead of hanging.
//
// Reductions are sums in FP32 (gradients, docs/architecture.md "Numerics") or FP64/int64 for statistics.
#pragma once

#include <cstdint>
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
  // in [n] -> out [size * n], block r from rank r. The uint16_t form moves BF16 bits (tensor data:
  // BF16 working weights), which are only moved, never reduced.
  virtual void AllGather(const float* in, float* out, int64_t n) = 0;
  virtual void AllGather(const uint16_t* in, uint16_t* out, int64_t n) = 0;
  virtual void AllGather(const int64_t* in, int64_t* out, int64_t n) = 0;

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

}  // namespace moe::parallel
