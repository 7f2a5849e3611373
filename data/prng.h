// Portable pseudo-random numbers for the data pipeline. Everything that decides which tokens a run sees
// (the epoch shuffles, the train/validation split) must give bit-identical results on every platform,
// compiler and standard library, so this file defines its own generator and its own bounded draw:
// std::shuffle, std::uniform_int_distribution and std::hash are implementation-defined and are never
// used for data order.
//
// SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro): a 64-bit counter advanced by
// the golden-ratio constant and passed through a strong finaliser. Small state, passes BigCrush, and its
// output for a given seed is fixed by the arithmetic below.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace moe::data {

// The SplitMix64 finaliser: a bijective 64-bit mix (also a good integer hash).
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// FNV-1a over bytes; a stable hash of names (file names for the train/validation split).
inline uint64_t Fnv1a64(absl::string_view bytes) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return Mix64(state_);
  }

  // Uniform in [0, bound), exactly (no modulo bias): draws below 2^64 mod bound are rejected.
  // `bound` must be > 0.
  uint64_t Uniform(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;  // == 2^64 mod bound
    for (;;) {
      const uint64_t x = Next();
      if (x >= threshold) return x % bound;
    }
  }

  // Uniform in [0, 1) with 53 random bits.
  double UniformDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace moe::data
