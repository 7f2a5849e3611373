// Emulation: CUB's stable radix sort of (key, value) pairs as a host std::stable_sort, on key bits
// [begin_bit, end_bit) as CUB orders them (a signed key's sign bit flipped first).
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>
#include "emu.h"
namespace cub {
struct DeviceRadixSort {
  static cudaError_t SortPairs(void* temp, size_t& bytes, const int32_t* kin, int32_t* kout,
                               const int32_t* vin, int32_t* vout, int n, int begin_bit = 0, int end_bit = 32,
                               cudaStream_t stream = nullptr) {
    if (temp == nullptr) { bytes = 64; return 0; }
    EmuEnqueue(stream, [=] {  // on the stream, like the real sort
      std::vector<int> ord(n);
      std::iota(ord.begin(), ord.end(), 0);
      const uint64_t mask = (uint64_t{1} << (end_bit - begin_bit)) - 1;
      auto digit = [&](int i) { return ((static_cast<uint32_t>(kin[i]) ^ 0x80000000u) >> begin_bit) & mask; };
      std::stable_sort(ord.begin(), ord.end(), [&](int a, int b) { return digit(a) < digit(b); });
      for (int i = 0; i < n; ++i) { kout[i] = kin[ord[i]]; vout[i] = vin[ord[i]]; }
    });
    return 0;
  }
};
}  // namespace cub
