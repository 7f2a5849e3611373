// Added tokens (tokenizer.json "added_tokens"): found in the text before the model sees it, the way
// Hugging Face's AddedVocabulary does: tokens with `normalized: false` in the raw text, those with
// `normalized: true` in the normalized text; leftmost-longest matching; `single_word`, `lstrip`,
// `rstrip` as defined there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "data/hf_tokenizer/bpe.h"
#include "data/hf_tokenizer/normalizer.h"

namespace moe::data::hf {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  // A piece of a sentence: [begin, end) and the added token's id when the piece is one.
  struct Piece {
    size_t begin, end;
    std::optional<uint32_t> id;
  };

  AddedVocabulary() = default;
  // Tokens in file order. Ids follow Hugging Face's add_tokens: an earlier added token with the same
  // content, else the model's id for the content, else the next id after the model's vocabulary (the
  // ids written in the file are advisory there too).
  AddedVocabulary(const std::vector<AddedToken>& tokens, const Bpe& model, const Normalizer& normalizer);

  // Splits `sentence` on the added tokens of one kind (`normalized` false: raw text; true: normalized).
  std::vector<Piece> FindMatches(absl::string_view sentence, bool normalized) const;

  std::optional<uint32_t> TokenToId(absl::string_view content) const;
  // The text of an added token id for decoding (its normalized form where normalization changed it).
  const std::string* IdToToken(uint32_t id) const;
  bool IsSpecialContent(absl::string_view content) const { return special_contents_.contains(content); }
  uint32_t max_id() const { return max_id_; }

 private:
  // A byte trie for leftmost-longest matching of one set of patterns.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int>> children;  // sorted by byte
      std::optional<uint32_t> id;                            // a pattern ends here
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    void Insert(absl::string_view pattern, uint32_t id);
    // The longest pattern starting at `pos`: its end and id.
    std::optional<std::pair<size_t, uint32_t>> LongestAt(absl::string_view s, size_t pos) const;
  };

  absl::flat_hash_map<std::string, uint32_t> content_to_id_;
  absl::flat_hash_map<uint32_t, AddedToken> id_to_token_;
  absl::flat_hash_map<uint32_t, std::string> normalized_content_;  // where it differs from content
  absl::flat_hash_set<std::string> special_contents_;
  Trie raw_trie_, normalized_trie_;
  uint32_t max_id_ = 0;
};

}  // namespace moe::data::hf
