// What every layer's Forward/Backward receives: the op backend and the numerics mode. Holds no
// state of its own (streams/handles live in the backend object).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "model/params.h"
#include "model/scratch.h"
#include "parallel/communicator.h"

namespace moe::model {

enum class Numerics { kFp32, kBf16 };

// This rank's place in the tensor-parallel group: which slice of a TP-split tensor it holds.
struct TpSlice {
  int64_t rank = 0;
  int64_t size = 1;
  // ShardSpec of a [rows, cols] tensor split evenly along `dim`.
  ShardSpec Spec(int dim, int64_t rows, int64_t cols) const {
    ShardSpec s;
    s.dim = dim;
    s.offset = rank * (dim == 0 ? rows : cols) / size;
    s.global_shape = {rows, cols};
    return s;
  }
};

// Whole-buffer copies between the host and the backend's memory, in op order (Backend::CopyFromHost /
// CopyToHost): no Synchronize() needed around them.
template <typename T>
void UploadToBuffer(kernels::Backend& ops, const T* src, int64_t n, Buffer<T>* dst) {
  dst->resize(n);
  ops.CopyFromHost(src, sizeof(T) * static_cast<size_t>(n), dst->data());
}
template <typename T>
std::vector<T> DownloadBuffer(kernels::Backend& ops, const Buffer<T>& src) {
  std::vector<T> host(static_cast<size_t>(src.size()));
  ops.CopyToHost(src.data(), sizeof(T) * host.size(), host.data());
  return host;
}

// Bytes held by one buffer (Buffer or std::vector); SavedActivation has its own overload.
template <typename V>
int64_t ByteSize(const V& v) {
  return static_cast<int64_t>(v.size() * sizeof(typename V::value_type));
}
// Bytes held by a set of saved-activation buffers (for the per-step activation-memory report).
template <typename... V>
int64_t BufferBytes(const V&... v) {
  return (ByteSize(v) + ... + int64_t{0});
}

struct LayerContext {
  kernels::Backend* ops = nullptr;
  Numerics numerics = Numerics::kFp32;
  parallel::Communicator* tp = nullptr;  // tensor(+sequence)-parallel group
  parallel::Communicator* ep = nullptr;  // expert-parallel group
  Scratch* scratch = nullptr;            // per-call temporaries (model/scratch.h)

  bool bf16() const { return numerics == Numerics::kBf16; }
  // A "stored" activation: rounded to BF16 in BF16 mode (BF16 values in FP32 words while the forward
  // uses them; SavedActivation keeps them as 2-byte BF16 for the backward).
  void Store(float* x, int64_t n) const {
    if (bf16()) ops->RoundToBf16(x, n);
  }
  // y += a, then Store(y), in one pass (a residual add).
  void AddStored(const float* a, float* y, int64_t n) const {
    if (bf16()) {
      ops->AddAndRoundToBf16(a, y, n);
    } else {
      ops->Add(a, y, n);
    }
  }
  // Where an op writes a tensor that only feeds BF16 products (a gradient such as SwiGLU's da): BF16 bits
  // in BF16 mode, which the products then read in place, FP32 words otherwise; a buffer of `frame`.
  kernels::ValuesOut OperandOut(Scratch::Frame& frame, int64_t n) const {
    if (bf16()) return kernels::ValuesOut::Bits(frame.Bits(n));
    return frame.Floats(n);
  }
  // An FP32 tensor that feeds several BF16 products (a gradient: dX and dW both read dY), as BF16 bits in
  // a buffer of `frame`, converted once instead of by every product (the same round-to-nearest-even
  // values). Null in FP32 mode, where the products read the FP32 tensor.
  const uint16_t* OperandBits(Scratch::Frame& frame, const float* x, int64_t n) const {
    if (!bf16()) return nullptr;
    uint16_t* bits = frame.Bits(n);
    ops->PackBf16(x, n, bits);
    return bits;
  }
};

}  // namespace moe::model
