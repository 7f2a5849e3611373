// Next-token choice from logits: greedy, or temperature plus nucleus (top-p) sampling with the project's
// portable PRNG (data/prng.h), so a seed gives the same tokens on every platform (no std::distributions).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "data/prng.h"

namespace moe::inference {

struct SamplingOptions {
  double temperature = 0.8;  // 0: greedy (argmax, ties to the lower id); else p ∝ exp(z / temperature)
  double top_p = 0.95;       // keep the most probable tokens until their mass reaches top_p (0 < top_p <= 1)
};

// temperature >= 0 and finite; 0 < top_p <= 1. Errors name the flag (--temperature, --top_p).
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

// Picks the next token from logits [V]. Greedy draws nothing from `rng`; sampling draws exactly once:
// probabilities in FP64 (max-subtracted softmax of z / temperature), tokens sorted by probability (ties to
// the lower id), the shortest prefix whose mass reaches top_p, then u·mass with u uniform in [0, 1)
// selects along that prefix.
int32_t SampleToken(const std::vector<float>& logits, const SamplingOptions& options, data::SplitMix64* rng);

}  // namespace moe::inference
