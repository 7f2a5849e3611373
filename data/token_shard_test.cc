// Token shards: a written shard reads back exactly, and every kind of damage is refused with an error
// that names the file.
#include "data/token_shard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace moe::data {
namespace {

constexpr uint32_t kVocab = 257;
constexpr uint32_t kEod = 256;

std::string TempPrefix(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name, "_", ::getpid());
}

TokenShardWriter::Options ByteOptions() { return {kVocab, kEod, "byte", "byte"}; }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

// Writes documents {1,2,3}, {}, {255, 0} -> tokens 1 2 3 EOD EOD 255 0 EOD.
void WriteSmallShard(const std::string& prefix) {
  auto writer = TokenShardWriter::Create(prefix, ByteOptions());
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint32_t> a = {1, 2, 3}, b = {}, c = {255, 0};
  ASSERT_TRUE(writer->AddDocument(a).ok());
  ASSERT_TRUE(writer->AddDocument(b).ok());
  ASSERT_TRUE(writer->AddDocument(c).ok());
  EXPECT_EQ(writer->num_tokens(), 8);
  EXPECT_EQ(writer->num_documents(), 3);
  ASSERT_TRUE(writer->Finish().ok());
}

TEST(TokenShardTest, WriteThenReadBack) {
  const std::string prefix = TempPrefix("roundtrip");
  WriteSmallShard(prefix);
  auto shard = TokenShard::Open(prefix);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->num_tokens(), 8);
  EXPECT_EQ(shard->num_documents(), 3);
  EXPECT_EQ(shard->vocab_size(), kVocab);
  EXPECT_EQ(shard->end_of_document_id(), kEod);
  EXPECT_EQ(shard->tokenizer(), "byte");
  const std::vector<uint32_t> expected = {1, 2, 3, kEod, kEod, 255, 0, kEod};
  EXPECT_EQ(std::vector<uint32_t>(shard->tokens(), shard->tokens() + 8), expected);
  EXPECT_EQ(shard->document_start(0), 0);
  EXPECT_EQ(shard->document_start(1), 4);
  EXPECT_EQ(shard->document_start(2), 5);
  EXPECT_EQ(shard->document_end(2), 8);
  // The raw file is plain little-endian uint32: 4 bytes per token, no header.
  EXPECT_EQ(ReadFile(prefix + ".tokens").size(), 32u);
  EXPECT_EQ(ReadFile(prefix + ".tokens").substr(0, 4), std::string("\x01\x00\x00\x00", 4));
  // Moving keeps the mapping valid.
  TokenShard moved = std::move(*shard);
  EXPECT_EQ(moved.tokens()[5], 255u);
  auto header_only = TokenShard::Open(prefix, ShardValidation::kHeader);
  ASSERT_TRUE(header_only.ok()) << header_only.status();
}

// The writer records the tokenizer's name and fingerprint; the reader returns them as written.
TEST(TokenShardTest, TokenizerFingerprintRoundTrips) {
  const std::string prefix = TempPrefix("fingerprint");
  auto writer = TokenShardWriter::Create(
      prefix, {50257, 50256, "tokenizers/gpt2/tokenizer.json", "fnv1a64:56b78b9f547927cf"});
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint32_t> doc = {15496, 995};
  ASSERT_TRUE(writer->AddDocument(doc).ok());
  ASSERT_TRUE(writer->Finish().ok());
  const std::string index = ReadFile(prefix + ".index");
  EXPECT_NE(index.find("tokenizer_fingerprint: \"fnv1a64:56b78b9f547927cf\""), std::string::npos) << index;
  auto shard = TokenShard::Open(prefix);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->tokenizer(), "tokenizers/gpt2/tokenizer.json");
  EXPECT_EQ(shard->tokenizer_fingerprint(), "fnv1a64:56b78b9f547927cf");
  EXPECT_EQ(shard->vocab_size(), 50257);
  EXPECT_EQ(shard->end_of_document_id(), 50256u);
  EXPECT_EQ(std::vector<uint32_t>(shard->tokens(), shard->tokens() + 3), (std::vector<uint32_t>{15496, 995, 50256}));

  // The byte tokenizer's fingerprint is "byte".
  const std::string byte_prefix = TempPrefix("fingerprint_byte");
  WriteSmallShard(byte_prefix);
  auto byte_shard = TokenShard::Open(byte_prefix);
  ASSERT_TRUE(byte_shard.ok()) << byte_shard.status();
  EXPECT_EQ(byte_shard->tokenizer_fingerprint(), "byte");
}

