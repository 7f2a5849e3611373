// A tensor the forward keeps for the backward (docs/architecture.md "Numerics"). In FP32 mode it is
// FP32 storage the forward writes in place. In BF16 mode it is 2-byte BF16 storage: the forward writes
// FP32 values into a scratch buffer, Save rounds them to BF16 in place (the forward goes on with the
// stored values, as LayerContext::Store) and packs them, and the backward's Load unpacks them into a
// scratch buffer. BF16 -> FP32 is exact, so both modes compute what they did when BF16 values were kept
// in FP32 words, with half the saved-activation memory in BF16 mode.
//
//   float* q = s->q.Prepare(ctx, frame, n * dq);   // forward: write q here...
//   s->q.Save(ctx);                                // ...then keep it
//   const float* q = s.q.Load(ctx, frame);         // backward
#pragma once

#include <cstdint>

#include "base/buffer.h"
#include "model/layer_context.h"
#include "model/scratch.h"

namespace moe::model {

class SavedActivation {
 public:
  // Where the forward writes the n values to keep: this tensor's storage in FP32 mode, a buffer of
  // `frame` in BF16 mode (valid until the frame ends).
  float* Prepare(const LayerContext& ctx, Scratch::Frame& frame, int64_t n) {
    n_ = n;
    packed_ = ctx.bf16();
    if (!ctx.bf16()) {
      fp32_.resize(n);
      staged_ = fp32_.data();
    } else {
      staged_ = frame.Floats(n);
    }
    return staged_;
  }

  // Where an op that writes a kernels::ValuesOut puts the n values to keep, when the forward does not read
  // them again as FP32 words: this tensor's FP32 storage in FP32 mode, its 2-byte storage in BF16 mode
  // (the op rounds as it writes, so there is nothing to Save).
  kernels::ValuesOut Output(const LayerContext& ctx, int64_t n) {
    n_ = n;
    packed_ = ctx.bf16();
    staged_ = nullptr;
    if (!packed_) {
      fp32_.resize(n);
      return fp32_.data();
    }
    bf16_.resize(n);
    return kernels::ValuesOut::Bits(bf16_.data());
  }

  // Keeps the values written at Prepare's pointer: rounds them to BF16 in place in BF16 mode and packs
  // them into this tensor's 2-byte storage.
  void Save(const LayerContext& ctx) {
    if (!ctx.bf16()) return;
    bf16_.resize(n_);
    ctx.ops->RoundAndPackBf16(staged_, n_, bf16_.data());
  }

  // Keeps a copy of n values of x, a tensor the forward already has elsewhere. In BF16 mode x must hold
  // BF16 values (a stored activation), which are packed as they are.
  void SaveCopy(const LayerContext& ctx, const float* x, int64_t n) {
    n_ = n;
    packed_ = ctx.bf16();
    staged_ = nullptr;
    if (!packed_) {
      fp32_.resize(n);
      ctx.ops->Copy(x, fp32_.data(), n);
    } else {
      bf16_.resize(n);
      ctx.ops->PackBf16(x, n, bf16_.data());
    }
  }

  // The kept values as FP32: the storage itself in FP32 mode, unpacked into a buffer of `frame` in BF16
  // mode.
  const float* Load(const LayerContext& ctx, Scratch::Frame& frame) const {
    if (!ctx.bf16()) return fp32_.data();
    float* x = frame.Floats(n_);
    ctx.ops->UnpackBf16(bf16_.data(), n_, x);
    return x;
  }

  // The kept values for a kernel that reads a kernels::ValuesIn (RMSNorm, SwiGLU and RowDot backward):
  // the storage itself, FP32 or BF16 bits, without unpacking.
  kernels::ValuesIn values() const {
    return packed_ ? kernels::ValuesIn::Bits(bf16_.data()) : kernels::ValuesIn(fp32_.data());
  }

  // The kept values as a GEMM operand, without unpacking (kernels::GemmProblem takes either): FP32
  // storage in FP32 mode, BF16 bits in BF16 mode. Exactly one of the two is non-null.
  const float* fp32() const { return packed_ ? nullptr : fp32_.data(); }
  const uint16_t* bits() const { return packed_ ? bf16_.data() : nullptr; }

  int64_t size() const { return n_; }
  int64_t bytes() const {
    return static_cast<int64_t>(fp32_.size() * sizeof(float) + bf16_.size() * sizeof(uint16_t));
  }
  void reset() {
    fp32_.reset();
    bf16_.reset();
    staged_ = nullptr;
    n_ = 0;
    packed_ = false;
  }

 private:
  Buffer<float> fp32_;
  Buffer<uint16_t> bf16_;
  float* staged_ = nullptr;
  int64_t n_ = 0;
  bool packed_ = false;  // BF16 mode: the values live in bf16_
};

inline int64_t ByteSize(const SavedActivation& s) { return s.bytes(); }

}  // namespace moe::model
