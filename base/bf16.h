// BF16 <-> FP32 conversion with round-to-nearest-even (docs/architecture.md "Numerics"): the same rule
// the CUDA backend's __float2bfloat16_rn uses, so a CPU run is a faithful stand-in for a GPU run.
#pragma once

#include <cstdint>
#include <cstring>

namespace moe {

// Branch-free (the NaN case is a select), so loops over arrays vectorise.
inline uint16_t FloatToBf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = ((u >> 16) | 0x0040u) & 0xffffu;  // sign kept
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

inline float Bf16BitsToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The FP32 value nearest-even-rounded to BF16 precision.
inline float RoundToBf16(float f) { return Bf16BitsToFloat(FloatToBf16Bits(f)); }

}  // namespace moe
