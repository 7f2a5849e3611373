// The tokenizer interface every data path and tool goes through: the byte-level tokenizer of the
// default runs (data/byte_tokenizer.h) and Hugging Face `tokenizer.json` byte-level BPE tokenizers
// (data/hf_tokenizer/). `LoadTokenizer` (data/load_tokenizer.h) picks one from a spec string, so a
// config key or a flag can name either.
//
// Thread safety: Encode and Decode are const and may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace moe::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids of `text`. Hugging Face tokenizers need valid UTF-8 (callers repair or refuse invalid input
  // first, data/utf8.h); the byte tokenizer takes any bytes. `add_special_tokens` adds what the
  // tokenizer's post-processor adds (e.g. a BOS id), as Hugging Face's `encode(text, add_special_tokens)`.
  virtual std::vector<uint32_t> Encode(absl::string_view text, bool add_special_tokens = false) const = 0;

  // The text of `ids`; ids the tokenizer does not know are skipped (Hugging Face) or become U+FFFD
  // (byte tokenizer). `skip_special_tokens` drops special (added) tokens.
  virtual std::string Decode(absl::Span<const uint32_t> ids, bool skip_special_tokens = false) const = 0;

  // One past the largest id Encode can produce: the smallest model vocabulary that can train on it.
  virtual uint32_t vocab_size() const = 0;

  // The id of a token string (vocabulary or added token), if any.
  virtual std::optional<uint32_t> TokenToId(absl::string_view token) const = 0;

  // From tokenizer_config.json where present: its bos_token / eos_token (as ids) and add_bos_token.
  // The byte tokenizer has no BOS and uses its end-of-document id (256) as EOS.
  virtual std::optional<uint32_t> bos_id() const = 0;
  virtual std::optional<uint32_t> eos_id() const = 0;
  virtual bool add_bos_token() const = 0;

  // Identifies the exact tokenizer: "byte" for the byte tokenizer, otherwise "fnv1a64:<16 hex digits>"
  // of the tokenizer.json bytes. Token shards and checkpoints record it; the trainer compares them.
  virtual std::string fingerprint() const = 0;

  // Short human-readable name for logs and shard indexes ("byte", or the tokenizer.json path).
  virtual std::string name() const = 0;

  // Files that describe the tokenizer (tokenizer.json, tokenizer_config.json when present): what a
  // checkpoint or a Hugging Face export copies so the tokenizer travels with the model. Empty for the
  // byte tokenizer.
  virtual std::vector<std::string> files() const = 0;
};

}  // namespace moe::data
