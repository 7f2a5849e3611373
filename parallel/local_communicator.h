// The one-rank group: every collective is a copy (or nothing). Used when a layout has tp = 1 or
// ep = 1, and by single-process tools, so the model always talks to a Communicator.
//
// Float and BF16 collectives move tensor data: given an op backend, they copy with its ops, so the
// buffers may live on a device (a one-GPU run); without one they copy on the host. Integer and double
// collectives carry host-side counts and statistics and always copy on the host.
#pragma once

#include <algorithm>
#include <string>
#include <type_traits>

#include "kernels/backend.h"
#include "parallel/communicator.h"

namespace moe::parallel {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(std::string name = "local", kernels::Backend* ops = nullptr)
      : name_(std::move(name)), ops_(ops) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }

  void AllReduceSum(float*, int64_t) override {}
  void AllReduceSum(double*, int64_t) override {}
  void AllReduceSum(int64_t*, int64_t) override {}
  void AllReduceMax(double*, int64_t) override {}
  void ReduceScatterSum(const float* in, float* out, int64_t n) override { CopyTensor(in, out, n); }
  void AllGather(const float* in, float* out, int64_t n) override { CopyTensor(in, out, n); }
  void AllGather(const uint16_t* in, uint16_t* out, int64_t n) override { CopyTensor(in, out, n); }
  void AllGather(const int64_t* in, int64_t* out, int64_t n) override { Copy(in, out, n); }
  void AllToAllV(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                 const std::vector<int64_t>&) override {
    CopyTensor(send, recv, send_counts[0]);
  }
  void AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts, int32_t* recv,
                 const std::vector<int64_t>&) override {
    Copy(send, recv, send_counts[0]);
  }
  void AllToAll(const int64_t* in, int64_t* out, int64_t n) override { Copy(in, out, n); }
  void Broadcast(float*, int64_t, int) override {}
  void Broadcast(int64_t*, int64_t, int) override {}
  void Barrier() override {}

 private:
  template <typename T>
  static void Copy(const T* in, T* out, int64_t n) {
    if (in != out) std::copy(in, in + n, out);
  }
  template <typename T>  // float or uint16_t (BF16 bits)
  void CopyTensor(const T* in, T* out, int64_t n) {
    if (in == out) return;
    if (ops_ == nullptr) return Copy(in, out, n);
    if constexpr (std::is_same_v<T, float>) {
      ops_->Copy(in, out, n);
    } else {
      ops_->CopyBf16(in, out, n);
    }
  }
  std::string name_;
  kernels::Backend* ops_;
};

}  // namespace moe::parallel
