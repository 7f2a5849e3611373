// Per-call temporaries of the layers (gradients of intermediate products, split/concat staging): a
// stack of Buffers reused from call to call, so a step allocates nothing once the first step has
// sized them (a device allocation per temporary would cost more than many of the ops).
//
//   Scratch::Frame frame(*ctx.scratch);
//   float* dq = frame.Floats(n * h * dqk);   // contents undefined
//
// A Frame hands out the next buffers of the stack and gives them back when it goes out of scope, so
// nested calls (a layer inside the model's backward) stack their temporaries above the caller's.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/buffer.h"

namespace moe::model {

class Scratch {
 public:
  class Frame {
   public:
    explicit Frame(Scratch& s) : s_(s), base_(s.top_) {}
    ~Frame() { s_.top_ = base_; }
    Frame(const Frame&) = delete;
    Frame& operator=(const Frame&) = delete;
    float* Floats(int64_t n) { return s_.Take(n); }
    // n 2-byte values (BF16 bits), from the same stack.
    uint16_t* Bits(int64_t n) { return reinterpret_cast<uint16_t*>(s_.Take((n + 1) / 2)); }

   private:
    Scratch& s_;
    size_t base_;
  };

 private:
  float* Take(int64_t n) {
    if (top_ == buffers_.size()) buffers_.push_back(std::make_unique<Buffer<float>>());
    Buffer<float>& b = *buffers_[top_++];
    b.resize(n);
    return b.data();
  }
  std::vector<std::unique_ptr<Buffer<float>>> buffers_;
  size_t top_ = 0;
};

}  // namespace moe::model
