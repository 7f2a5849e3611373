// One process group seen through two communicators: its tensor collectives (float: activations,
// gradients, weights; device memory in a GPU run) go over `tensors` (NCCL), and its host collectives
// (double, int64, int32: loss sums, expert counts, routing counts, control flags) over `host` (the
// mesh's MPI group). This is the convention of the whole code base: float and BF16 (uint16_t)
// collectives move tensor data, the other types move host values (parallel/local_communicator.h says
// the same).
//
// Both must span the same ranks in the same order; rank, size and name are the host group's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace moe::parallel {

class SplitCommunicator final : public Communicator {
 public:
  SplitCommunicator(std::unique_ptr<Communicator> tensors, Communicator* host)
      : tensors_(std::move(tensors)), host_(host) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }

  void AllReduceSum(float* x, int64_t n) override { tensors_->AllReduceSum(x, n); }
  void AllReduceSum(double* x, int64_t n) override { host_->AllReduceSum(x, n); }
  void AllReduceSum(int64_t* x, int64_t n) override { host_->AllReduceSum(x, n); }
  void AllReduceMax(double* x, int64_t n) override { host_->AllReduceMax(x, n); }
  void ReduceScatterSum(const float* in, float* out, int64_t n) override {
    tensors_->ReduceScatterSum(in, out, n);
  }
  std::unique_ptr<PendingCollective> StartReduceScatterSum(const float* in, float* out, int64_t n) override {
    return tensors_->StartReduceScatterSum(in, out, n);
  }
  void AllGather(const float* in, float* out, int64_t n) override { tensors_->AllGather(in, out, n); }
  void AllGather(const uint16_t* in, uint16_t* out, int64_t n) override { tensors_->AllGather(in, out, n); }
  void AllGather(const int64_t* in, int64_t* out, int64_t n) override { host_->AllGather(in, out, n); }
  std::unique_ptr<PendingCollective> StartAllGather(const float* in, float* out, int64_t n) override {
    return tensors_->StartAllGather(in, out, n);
  }
  std::unique_ptr<PendingCollective> StartAllGather(const uint16_t* in, uint16_t* out, int64_t n) override {
    return tensors_->StartAllGather(in, out, n);
  }
  void AllToAllV(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                 const std::vector<int64_t>& recv_counts) override {
    tensors_->AllToAllV(send, send_counts, recv, recv_counts);
  }
  void AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts, int32_t* recv,
                 const std::vector<int64_t>& recv_counts) override {
    host_->AllToAllV(send, send_counts, recv, recv_counts);
  }
  void AllToAll(const int64_t* in, int64_t* out, int64_t n) override { host_->AllToAll(in, out, n); }
  void Broadcast(float* x, int64_t n, int root) override { tensors_->Broadcast(x, n, root); }
  void Broadcast(int64_t* x, int64_t n, int root) override { host_->Broadcast(x, n, root); }
  void Barrier() override { host_->Barrier(); }

 private:
  std::unique_ptr<Communicator> tensors_;
  Communicator* host_;
};

}  // namespace moe::parallel
