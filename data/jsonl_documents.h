// Documents for tools/prepare_data: JSON Lines files read in chunks of whole lines, and whole text files
// (plain or Brown-tagged), cleaned and encoded with a data::Tokenizer. Every kind of bad input has one
// policy (InputIssue below) and is counted, with the first occurrence's line kept for the report;
// nothing is dropped silently. The caller (prepare_data) decides the train/validation split, writes the
// shards in input order and prints the reports.
//
// One DocumentEncoder per thread (it owns a JSON parser); the tokenizer is shared (Encode is const and
// thread-safe). The result of encoding a chunk depends only on the chunk, so chunks may be encoded in
// any order on any number of threads.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/tokenizer.h"

namespace moe::data {

// Bad input, one policy each. "Skipped" documents are not written; "repaired" ones are.
enum class InputIssue : int {
  kMalformedJson = 0,  // a JSONL line that does not parse, or parses to something else than an object: skipped
  kMissingKey,         // the object has no --jsonl_key member: skipped
  kNonString,          // the member is not a string (number, null, array, ...): skipped
  kBlankLine,          // a JSONL line that is empty or only spaces/tabs/CR: skipped
  kEmptyDocument,      // a document whose text is empty (an empty file, "", a BOM alone): skipped
  kHugeDocument,       // text longer than max_document_bytes: skipped (the limit is a flag)
  kInvalidUtf8,        // invalid UTF-8 bytes, or a JSON \uD800-\uDFFF escape without its pair: each
                       // maximal invalid subpart (or lone escape) replaced by U+FFFD (data/utf8.h); kept
  kByteOrderMark,      // a UTF-8 byte order mark (EF BB BF) at the start of a file: stripped; kept
  kEndOfDocumentToken, // the text encodes to the end-of-document id (e.g. a literal "<|endoftext|>", which
                       // Hugging Face tokenizers match as a special token): the document is split there
                       // into several (shards allow the EOD only at document ends); empty pieces vanish
};
inline constexpr int kNumInputIssues = 9;

// "malformed JSON", "missing key", ...
absl::string_view InputIssueName(InputIssue issue);
// True for the issues that skip the document (the first six), false for the repairs (kept documents).
bool InputIssueSkips(InputIssue issue);

// One occurrence of an issue. `line` is 1-based within the file; 0 for issues of a whole-file document
// that have no line (an empty or oversized file).
struct IssueReport {
  InputIssue issue;
  int64_t line;
  std::string detail;  // what exactly is wrong, e.g. "the value of \"text\" is a number"
};

// Counts per issue and the first report of each kind, in input order.
struct IssueLog {
  std::array<int64_t, kNumInputIssues> counts{};
  std::vector<IssueReport> firsts;

  bool IsFirst(InputIssue issue) const { return counts[static_cast<int>(issue)] == 0; }
  // Counts one occurrence; keeps the report if it is the first of its kind.
  void Add(InputIssue issue, int64_t line, std::string detail);
  int64_t count(InputIssue issue) const { return counts[static_cast<int>(issue)]; }
};

struct DocumentOptions {
  const Tokenizer* tokenizer = nullptr;  // required
  uint32_t end_of_document_id = 0;       // what the shard writer appends; never inside a document
  std::optional<uint32_t> bos_id;        // prepended to every document when set
  std::string jsonl_key = "text";        // the member holding a JSONL document's text
  bool brown = false;                    // whole-file documents are Brown-tagged (data/brown.h)
  int64_t max_document_bytes = 0;        // 0: no limit
};

// The encoded documents of one chunk, in input order.
struct EncodedChunk {
  struct Document {
    int64_t line;       // the JSONL line (1-based), or 0 for a whole-file document
    size_t num_tokens;  // its tokens in `tokens` (BOS + text; the shard writer appends the EOD)
  };
  std::vector<uint32_t> tokens;  // every document's tokens, back to back
  std::vector<Document> documents;
  IssueLog issues;
  int64_t text_bytes = 0;        // bytes of document text encoded (after JSON unescaping and repair)
};

class DocumentEncoder {
 public:
  explicit DocumentEncoder(DocumentOptions options);
  ~DocumentEncoder();
  DocumentEncoder(const DocumentEncoder&) = delete;
  DocumentEncoder& operator=(const DocumentEncoder&) = delete;

  // `lines`: whole lines of a JSONL file, '\n'-terminated except possibly the file's last one; the first
  // is line `first_line`. Each line is one document: its text is the string member options.jsonl_key.
  void EncodeJsonl(absl::string_view lines, int64_t first_line, EncodedChunk* out);

  // A whole file as one document (its BOM already stripped by the reader). Invalid UTF-8 is repaired
  // before the Brown conversion (options.brown), the empty check after it.
  void EncodeFile(std::string contents, EncodedChunk* out);

 private:
  void Encode(absl::string_view text, int64_t line, EncodedChunk* out);
  bool CheckSize(absl::string_view text, int64_t line, EncodedChunk* out);

  DocumentOptions options_;
  struct Parser;
  std::unique_ptr<Parser> parser_;
};

// Replaces every \uXXXX escape of a UTF-16 surrogate that is not part of a high-low pair by \uFFFD (same
// length, in place) and returns how many. JSON allows such escapes, but they are not Unicode text; the
// JSON parser refuses them. Backslashes outside strings are not JSON anyway and are left alone.
int64_t RepairLoneSurrogateEscapes(std::string* json);

// Reads a JSON Lines file as chunks of whole lines of about `chunk_bytes` (a line longer than that is one
// chunk of its own). The chunking depends only on the file and chunk_bytes.
class JsonlChunkReader {
 public:
  static absl::StatusOr<std::unique_ptr<JsonlChunkReader>> Open(const std::string& path, size_t chunk_bytes);
  ~JsonlChunkReader();

  // The next chunk of whole lines (the file's last line may lack its '\n') and the number of its first
  // line; false at the end of the file. A UTF-8 BOM at the start of the file is removed (bom_stripped()).
  absl::StatusOr<bool> Next(std::string* lines, int64_t* first_line);
  bool bom_stripped() const { return bom_stripped_; }

 private:
  JsonlChunkReader(std::string path, std::FILE* file, size_t chunk_bytes);

  std::string path_;
  std::FILE* file_;
  size_t chunk_bytes_;
  std::string pending_;  // the partial last line of the previous read
  int64_t next_line_ = 1;
  bool eof_ = false;
  bool bom_stripped_ = false;
};

inline constexpr absl::string_view kUtf8ByteOrderMark = "\xEF\xBB\xBF";

}  // namespace moe::data
