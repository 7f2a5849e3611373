// Greedy self-speculative decoding with the model's multi-token-prediction modules (DeepSeek-V3 report
// §5.4.3 evaluates MTP this way; docs/model.md "Speculative decoding with MTP").
//
// Each round: the D MTP modules draft the D tokens after the newest committed token (module k's output at
// the position before that token predicts the k-th next one, chained through h^k and the previous draft);
// then the main model verifies the newest token and the drafts in one pass over the absorbed latent cache
// (IncrementalDecoder::Forward). Drafts are kept while they equal the main model's greedy choice, and
// the main model's choice after the last kept draft is always kept too, so every round yields 1 .. D+1
// tokens and the text is the main model's own greedy text. Rejected positions are dropped from the
// caches (Truncate); each MTP module keeps only the positions whose inputs are all committed tokens
// and recomputes the rest on the next round.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "model/inference/decoder.h"

namespace moe::inference {

struct SpeculativeStats {
  int64_t rounds = 0;    // verification passes of the main model
  int64_t drafted = 0;   // draft tokens proposed
  int64_t accepted = 0;  // ... kept
  std::vector<int64_t> accepted_at_depth;  // [D]: drafts kept at draft position k (1-based, index k-1)
  double acceptance() const { return drafted > 0 ? static_cast<double>(accepted) / drafted : 0.0; }
};

// Greedy decoding of up to max_new tokens after `prompt` (stopping after `eos` if eos >= 0), calling
// on_token for each as it is committed. The decoder must be fresh (position 0) and built with
// DecoderOptions::mtp and at least one MTP module.
absl::StatusOr<std::vector<int32_t>> GenerateGreedySpeculative(IncrementalDecoder& decoder,
                                                               const std::vector<int32_t>& prompt,
                                                               int64_t max_new, int32_t eos,
                                                               const std::function<void(int32_t)>& on_token,
                                                               SpeculativeStats* stats);

// Plain greedy decoding with the same interface (the reference the speculative text must equal).
absl::StatusOr<std::vector<int32_t>> GenerateGreedy(IncrementalDecoder& decoder, const std::vector<int32_t>& prompt,
                                                    int64_t max_new, int32_t eos,
                                                    const std::function<void(int32_t)>& on_token);

// The greedy choice: argmax, ties to the lower id (as SampleToken with temperature 0).
int32_t Argmax(const float* logits, int64_t vocab);

}  // namespace moe::inference
