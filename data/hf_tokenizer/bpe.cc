// See bpe.h.
#include "data/hf_tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "data/hf_tokenizer/unicode.h"

namespace moe::data::hf {

// Sharded so that threads encoding different documents rarely wait on each other. Bounded: once a shard
// is full new words are no longer added (Hugging Face's cache stops growing the same way).
struct Bpe::Cache {
  static constexpr int kShards = 64;
  static constexpr size_t kWordsPerShard = 8192;
  static constexpr size_t kMaxWordBytes = 256;
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<uint32_t>> words ABSL_GUARDED_BY(mu);
  };
  Shard shards[kShards];
  Shard& For(absl::string_view word) { return shards[absl::HashOf(word) % kShards]; }
};

Bpe::Bpe() : cache_(std::make_unique<Cache>()) {}
Bpe::~Bpe() = default;

absl::StatusOr<std::unique_ptr<Bpe>> Bpe::Create(std::vector<std::pair<std::string, uint32_t>> vocab,
                                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                                 BpeOptions options) {
  std::unique_ptr<Bpe> bpe(new Bpe());
  for (auto& [token, id] : vocab) bpe->vocab_[token] = id;
  for (const auto& [token, id] : bpe->vocab_) {
    bpe->vocab_r_[id] = token;
    bpe->max_id_ = std::max(bpe->max_id_, id);
  }
  const size_t prefix_length = options.continuing_subword_prefix.size();
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto lookup = [&](const std::string& token) -> absl::StatusOr<uint32_t> {
      const auto it = bpe->vocab_.find(token);
      if (it == bpe->vocab_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.merges[", rank, "] ('", a, "', '", b, "'): token '", token, "' is not in model.vocab"));
      }
      return it->second;
    };
    auto a_id = lookup(a);
    if (!a_id.ok()) return a_id.status();
    auto b_id = lookup(b);
    if (!b_id.ok()) return b_id.status();
    if (b.size() < prefix_length) {
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", rank, "]: '", b,
                                                     "' is shorter than continuing_subword_prefix"));
    }
    auto new_id = lookup(absl::StrCat(a, absl::string_view(b).substr(prefix_length)));
    if (!new_id.ok()) return new_id.status();
    bpe->merges_[PairKey(*a_id, *b_id)] = Merge{static_cast<uint32_t>(rank), *new_id};
  }
  if (options.unk_token && !bpe->vocab_.contains(*options.unk_token)) {
    return absl::InvalidArgumentError(absl::StrCat("model.unk_token '", *options.unk_token, "' is not in model.vocab"));
  }
  bpe->options_ = std::move(options);
  return bpe;
}

std::optional<uint32_t> Bpe::TokenToId(absl::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::IdToToken(uint32_t id) const {
  const auto it = vocab_r_.find(id);
  return it == vocab_r_.end() ? nullptr : &it->second;
}

void Bpe::Tokenize(absl::string_view word, std::vector<uint32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const auto id = TokenToId(word)) {
      out->push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < Cache::kMaxWordBytes;
  Cache::Shard& shard = cache_->For(word);
  if (cacheable) {
    absl::MutexLock lock(&shard.mu);
    const auto it = shard.words.find(word);
    if (it != shard.words.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<uint32_t> ids;
  MergeWord(word, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    absl::MutexLock lock(&shard.mu);
    if (shard.words.size() < Cache::kWordsPerShard) shard.words.emplace(word, std::move(ids));
  }
}

void Bpe::MergeWord(absl::string_view word, std::vector<uint32_t>* out) const {
  // The initial symbols: one per character (with prefix/suffix where configured); characters outside
  // the vocabulary become unk_token (fused when fuse_unk), or are dropped when there is none.
  struct Symbol {
    uint32_t id;
    int prev, next;
    bool removed;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  std::optional<uint32_t> pending_unk;
  const auto push = [&](uint32_t id) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, false});
  };
  std::string scratch;
  for (size_t i = 0; i < word.size();) {
    const int length = Utf8Length(static_cast<unsigned char>(word[i]));
    absl::string_view c = word.substr(i, length);
    const bool first = i == 0, last = i + length >= word.size();
    i += length;
    if ((!first && !options_.continuing_subword_prefix.empty()) || (last && !options_.end_of_word_suffix.empty())) {
      scratch.assign(first ? "" : options_.continuing_subword_prefix);
      scratch.append(c.data(), c.size());
      if (last) scratch += options_.end_of_word_suffix;
      c = scratch;
    }
    const auto it = vocab_.find(c);
    if (it != vocab_.end()) {
      if (pending_unk) push(*std::exchange(pending_unk, std::nullopt));
      push(it->second);
    } else if (options_.unk_token) {
      const uint32_t unk = vocab_.find(*options_.unk_token)->second;
      if (pending_unk && !options_.fuse_unk) push(*pending_unk);
      pending_unk = unk;
    }
  }
  if (pending_unk) push(*pending_unk);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    uint32_t rank;
    int pos;
    uint32_t new_id;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate> queue;
  const auto consider = [&](int pos) {
    const int next = symbols[pos].next;
    if (next < 0) return;
    const auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int pos = 0; pos + 1 < static_cast<int>(symbols.size()); ++pos) consider(pos);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    const int right_pos = left.next;
    const auto it = merges_.find(PairKey(left.id, symbols[right_pos].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // a stale entry
    left.id = top.new_id;
    left.next = symbols[right_pos].next;
    symbols[right_pos].removed = true;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int pos = 0; pos >= 0; pos = symbols[pos].next) out->push_back(symbols[pos].id);
}

}  // namespace moe::data::hf
