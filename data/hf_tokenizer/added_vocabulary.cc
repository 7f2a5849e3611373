// See added_vocabulary.h.
#include "data/hf_tokenizer/added_vocabulary.h"

#include <algorithm>

#include "data/hf_tokenizer/unicode.h"

namespace moe::data::hf {
namespace {

// The last character before `end` / the first at `begin`, for single_word (the Rust regex \w).
bool EndsWithWord(absl::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  int length = 0;
  return IsWordCharacter(DecodeUtf8At(s, i, &length));
}

bool StartsWithWord(absl::string_view s) {
  if (s.empty()) return false;
  int length = 0;
  return IsWordCharacter(DecodeUtf8At(s, 0, &length));
}

// Start of the whitespace run that ends `s` (s.size() when none).
size_t TrailingSpaceStart(absl::string_view s) {
  size_t start = s.size();
  while (start > 0) {
    size_t i = start - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    int length = 0;
    if (!IsWhitespace(DecodeUtf8At(s, i, &length))) break;
    start = i;
  }
  return start;
}

// Length of the whitespace run that starts `s`.
size_t LeadingSpaceLength(absl::string_view s) {
  size_t end = 0;
  while (end < s.size()) {
    int length = 0;
    if (!IsWhitespace(DecodeUtf8At(s, end, &length))) break;
    end += length;
  }
  return end;
}

}  // namespace

void AddedVocabulary::Trie::Insert(absl::string_view pattern, uint32_t id) {
  int node = 0;
  for (const char ch : pattern) {
    const unsigned char b = static_cast<unsigned char>(ch);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(b, 0),
                               [](const auto& x, const auto& y) { return x.first < y.first; });
    if (it != children.end() && it->first == b) {
      node = it->second;
    } else {
      const int child = static_cast<int>(nodes.size());
      children.insert(it, {b, child});
      nodes.emplace_back();
      node = child;
    }
  }
  // Patterns are unique per trie (keyed by content); a re-added token replaces the id.
  nodes[node].id = id;
  if (!pattern.empty()) first_byte[static_cast<unsigned char>(pattern[0])] = true;
}

std::optional<std::pair<size_t, uint32_t>> AddedVocabulary::Trie::LongestAt(absl::string_view s,
                                                                             size_t pos) const {
  std::optional<std::pair<size_t, uint32_t>> best;
  int node = 0;
  for (size_t i = pos; i < s.size(); ++i) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    const auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(b, 0),
                               [](const auto& x, const auto& y) { return x.first < y.first; });
    if (it == children.end() || it->first != b) break;
    node = it->second;
    if (nodes[node].id) best = std::make_pair(i + 1, *nodes[node].id);
  }
  return best;
}

AddedVocabulary::AddedVocabulary(const std::vector<AddedToken>& tokens, const Bpe& model,
                                 const Normalizer& normalizer) {
  uint32_t next_id = static_cast<uint32_t>(model.vocab_entries());
  for (const AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    uint32_t id;
    if (const auto it = content_to_id_.find(token.content); it != content_to_id_.end()) {
      id = it->second;
    } else if (const auto model_id = model.TokenToId(token.content)) {
      id = *model_id;
    } else {
      id = next_id++;
    }
    if (token.normalized && !normalizer.is_identity()) {
      std::string normed = normalizer.Apply(token.content);
      if (normed != token.content) normalized_content_[id] = std::move(normed);
    }
    content_to_id_[token.content] = id;
    if (token.special) special_contents_.insert(token.content);
    id_to_token_[id] = token;
    max_id_ = std::max(max_id_, id);
  }
  // The two tries hold each id's current token, as Hugging Face rebuilds them from its id -> token map.
  for (const auto& [id, token] : id_to_token_) {
    if (token.normalized) {
      const auto it = normalized_content_.find(id);
      normalized_trie_.Insert(it != normalized_content_.end() ? it->second : token.content, id);
    } else {
      raw_trie_.Insert(token.content, id);
    }
  }
}

std::vector<AddedVocabulary::Piece> AddedVocabulary::FindMatches(absl::string_view sentence, bool normalized) const {
  const Trie& trie = normalized ? normalized_trie_ : raw_trie_;
  std::vector<Piece> pieces;
  if (sentence.empty()) return pieces;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < sentence.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(sentence[pos])]) {
      ++pos;
      continue;
    }
    const auto match = trie.LongestAt(sentence, pos);
    if (!match) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = match->first;
    const uint32_t id = match->second;
    pos = stop;  // matches never overlap, whether or not this one is kept
    const AddedToken& token = id_to_token_.at(id);
    if (token.single_word) {
      const bool start_space = start == 0 || !EndsWithWord(sentence.substr(0, start));
      const bool stop_space = stop == sentence.size() || !StartsWithWord(sentence.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(TrailingSpaceStart(sentence.substr(0, start)), start_offset);
    if (token.rstrip) stop += LeadingSpaceLength(sentence.substr(stop));
    if (start_offset < start) pieces.push_back({start_offset, start, std::nullopt});
    pieces.push_back({start, stop, id});
    start_offset = stop;
  }
  if (start_offset != sentence.size()) pieces.push_back({start_offset, sentence.size(), std::nullopt});
  return pieces;
}

std::optional<uint32_t> AddedVocabulary::TokenToId(absl::string_view content) const {
  const auto it = content_to_id_.find(content);
  if (it == content_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::IdToToken(uint32_t id) const {
  if (const auto it = normalized_content_.find(id); it != normalized_content_.end()) return &it->second;
  const auto it = id_to_token_.find(id);
  return it == id_to_token_.end() ? nullptr : &it->second.content;
}

}  // namespace moe::data::hf
