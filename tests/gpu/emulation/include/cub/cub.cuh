// Emulation: CUB's stable radix sort of (key, value) pairs as a host std::stable_sort.
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>
#include "emu.h"
namespace cub {
struct DeviceRadixSort {
  static cudaError_t SortPairs(void* temp, size_t& bytes, const int32_t* kin, int32_t* kout,
                               const int32_t* vin, int32_t* vout, int n, int = 0, int = 32,
                               cudaStream_t = nullptr) {
    if (temp == nullptr) { bytes = 64; return 0; }
    EmuEnqueue([=] {  // on the stream, like the real sort
      std::vector<int> ord(n);
      std::iota(ord.begin(), ord.end(), 0);
      std::stable_sort(ord.begin(), ord.end(), [&](int a, int b) { return kin[a] < kin[b]; });
      for (int i = 0; i < n; ++i) { kout[i] = kin[ord[i]]; vout[i] = vin[ord[i]]; }
    });
    return 0;
  }
};
}  // namespace cub
