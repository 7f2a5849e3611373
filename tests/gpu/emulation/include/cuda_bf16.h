// Emulation: BF16 through base/bf16.h (round to nearest even, as __float2bfloat16_rn).
#pragma once
#include "emu.h"
#include "base/bf16.h"
struct __nv_bfloat16 { uint16_t b; };
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {moe::FloatToBf16Bits(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return moe::Bf16BitsToFloat(h.b); }
