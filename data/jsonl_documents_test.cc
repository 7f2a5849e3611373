// prepare_data's document layer: every bad-input case is counted with the right line and policy, good
// documents are encoded exactly, and the JSONL chunk reader cuts at line boundaries with correct numbers.
#include "data/jsonl_documents.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data/byte_tokenizer.h"
#include "gtest/gtest.h"

namespace moe::data {
namespace {

std::vector<uint32_t> Bytes(absl::string_view s) { return ByteTokenizer().Encode(s); }

// The tokens of document i of a chunk.
std::vector<uint32_t> DocTokens(const EncodedChunk& chunk, size_t i) {
  size_t start = 0;
  for (size_t k = 0; k < i; ++k) start += chunk.documents[k].num_tokens;
  return std::vector<uint32_t>(chunk.tokens.begin() + start,
                               chunk.tokens.begin() + start + chunk.documents[i].num_tokens);
}

TEST(JsonlDocumentsTest, EveryCaseCountedWithItsLine) {
  const ByteTokenizer tokenizer;
  DocumentOptions options;
  options.tokenizer = &tokenizer;
  options.end_of_document_id = ByteTokenizer::kEndOfDocument;
  options.max_document_bytes = 10;
  DocumentEncoder encoder(options);
  const std::string lines =
      "{\"text\": \"hello\"}\n"            // 10: kept
      "\n"                                 // 11: blank
      "  \t\r\n"                           // 12: blank
      "{\"text\": \"unterminated}\n"       // 13: malformed
      "[1, 2]\n"                           // 14: not an object -> malformed
      "{\"title\": \"x\"}\n"               // 15: missing key
      "{\"text\": 42}\n"                   // 16: non-string
      "{\"text\": null}\n"                 // 17: non-string
      "{\"text\": \"a\xFF" "b\"}\n"        // 18: invalid UTF-8, repaired, kept
      "{\"text\": \"x\\ud800y\"}\n"        // 19: lone surrogate escape, repaired, kept
      "{\"text\": \"\"}\n"                 // 20: empty
      "{\"text\": \"0123456789A\"}\n"      // 21: 11 bytes > 10: too large
      "{\"text\": \"\\u00e9\\n\", \"n\": 1}\r\n"  // 22: kept (CRLF, escapes decoded)
      "{\"text\": \"last\"}";             // 23: kept, no final newline
  EncodedChunk chunk;
  encoder.EncodeJsonl(lines, 10, &chunk);

  ASSERT_EQ(chunk.documents.size(), 5u);
  EXPECT_EQ(chunk.documents[0].line, 10);
  EXPECT_EQ(DocTokens(chunk, 0), Bytes("hello"));
  EXPECT_EQ(chunk.documents[1].line, 18);
  EXPECT_EQ(DocTokens(chunk, 1), Bytes("a\xEF\xBF\xBD" "b"));
  EXPECT_EQ(chunk.documents[2].line, 19);
  EXPECT_EQ(DocTokens(chunk, 2), Bytes("x\xEF\xBF\xBDy"));
  EXPECT_EQ(chunk.documents[3].line, 22);
  EXPECT_EQ(DocTokens(chunk, 3), Bytes("\xC3\xA9\n"));
  EXPECT_EQ(chunk.documents[4].line, 23);
  EXPECT_EQ(DocTokens(chunk, 4), Bytes("last"));
  EXPECT_EQ(chunk.text_bytes, 5 + 5 + 5 + 3 + 4);

  const IssueLog& log = chunk.issues;
  EXPECT_EQ(log.count(InputIssue::kBlankLine), 2);
  EXPECT_EQ(log.count(InputIssue::kMalformedJson), 2);
  EXPECT_EQ(log.count(InputIssue::kMissingKey), 1);
  EXPECT_EQ(log.count(InputIssue::kNonString), 2);
  EXPECT_EQ(log.count(InputIssue::kInvalidUtf8), 2);
  EXPECT_EQ(log.count(InputIssue::kEmptyDocument), 1);
  EXPECT_EQ(log.count(InputIssue::kHugeDocument), 1);
  EXPECT_EQ(log.count(InputIssue::kByteOrderMark), 0);
  // The first of each kind, in input order.
  ASSERT_EQ(log.firsts.size(), 7u);
  const std::vector<std::pair<InputIssue, int64_t>> expected = {
      {InputIssue::kBlankLine, 11},   {InputIssue::kMalformedJson, 13}, {InputIssue::kMissingKey, 15},
      {InputIssue::kNonString, 16},   {InputIssue::kInvalidUtf8, 18},   {InputIssue::kEmptyDocument, 20},
      {InputIssue::kHugeDocument, 21}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(log.firsts[i].issue, expected[i].first) << i;
    EXPECT_EQ(log.firsts[i].line, expected[i].second) << i;
    EXPECT_FALSE(log.firsts[i].detail.empty()) << i;
  }
  EXPECT_EQ(log.firsts[3].detail, "the value of \"text\" is a number, not a string");
  EXPECT_EQ(log.firsts[2].detail, "the object has no \"text\" member");
  EXPECT_NE(log.firsts[4].detail.find("1 invalid UTF-8 sequence"), std::string::npos) << log.firsts[4].detail;
  EXPECT_NE(log.firsts[6].detail.find("11 bytes"), std::string::npos) << log.firsts[6].detail;
}

TEST(JsonlDocumentsTest, KeyAndBos) {
  const ByteTokenizer tokenizer;
  DocumentOptions options;
  options.tokenizer = &tokenizer;
  options.end_of_document_id = ByteTokenizer::kEndOfDocument;
  options.jsonl_key = "content";
  options.bos_id = 7;
  DocumentEncoder encoder(options);
  EncodedChunk chunk;
  encoder.EncodeJsonl("{\"text\": \"no\", \"content\": \"ab\"}\n{\"text\": \"x\"}\n", 1, &chunk);
  ASSERT_EQ(chunk.documents.size(), 1u);
  EXPECT_EQ(DocTokens(chunk, 0), (std::vector<uint32_t>{7, 'a', 'b'}));
  EXPECT_EQ(chunk.issues.count(InputIssue::kMissingKey), 1);
  EXPECT_EQ(chunk.issues.firsts[0].line, 2);
  EXPECT_EQ(chunk.issues.firsts[0].detail, "the object has no \"content\" member");
}

TEST(JsonlDocumentsTest, WholeFiles) {
  const ByteTokenizer tokenizer;
  DocumentOptions options;
  options.tokenizer = &tokenizer;
  options.end_of_document_id = ByteTokenizer::kEndOfDocument;
  DocumentEncoder encoder(options);
  EncodedChunk chunk;
  encoder.EncodeFile("line one\nline two \xC0\xAF\nthree\n", &chunk);
  encoder.EncodeFile("", &chunk);
  ASSERT_EQ(chunk.documents.size(), 1u);
  EXPECT_EQ(chunk.documents[0].line, 0);
  EXPECT_EQ(DocTokens(chunk, 0), Bytes("line one\nline two \xEF\xBF\xBD\xEF\xBF\xBD\nthree\n"));
  ASSERT_EQ(chunk.issues.firsts.size(), 2u);
  EXPECT_EQ(chunk.issues.firsts[0].issue, InputIssue::kInvalidUtf8);
  EXPECT_EQ(chunk.issues.firsts[0].line, 2);  // the line of the first bad byte
  EXPECT_NE(chunk.issues.firsts[0].detail.find("2 invalid UTF-8 sequence(s)"), std::string::npos);
  EXPECT_EQ(chunk.issues.firsts[1].issue, InputIssue::kEmptyDocument);

  // Brown: tags stripped after the repair; a sample with no tokens is empty.
  options.brown = true;
  DocumentEncoder brown(options);
  EncodedChunk b;
  brown.EncodeFile("\n\n\tIt/pps rained/vbd ./.\n", &b);
  brown.EncodeFile("\n\n", &b);
  ASSERT_EQ(b.documents.size(), 1u);
  EXPECT_EQ(DocTokens(b, 0), Bytes("It rained.\n"));
  EXPECT_EQ(b.issues.count(InputIssue::kEmptyDocument), 1);
}

// Shards hold the EOD only at document ends: a text that encodes to it is split there (here the EOD is
// '|', as with --eod_token='|'); empty pieces vanish, a text of nothing but EODs is an empty document.
TEST(JsonlDocumentsTest, EndOfDocumentTokenSplitsTheDocument) {
  const ByteTokenizer tokenizer;
  DocumentOptions options;
  options.tokenizer = &tokenizer;
  options.end_of_document_id = '|';
  options.bos_id = 2;
  DocumentEncoder encoder(options);
  EncodedChunk chunk;
  encoder.EncodeJsonl("{\"text\": \"ab|c||d|\"}\n{\"text\": \"||\"}\n{\"text\": \"plain\"}\n", 1, &chunk);
  ASSERT_EQ(chunk.documents.size(), 4u);
  EXPECT_EQ(DocTokens(chunk, 0), (std::vector<uint32_t>{2, 'a', 'b'}));
  EXPECT_EQ(DocTokens(chunk, 1), (std::vector<uint32_t>{2, 'c'}));
  EXPECT_EQ(DocTokens(chunk, 2), (std::vector<uint32_t>{2, 'd'}));
  EXPECT_EQ(DocTokens(chunk, 3), (std::vector<uint32_t>{2, 'p', 'l', 'a', 'i', 'n'}));
  EXPECT_EQ(chunk.documents[2].line, 1);
  EXPECT_EQ(chunk.documents[3].line, 3);
  EXPECT_EQ(chunk.issues.count(InputIssue::kEndOfDocumentToken), 2);
  EXPECT_EQ(chunk.issues.count(InputIssue::kEmptyDocument), 1);
  ASSERT_EQ(chunk.issues.firsts.size(), 2u);
  EXPECT_EQ(chunk.issues.firsts[0].line, 1);
  EXPECT_NE(chunk.issues.firsts[0].detail.find("id 124 4 time(s)"), std::string::npos) << chunk.issues.firsts[0].detail;
  EXPECT_EQ(chunk.issues.firsts[1].line, 2);
  EXPECT_FALSE(InputIssueSkips(InputIssue::kEndOfDocumentToken));
}

TEST(JsonlDocumentsTest, LoneSurrogateEscapes) {
  std::string s = R"({"a": "\ud800 \udc00 \ud83d\ude00 \\ud800 \uD83D", "b": "\u0041"})";
  EXPECT_EQ(RepairLoneSurrogateEscapes(&s), 3);
  EXPECT_EQ(s, R"({"a": "\uFFFD \uFFFD \ud83d\ude00 \\ud800 \uFFFD", "b": "\u0041"})");
  std::string high_then_high = R"("\ud800\ud800\udc00")";
  EXPECT_EQ(RepairLoneSurrogateEscapes(&high_then_high), 1);
  EXPECT_EQ(high_then_high, R"("\uFFFD\ud800\udc00")");
}

std::string TempFile(const std::string& name, const std::string& contents) {
  const std::string path = absl::StrCat(::testing::TempDir(), name, "_", ::getpid());  // TEST_TMPDIR
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

struct Chunks {
  std::vector<std::string> lines;
  std::vector<int64_t> first_lines;
  bool bom = false;
};

Chunks ReadAll(const std::string& path, size_t chunk_bytes) {
  Chunks result;
  auto reader = JsonlChunkReader::Open(path, chunk_bytes);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return result;
  for (;;) {
    std::string lines;
    int64_t first = 0;
    auto more = (*reader)->Next(&lines, &first);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    result.lines.push_back(lines);
    result.first_lines.push_back(first);
  }
  result.bom = (*reader)->bom_stripped();
  return result;
}

TEST(JsonlDocumentsTest, ChunkReaderCutsAtLines) {
  const std::string body = "a\nbb\n\nccccccccccccccccccccc\nd\ne";
  const std::string path = TempFile("chunks", std::string(kUtf8ByteOrderMark) + body);
  for (size_t chunk_bytes : {1, 2, 3, 5, 8, 64}) {
    const Chunks chunks = ReadAll(path, chunk_bytes);
    EXPECT_TRUE(chunks.bom);
    std::string joined;
    int64_t line = 1;
    for (size_t i = 0; i < chunks.lines.size(); ++i) {
      joined += chunks.lines[i];
      EXPECT_EQ(chunks.first_lines[i], line) << chunk_bytes;
      line += std::count(chunks.lines[i].begin(), chunks.lines[i].end(), '\n');
      // Whole lines only: every chunk but the last ends with '\n'.
      if (i + 1 < chunks.lines.size()) {
        EXPECT_EQ(chunks.lines[i].back(), '\n') << chunk_bytes;
      }
    }
    EXPECT_EQ(joined, body) << chunk_bytes;
  }
  const Chunks big = ReadAll(path, 64);  // everything fits, but a chunk still ends at a line end
  ASSERT_EQ(big.lines.size(), 2u);
  EXPECT_EQ(big.lines[1], "e");
  EXPECT_EQ(big.first_lines[1], 6);

  const Chunks no_bom = ReadAll(TempFile("no_bom", "\xEF\xBB{}\n"), 2);
  EXPECT_FALSE(no_bom.bom);
  ASSERT_EQ(no_bom.lines.size(), 1u);
  EXPECT_EQ(no_bom.lines[0], "\xEF\xBB{}\n");

  EXPECT_TRUE(ReadAll(TempFile("empty", ""), 4).lines.empty());
  const Chunks only_bom = ReadAll(TempFile("only_bom", std::string(kUtf8ByteOrderMark)), 4);
  EXPECT_TRUE(only_bom.bom);
  EXPECT_TRUE(only_bom.lines.empty());
  EXPECT_FALSE(JsonlChunkReader::Open(TempFile("x", "") + ".missing", 4).ok());
}

}  // namespace
}  // namespace moe::data
