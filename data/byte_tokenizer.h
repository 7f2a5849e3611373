// Byte-level tokenizer: every byte is its own token (id = byte value, 0..255) and one extra id, 256,
// marks the end of a document. Vocabulary 257. No normalisation and no unknown tokens: any byte string,
// UTF-8 or not, round-trips exactly. It is the tokenizer of the default (Brown corpus) runs; the model
// may pad its embedding table past 257 for GEMM-friendly shapes, so Decode tolerates larger ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace moe::data {

class ByteTokenizer {
 public:
  static constexpr uint32_t kEndOfDocument = 256;
  static constexpr uint32_t kVocabSize = 257;
  // What Decode writes for kEndOfDocument under EodRendering::kMarker.
  static constexpr absl::string_view kEndOfDocumentMarker = "<|endoftext|>";

  // How Decode renders the end-of-document id: dropped (the text of concatenated documents), or as the
  // visible kEndOfDocumentMarker (what `generate` prints, so a sampled document end is seen).
  enum class EodRendering { kDrop, kMarker };

  // One id per byte, in order. Never emits kEndOfDocument (callers that build shards append it).
  static std::vector<uint32_t> Encode(absl::string_view text);

  // Inverse of Encode for ids < 256. kEndOfDocument follows `eod`; an id >= kVocabSize (possible from
  // a model whose vocabulary is padded) becomes U+FFFD, the Unicode replacement character.
  static std::string Decode(absl::Span<const uint32_t> ids, EodRendering eod = EodRendering::kMarker);
};

}  // namespace moe::data
