// Byte-level tokenizer: every byte is its own token (id = byte value, 0..255) and one extra id, 256,
// marks the end of a document. Vocabulary 257. No normalisation and no unknown tokens: any byte string,
// UTF-8 or not, round-trips exactly. It is the tokenizer of the default (Brown corpus) runs; the model
// may pad its embedding table past 257 for GEMM-friendly shapes, so Decode tolerates larger ids.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "data/tokenizer.h"

namespace moe::data {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr uint32_t kEndOfDocument = 256;
  static constexpr uint32_t kVocabSize = 257;
  // How Decode renders kEndOfDocument unless special tokens are skipped.
  static constexpr absl::string_view kEndOfDocumentMarker = "<|endoftext|>";

  // One id per byte, in order. Never emits kEndOfDocument (callers that build shards append it); there
  // is nothing for add_special_tokens to add.
  std::vector<uint32_t> Encode(absl::string_view text, bool add_special_tokens = false) const override;

  // Inverse of Encode for ids < 256. kEndOfDocument is dropped with `skip_special_tokens`, otherwise
  // written as kEndOfDocumentMarker (what `generate` prints, so a sampled document end is seen); an id
  // >= kVocabSize (possible from a model whose vocabulary is padded) becomes U+FFFD.
  std::string Decode(absl::Span<const uint32_t> ids, bool skip_special_tokens = false) const override;

  uint32_t vocab_size() const override { return kVocabSize; }
  std::optional<uint32_t> TokenToId(absl::string_view token) const override;
  std::optional<uint32_t> bos_id() const override { return std::nullopt; }
  std::optional<uint32_t> eos_id() const override { return kEndOfDocument; }
  bool add_bos_token() const override { return false; }
  std::string fingerprint() const override { return "byte"; }
  std::string name() const override { return "byte"; }
  std::vector<std::string> files() const override { return {}; }
};

}  // namespace moe::data