// Shards written before fingerprints existed have no tokenizer_fingerprint field (and perhaps no
// tokenizer name): they were byte-level, so the reader reports "byte".
TEST(TokenShardTest, IndexWithoutFingerprintIsByte) {
  const std::string prefix = TempPrefix("old_index");
  auto writer = TokenShardWriter::Create(prefix, {kVocab, kEod, "", ""});  // nothing recorded
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint32_t> doc = {1, 2};
  ASSERT_TRUE(writer->AddDocument(doc).ok());
  ASSERT_TRUE(writer->Finish().ok());
  const std::string index = ReadFile(prefix + ".index");
  EXPECT_EQ(index.find("tokenizer"), std::string::npos) << index;
  auto shard = TokenShard::Open(prefix);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->tokenizer_fingerprint(), "byte");
  EXPECT_EQ(shard->tokenizer(), "");

  // The same with the field removed from an index written with it (an old file on disk).
  WriteSmallShard(prefix);
  const std::string with = ReadFile(prefix + ".index");
  ASSERT_NE(with.find("tokenizer_fingerprint: \"byte\"\n"), std::string::npos) << with;
  WriteFile(prefix + ".index", absl::StrReplaceAll(with, {{"tokenizer_fingerprint: \"byte\"\n", ""},
                                                           {"tokenizer: \"byte\"\n", ""}}));
  auto old = TokenShard::Open(prefix);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->tokenizer_fingerprint(), "byte");
}

TEST(TokenShardTest, EmptyShardIsValid) {
  const std::string prefix = TempPrefix("empty");
  auto writer = TokenShardWriter::Create(prefix, ByteOptions());
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer->Finish().ok());
  auto shard = TokenShard::Open(prefix);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->num_tokens(), 0);
  EXPECT_EQ(shard->num_documents(), 0);
  EXPECT_EQ(shard->tokens(), nullptr);
}

TEST(TokenShardTest, UnfinishedWriterLeavesNothing) {
  const std::string prefix = TempPrefix("unfinished");
  {
    auto writer = TokenShardWriter::Create(prefix, ByteOptions());
    ASSERT_TRUE(writer.ok());
    const std::vector<uint32_t> doc = {5, 6};
    ASSERT_TRUE(writer->AddDocument(doc).ok());
  }
  EXPECT_FALSE(Exists(prefix + ".tokens"));
  EXPECT_FALSE(Exists(prefix + ".index"));
  EXPECT_FALSE(Exists(absl::StrCat(prefix, ".tokens.tmp-", ::getpid())));
}

TEST(TokenShardTest, WriterRefusesOutOfVocabularyToken) {
  const std::string prefix = TempPrefix("oov_write");
  auto writer = TokenShardWriter::Create(prefix, ByteOptions());
  ASSERT_TRUE(writer.ok());
  const std::vector<uint32_t> doc = {5, 300};
  const absl::Status status = writer->AddDocument(doc);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("300"), std::string::npos) << status;
  EXPECT_EQ(writer->num_tokens(), 0);
  EXPECT_FALSE(TokenShardWriter::Create(prefix, {kVocab, kVocab, "", ""}).ok());  // EOD outside the vocabulary
}

TEST(TokenShardTest, RewriteReplacesOldShard) {
  const std::string prefix = TempPrefix("rewrite");
  WriteSmallShard(prefix);
  auto writer = TokenShardWriter::Create(prefix, ByteOptions());
  ASSERT_TRUE(writer.ok());
  const std::vector<uint32_t> doc = {9};
  ASSERT_TRUE(writer->AddDocument(doc).ok());
  ASSERT_TRUE(writer->Finish().ok());
  auto shard = TokenShard::Open(prefix);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->num_tokens(), 2);
}

