// What every layer's Forward/Backward receives: the op backend and the numerics mode. Holds no
// state of its own (streams/handles live in the backend object).
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace moe::model {

enum class Numerics { kFp32, kBf16 };

struct LayerContext {
  kernels::Backend* ops = nullptr;
  Numerics numerics = Numerics::kFp32;

  bool bf16() const { return numerics == Numerics::kBf16; }
  // A "stored" activation: rounded to BF16 in BF16 mode (the CPU keeps BF16 values in FP32 words).
  void Store(float* x, int64_t n) const {
    if (bf16()) ops->RoundToBf16(x, n);
  }
};

}  // namespace moe::model
