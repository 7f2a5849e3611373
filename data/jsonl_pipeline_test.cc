// The pipeline returns the same chunks, in input order, for every thread count; reading issues (BOM,
// oversized file, JSONL file without lines) are logged where they occur.
#include "data/jsonl_pipeline.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data/byte_tokenizer.h"
#include "gtest/gtest.h"

namespace moe::data {
namespace {

InputFile MakeFile(const std::string& name, const std::string& contents) {
  const std::string path = absl::StrCat(::testing::TempDir(), "pipeline_", ::getpid(), "_", name);  // TEST_TMPDIR
  std::ofstream(path, std::ios::binary) << contents;
  return {path, name, contents.size()};
}

// Everything a run produced, flattened: per chunk its file, first line, documents, tokens and issues.
std::string RunPipeline(const std::vector<InputFile>& files, InputFormat format, int threads, size_t chunk_bytes,
                int64_t max_document_bytes = 0) {
  const ByteTokenizer tokenizer;
  DocumentOptions options;
  options.tokenizer = &tokenizer;
  options.end_of_document_id = ByteTokenizer::kEndOfDocument;
  options.max_document_bytes = max_document_bytes;
  DocumentPipeline pipeline(files, format, options, threads, chunk_bytes);
  std::string trace;
  std::vector<int64_t> bytes(files.size(), 0);
  for (;;) {
    auto chunk = pipeline.Next();
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    if (!chunk.ok() || *chunk == nullptr) break;
    const DocumentChunk& c = **chunk;
    bytes[c.file] += c.input_bytes;
    absl::StrAppend(&trace, "[", files[c.file].name, "@", c.first_line);
    size_t offset = 0;
    for (const EncodedChunk::Document& d : c.out.documents) {
      absl::StrAppend(&trace, " ", d.line, ":");
      for (size_t i = 0; i < d.num_tokens; ++i) trace.push_back(static_cast<char>(c.out.tokens[offset + i]));
      offset += d.num_tokens;
    }
    for (const IssueReport& r : c.out.issues.firsts) {
      absl::StrAppend(&trace, " !", InputIssueName(r.issue), "@", r.line, "x", c.out.issues.count(r.issue));
    }
    trace += "]";
  }
  for (size_t i = 0; i < files.size(); ++i) EXPECT_EQ(bytes[i], static_cast<int64_t>(files[i].size)) << files[i].name;
  return trace;
}

TEST(JsonlPipelineTest, SameChunksForEveryThreadCount) {
  std::string many;
  for (int i = 1; i <= 500; ++i) {
    many += i % 97 == 0 ? "{\"text\": 1}\n" : absl::StrCat("{\"text\": \"doc ", i, "\"}\n");
  }
  const std::vector<InputFile> files = {
      MakeFile("a.jsonl", "\xEF\xBB\xBF{\"text\": \"first\"}\n\n{\"text\": \"third\"}\n"),
      MakeFile("empty.jsonl", ""),
      MakeFile("many.jsonl", many),
  };
  const std::string one = RunPipeline(files, InputFormat::kJsonl, 1, 64);
  EXPECT_EQ(one.rfind("[a.jsonl@1 1:first 3:third !byte order mark@1x1 !blank line@2x1]", 0), 0u) << one;
  EXPECT_NE(one.find("[empty.jsonl@0 !empty document@0x1]"), std::string::npos) << one;
  EXPECT_NE(one.find(" 500:doc 500]"), std::string::npos) << one;
  for (int threads : {2, 3, 8}) EXPECT_EQ(RunPipeline(files, InputFormat::kJsonl, threads, 64), one) << threads;
}

TEST(JsonlPipelineTest, WholeFiles) {
  const std::vector<InputFile> files = {
      MakeFile("bom.txt", "\xEF\xBB\xBFhi"),
      MakeFile("big.txt", "0123456789"),
      MakeFile("ok.txt", "ok"),
      MakeFile("none.txt", ""),
  };
  const std::string expected =
      "[bom.txt@0 0:hi !byte order mark@1x1][big.txt@0 !document too large@0x1][ok.txt@0 0:ok]"
      "[none.txt@0 !empty document@0x1]";
  EXPECT_EQ(RunPipeline(files, InputFormat::kText, 1, 4, /*max_document_bytes=*/9), expected);
  EXPECT_EQ(RunPipeline(files, InputFormat::kText, 4, 4, /*max_document_bytes=*/9), expected);
}

TEST(JsonlPipelineTest, UnreadableFileIsAnError) {
  const ByteTokenizer tokenizer;
  DocumentOptions options;
  options.tokenizer = &tokenizer;
  DocumentPipeline pipeline({{"/nonexistent/x.jsonl", "x.jsonl", 0}}, InputFormat::kJsonl, options, 2, 64);
  auto chunk = pipeline.Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_NE(chunk.status().message().find("/nonexistent/x.jsonl"), std::string::npos) << chunk.status();
}

}  // namespace
}  // namespace moe::data
