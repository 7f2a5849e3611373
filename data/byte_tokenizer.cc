// Byte-level tokenizer (see byte_tokenizer.h).
#include "data/byte_tokenizer.h"

namespace moe::data {

std::vector<uint32_t> ByteTokenizer::Encode(absl::string_view text, bool /*add_special_tokens*/) const {
  std::vector<uint32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::Decode(absl::Span<const uint32_t> ids, bool skip_special_tokens) const {
  static constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8
  std::string out;
  out.reserve(ids.size());
  for (uint32_t id : ids) {
    if (id < 256) {
      out.push_back(static_cast<char>(id));
    } else if (id == kEndOfDocument) {
      if (!skip_special_tokens) out.append(kEndOfDocumentMarker.data(), kEndOfDocumentMarker.size());
    } else {
      out.append(kReplacement.data(), kReplacement.size());
    }
  }
  return out;
}

std::optional<uint32_t> ByteTokenizer::TokenToId(absl::string_view token) const {
  if (token.size() == 1) return static_cast<unsigned char>(token[0]);
  if (token == kEndOfDocumentMarker) return kEndOfDocument;
  return std::nullopt;
}

}  // namespace moe::data
