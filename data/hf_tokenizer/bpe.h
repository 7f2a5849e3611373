// The BPE model of tokenizer.json: vocabulary, ranked merges, and the merge loop of Hugging Face's
// `tokenizers` (a heap of candidate merges ordered by rank, then position; stale entries skipped), so
// ties and overlapping pairs resolve exactly as there. Words are cached (a cache only: results never
// depend on it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::data::hf {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;  // "" = none (null in tokenizer.json)
  std::string end_of_word_suffix;         // "" = none
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token, merges or not
};

class Bpe {
 public:
  // `vocab` and `merges` in file order; later duplicates win, as in the Rust HashMap construction.
  static absl::StatusOr<std::unique_ptr<Bpe>> Create(std::vector<std::pair<std::string, uint32_t>> vocab,
                                                     const std::vector<std::pair<std::string, std::string>>& merges,
                                                     BpeOptions options);

  ~Bpe();

  // Appends the ids of one pre-tokenized piece.
  void Tokenize(absl::string_view word, std::vector<uint32_t>* out) const;

  std::optional<uint32_t> TokenToId(absl::string_view token) const;
  const std::string* IdToToken(uint32_t id) const;  // nullptr for unknown ids
  size_t vocab_entries() const { return vocab_.size(); }
  uint32_t max_id() const { return max_id_; }

 private:
  struct Merge {
    uint32_t rank;
    uint32_t new_id;
  };
  struct Cache;

  Bpe();
  void MergeWord(absl::string_view word, std::vector<uint32_t>* out) const;
  static uint64_t PairKey(uint32_t a, uint32_t b) { return uint64_t{a} << 32 | b; }

  absl::flat_hash_map<std::string, uint32_t> vocab_;
  absl::flat_hash_map<uint32_t, std::string> vocab_r_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  BpeOptions options_;
  uint32_t max_id_ = 0;
  std::unique_ptr<Cache> cache_;
};

}  // namespace moe::data::hf