TEST(TokenShardTest, TruncatedTokensFileIsRefusedNamingFileAndSizes) {
  const std::string prefix = TempPrefix("truncated");
  WriteSmallShard(prefix);
  ASSERT_EQ(::truncate((prefix + ".tokens").c_str(), 30), 0);
  auto shard = TokenShard::Open(prefix);
  ASSERT_FALSE(shard.ok());
  const std::string message(shard.status().message());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(message.find(prefix + ".tokens"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_NE(message.find("expected 32 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("found 30 bytes"), std::string::npos) << message;
}

TEST(TokenShardTest, MissingFilesAreRefused) {
  const std::string prefix = TempPrefix("missing");
  auto no_index = TokenShard::Open(prefix);
  EXPECT_EQ(no_index.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_index.status().message().find(prefix + ".index"), std::string::npos);
  WriteSmallShard(prefix);
  ASSERT_EQ(std::remove((prefix + ".tokens").c_str()), 0);
  auto no_tokens = TokenShard::Open(prefix);
  EXPECT_EQ(no_tokens.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_tokens.status().message().find(prefix + ".tokens"), std::string::npos);
}

TEST(TokenShardTest, CorruptMagicIsRefused) {
  const std::string prefix = TempPrefix("magic");
  WriteSmallShard(prefix);
  const std::string index = ReadFile(prefix + ".index");
  ASSERT_NE(index.find(kTokenShardMagic), std::string::npos);
  WriteFile(prefix + ".index", absl::StrReplaceAll(index, {{kTokenShardMagic, "moe.data.Garbage"}}));
  auto shard = TokenShard::Open(prefix);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(shard.status().message().find("magic"), std::string::npos) << shard.status();
  EXPECT_NE(shard.status().message().find(prefix + ".index"), std::string::npos) << shard.status();

  // A binary file where the index should be: a parse error, still naming the file.
  WriteFile(prefix + ".index", std::string("\x89PNG\r\n\x1a\n\0\0", 10));
  auto garbage = TokenShard::Open(prefix);
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("is not a token shard index"), std::string::npos) << garbage.status();
  EXPECT_NE(garbage.status().message().find(prefix + ".index"), std::string::npos) << garbage.status();
}

TEST(TokenShardTest, WrongVersionIsRefused) {
  const std::string prefix = TempPrefix("version");
  WriteSmallShard(prefix);
  const std::string index = ReadFile(prefix + ".index");
  WriteFile(prefix + ".index", absl::StrReplaceAll(index, {{"version: 1\n", "version: 7\n"}}));
  auto shard = TokenShard::Open(prefix);
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find("version 7"), std::string::npos) << shard.status();
}

TEST(TokenShardTest, NonMonotonicOffsetsAreRefused) {
  const std::string prefix = TempPrefix("offsets");
  WriteSmallShard(prefix);
  const std::string index = ReadFile(prefix + ".index");
  ASSERT_NE(index.find("document_start: 5\n"), std::string::npos) << index;
  WriteFile(prefix + ".index", absl::StrReplaceAll(index, {{"document_start: 5\n", "document_start: 2\n"}}));
  auto shard = TokenShard::Open(prefix);
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find("document_start[2]"), std::string::npos) << shard.status();
}

TEST(TokenShardTest, OutOfVocabularyTokenInFileIsRefused) {
  const std::string prefix = TempPrefix("oov_read");
  WriteSmallShard(prefix);
  std::string tokens = ReadFile(prefix + ".tokens");
  // Token 1 (bytes 4..7, 02 00 00 00) becomes 00 00 01 00 = 65536.
  tokens[4] = '\x00';
  tokens[6] = '\x01';
  WriteFile(prefix + ".tokens", tokens);
  auto shard = TokenShard::Open(prefix);
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find("token 1 has id 65536"), std::string::npos) << shard.status();
  EXPECT_NE(shard.status().message().find(prefix + ".tokens"), std::string::npos) << shard.status();
  // The header-only check does not scan every token.
  EXPECT_TRUE(TokenShard::Open(prefix, ShardValidation::kHeader).ok());
}

TEST(TokenShardTest, MissingEndOfDocumentIsRefused) {
  const std::string prefix = TempPrefix("no_eod");
  WriteSmallShard(prefix);
  std::string tokens = ReadFile(prefix + ".tokens");
  // Token 3, document 0's EOD (256: bytes 00 01 00 00), becomes 7 (07 00 00 00).
  tokens[12] = '\x07';
  tokens[13] = '\x00';
  WriteFile(prefix + ".tokens", tokens);
  auto shard = TokenShard::Open(prefix, ShardValidation::kHeader);
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find("document 0 does not end"), std::string::npos) << shard.status();
}

}  // namespace
}  // namespace moe::data
