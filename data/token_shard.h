// Token shards: the on-disk form of a tokenized corpus split (train or validation), read by memory map.
//
// A shard is two files with a common prefix:
//   <prefix>.tokens  raw little-endian uint32 token ids, [num_tokens]: every document's tokens followed
//                    by the end-of-document id, documents back to back. No header, so the file can be
//                    mapped and indexed directly (and read with numpy.fromfile(..., "<u4")).
//   <prefix>.index   a protobuf text file, message moe.data.TokenShardIndex (data/shard.proto): magic,
//                    version, token count, vocabulary size, end-of-document id and the per-document start
//                    offsets. It is renamed into place last, so it is the shard's "complete" mark.
//
// The writer streams documents to temporary files and renames them into place in Finish(), after fsync,
// so a crash never leaves a half-written shard under the final name. The reader refuses anything that
// does not add up (missing files, wrong magic/version, a .tokens file whose size is not 4 * num_tokens,
// bad offsets, out-of-vocabulary ids) with an error naming the file. Because a rewrite renames new files
// into place, a reader's existing mapping keeps the old contents; never truncate a mapped shard in place.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moe::data {

inline constexpr char kTokenShardMagic[] = "moe.data.TokenShard";
inline constexpr uint32_t kTokenShardVersion = 1;

class TokenShardWriter {
 public:
  struct Options {
    uint32_t vocab_size = 0;          // required: every id written must be < vocab_size
    uint32_t end_of_document_id = 0;  // appended after every document; must be < vocab_size
    std::string tokenizer;            // recorded in the index, informational
    std::string tokenizer_fingerprint;  // data::Tokenizer::fingerprint(); recorded in the index
  };

  // Opens `<prefix>.tokens` under a temporary name. The directory must exist.
  static absl::StatusOr<TokenShardWriter> Create(const std::string& prefix, const Options& options);

  TokenShardWriter(TokenShardWriter&& other) noexcept;
  TokenShardWriter& operator=(TokenShardWriter&& other) noexcept;
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;
  // Without a successful Finish(), removes the temporary files: nothing appears under the final names.
  ~TokenShardWriter();

  // Appends one document and its end-of-document id. An id >= vocab_size is refused (InvalidArgument)
  // and nothing of that document is written. An empty document is stored as a lone end-of-document.
  absl::Status AddDocument(absl::Span<const uint32_t> tokens);

  // Flushes and fsyncs both files, then renames them to `<prefix>.tokens` and `<prefix>.index`
  // (replacing an older shard), the index last. The writer is unusable afterwards.
  absl::Status Finish();

  int64_t num_tokens() const { return num_tokens_; }
  int64_t num_documents() const { return static_cast<int64_t>(document_starts_.size()); }

 private:
  TokenShardWriter() = default;
  void Abandon();
  absl::Status WriteTokens(const uint32_t* tokens, size_t count);

  std::string prefix_;
  Options options_;
  std::string tmp_tokens_path_;
  std::FILE* tokens_file_ = nullptr;
  int64_t num_tokens_ = 0;
  std::vector<uint64_t> document_starts_;
  absl::Status error_;  // the first write error; Finish() reports it
};

// How much of the token data Open() reads to validate it.
enum class ShardValidation {
  kHeader,  // index, file sizes, offsets and each document's final EOD token: touches one page per doc
  kFull,    // additionally scans every token (ids < vocab_size, EOD exactly at document ends)
};

class TokenShard {
 public:
  // Maps `<prefix>.tokens` read-only and validates it against `<prefix>.index`.
  static absl::StatusOr<TokenShard> Open(const std::string& prefix,
                                         ShardValidation validation = ShardValidation::kFull);

  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  ~TokenShard();

  const std::string& prefix() const { return prefix_; }
  int64_t num_tokens() const { return num_tokens_; }
  const uint32_t* tokens() const { return tokens_; }  // [num_tokens]; nullptr when num_tokens == 0
  int64_t num_documents() const { return static_cast<int64_t>(document_starts_.size()); }
  // First token of document i, 0 <= i < num_documents().
  int64_t document_start(int64_t i) const { return static_cast<int64_t>(document_starts_[i]); }
  // One past the last token (its end-of-document id) of document i.
  int64_t document_end(int64_t i) const {
    return i + 1 < num_documents() ? document_start(i + 1) : num_tokens_;
  }
  int64_t vocab_size() const { return vocab_size_; }
  uint32_t end_of_document_id() const { return end_of_document_id_; }
  const std::string& tokenizer() const { return tokenizer_; }
  // The writer's data::Tokenizer::fingerprint(); "byte" for shards written before fingerprints existed.
  const std::string& tokenizer_fingerprint() const { return tokenizer_fingerprint_; }

 private:
  TokenShard() = default;
  void Unmap();

  std::string prefix_;
  int64_t num_tokens_ = 0;
  const uint32_t* tokens_ = nullptr;
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  std::vector<uint64_t> document_starts_;
  int64_t vocab_size_ = 0;
  uint32_t end_of_document_id_ = 0;
  std::string tokenizer_;
  std::string tokenizer_fingerprint_;
};

}  // namespace moe::data
