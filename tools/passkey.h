// Passkey retrieval for tools/eval_long: the prompts (filler text with a five-digit key hidden at a depth
// fraction, then the question), encoded with the model's tokenizer to fit the evaluation length, and the
// scoring of the answers. No model here: eval_long decodes the answers greedily between BuildPasskeyCases
// and ScorePasskey. The prompt format and the metrics are described at the top of tools/eval_long.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace moe::passkey {

inline constexpr int kKeyDigits = 5;  // keys are 10000..99999

// Results of one depth fraction, accumulated over its trials.
struct PasskeyDepth {
  double depth = 0;
  int64_t key_offset = 0;  // byte offset of the key sentence in the prompt (of the depth's last trial)
  int64_t exact = 0, digits_right = 0, trials = 0;
  std::vector<std::string> keys, answers;
};

// One passkey prompt, encoded, and the key's own tokens (how many tokens the answer gets).
struct PasskeyCase {
  std::vector<int32_t> ids;      // the prompt, then the greedy answer tokens as they are decoded
  std::vector<uint32_t> expected;  // the key, encoded alone
  int64_t prompt_tokens = 0;
};

// Bytes of a prompt for `key` that are not filler: the key sentence and the question.
int64_t FixedPromptBytes(const std::string& key);

// The prompt for one key at one depth: exactly `length` bytes (>= FixedPromptBytes(key)).
std::string PasskeyPrompt(const std::string& key, double depth, int64_t length, int64_t* key_offset);

// The prompt for `key` at `depth` with the longest filler whose encoding fits `budget` tokens. The byte
// tokenizer has one token per byte: exactly PasskeyPrompt(key, depth, budget).
absl::StatusOr<std::vector<uint32_t>> EncodedPasskeyPrompt(const data::Tokenizer& tokenizer, const std::string& key,
                                                           double depth, int64_t budget, int64_t* key_offset);

// `trials` prompts per depth, keys from SplitMix64(seed), each sized so that prompt plus answer is at most
// `seq` tokens. Fills `pk` (sized like `depths`) and appends to `cases` in depth-major order [D·trials].
// Errors when a prompt cannot fit or encodes to an id >= `vocab`.
absl::Status BuildPasskeyCases(const data::Tokenizer& tokenizer, const std::vector<double>& depths, int64_t trials,
                               int64_t seq, int64_t vocab, uint64_t seed, std::vector<PasskeyDepth>* pk,
                               std::vector<PasskeyCase>* cases);

// Scores the decoded answers (the last expected.size() ids of every case) into `pk`: exact match of the
// decoded text, and right digits per token when the key is one token per digit, else per character.
void ScorePasskey(const data::Tokenizer& tokenizer, const std::vector<PasskeyCase>& cases, int64_t trials,
                  std::vector<PasskeyDepth>* pk);

}  // namespace moe::passkey
