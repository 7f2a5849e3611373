// Documents for tools/prepare_data (see jsonl_documents.h).
#include "data/jsonl_documents.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/brown.h"
#include "data/utf8.h"
#include "simdjson.h"

namespace moe::data {
namespace {

bool IsBlank(absl::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

const char* TypeName(simdjson::dom::element_type type) {
  switch (type) {
    case simdjson::dom::element_type::ARRAY: return "an array";
    case simdjson::dom::element_type::OBJECT: return "an object";
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE: return "a number";
    case simdjson::dom::element_type::STRING: return "a string";
    case simdjson::dom::element_type::BOOL: return "a boolean";
    case simdjson::dom::element_type::NULL_VALUE: return "null";
  }
  return "of an unknown type";
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of the \uXXXX escape at s[i] ('\\'), or -1 if there is none.
int EscapedCodeUnit(absl::string_view s, size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  int v = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    const int h = HexValue(s[k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// Counts an issue; builds its detail only for the first of its kind (the only one kept).
template <typename MakeDetail>
void Note(IssueLog& log, InputIssue issue, int64_t line, MakeDetail make_detail) {
  log.Add(issue, line, log.IsFirst(issue) ? make_detail() : std::string());
}

}  // namespace

absl::string_view InputIssueName(InputIssue issue) {
  switch (issue) {
    case InputIssue::kMalformedJson: return "malformed JSON";
    case InputIssue::kMissingKey: return "missing key";
    case InputIssue::kNonString: return "non-string value";
    case InputIssue::kBlankLine: return "blank line";
    case InputIssue::kEmptyDocument: return "empty document";
    case InputIssue::kHugeDocument: return "document too large";
    case InputIssue::kInvalidUtf8: return "invalid UTF-8";
    case InputIssue::kByteOrderMark: return "byte order mark";
    case InputIssue::kEndOfDocumentToken: return "end-of-document token in text";
  }
  return "unknown issue";
}

bool InputIssueSkips(InputIssue issue) {
  return issue != InputIssue::kInvalidUtf8 && issue != InputIssue::kByteOrderMark &&
         issue != InputIssue::kEndOfDocumentToken;
}

void IssueLog::Add(InputIssue issue, int64_t line, std::string detail) {
  if (counts[static_cast<int>(issue)]++ == 0) firsts.push_back({issue, line, std::move(detail)});
}

int64_t RepairLoneSurrogateEscapes(std::string* json) {
  static constexpr char kReplacement[] = "\\uFFFD";
  int64_t repaired = 0;
  std::string& s = *json;
  size_t i = 0;
  while ((i = s.find('\\', i)) != std::string::npos) {
    const int unit = EscapedCodeUnit(s, i);
    if (unit < 0xD800 || unit > 0xDFFF) {  // not a surrogate (or not \u): skip the escape's first 2 chars
      i += 2;
      continue;
    }
    if (unit <= 0xDBFF) {
      const int next = EscapedCodeUnit(s, i + 6);
      if (next >= 0xDC00 && next <= 0xDFFF) {  // a proper pair
        i += 12;
        continue;
      }
    }
    s.replace(i, 6, kReplacement, 6);
    ++repaired;
    i += 6;
  }
  return repaired;
}

struct DocumentEncoder::Parser {
  simdjson::dom::parser json;
  std::string scratch;  // a repaired copy of the current line
};

DocumentEncoder::DocumentEncoder(DocumentOptions options)
    : options_(std::move(options)), parser_(std::make_unique<Parser>()) {}

DocumentEncoder::~DocumentEncoder() = default;

void DocumentEncoder::Encode(absl::string_view text, int64_t line, EncodedChunk* out) {
  const std::vector<uint32_t> ids = options_.tokenizer->Encode(text, /*add_special_tokens=*/false);
  out->text_bytes += static_cast<int64_t>(text.size());
  const uint32_t eod = options_.end_of_document_id;
  const auto add = [&](std::vector<uint32_t>::const_iterator begin, std::vector<uint32_t>::const_iterator end) {
    const size_t start = out->tokens.size();
    if (options_.bos_id.has_value()) out->tokens.push_back(*options_.bos_id);
    out->tokens.insert(out->tokens.end(), begin, end);
    out->documents.push_back({line, out->tokens.size() - start});
  };
  auto it = std::find(ids.begin(), ids.end(), eod);
  if (it == ids.end()) {
    add(ids.begin(), ids.end());
    return;
  }
  Note(out->issues, InputIssue::kEndOfDocumentToken, line, [&] {
    return absl::StrCat("the text encodes to the end-of-document id ", eod, " ",
                        std::count(ids.begin(), ids.end(), eod), " time(s); the document is split there");
  });
  const size_t documents_before = out->documents.size();
  auto piece = ids.begin();
  for (;; ++it) {
    if (it == ids.end() || *it == eod) {
      if (it != piece) add(piece, it);
      if (it == ids.end()) break;
      piece = it + 1;
    }
  }
  if (out->documents.size() == documents_before) {
    out->issues.Add(InputIssue::kEmptyDocument, line, "the text is nothing but end-of-document tokens");
  }
}

// False (and the issue counted) if the text is empty or over the limit.
bool DocumentEncoder::CheckSize(absl::string_view text, int64_t line, EncodedChunk* out) {
  if (text.empty()) {
    out->issues.Add(InputIssue::kEmptyDocument, line, "the document's text is empty");
    return false;
  }
  if (options_.max_document_bytes > 0 && static_cast<int64_t>(text.size()) > options_.max_document_bytes) {
    out->issues.Add(InputIssue::kHugeDocument, line,
                    absl::StrCat("the document's text has ", text.size(), " bytes, more than --max_document_bytes=",
                                 options_.max_document_bytes));
    return false;
  }
  return true;
}

void DocumentEncoder::EncodeJsonl(absl::string_view lines, int64_t first_line, EncodedChunk* out) {
  simdjson::dom::parser& json = parser_->json;
  int64_t line_number = first_line;
  size_t pos = 0;
  while (pos < lines.size()) {
    size_t end = lines.find('\n', pos);
    if (end == absl::string_view::npos) end = lines.size();
    absl::string_view line = lines.substr(pos, end - pos);
    pos = end + 1;
    const int64_t ln = line_number++;

    if (IsBlank(line)) {
      out->issues.Add(InputIssue::kBlankLine, ln, "the line is empty or only whitespace");
      continue;
    }
    simdjson::dom::element root;
    simdjson::error_code error = json.parse(line.data(), line.size()).get(root);
    bool repaired_utf8 = false;
    if (error == simdjson::UTF8_ERROR) {
      Utf8Repair repair = RepairUtf8(line);
      Note(out->issues, InputIssue::kInvalidUtf8, ln, [&] {
        return absl::StrCat(repair.num_invalid, " invalid UTF-8 sequence(s) replaced by U+FFFD, the first at byte ",
                            repair.first_invalid_offset + 1, " of the line");
      });
      repaired_utf8 = true;
      parser_->scratch = std::move(repair.text);
      line = parser_->scratch;
      error = json.parse(line.data(), line.size()).get(root);
    }
    if (error == simdjson::STRING_ERROR) {
      std::string copy(line);
      const int64_t repaired = RepairLoneSurrogateEscapes(&copy);
      if (repaired > 0) {
        if (!repaired_utf8) {
          Note(out->issues, InputIssue::kInvalidUtf8, ln, [&] {
            return absl::StrCat(repaired, " \\uD800-\\uDFFF escape(s) without their pair replaced by U+FFFD");
          });
        }
        parser_->scratch = std::move(copy);
        line = parser_->scratch;
        error = json.parse(line.data(), line.size()).get(root);
      }
    }
    if (error) {
      Note(out->issues, InputIssue::kMalformedJson, ln, [&] {
        std::string message = simdjson::error_message(error);
        if (!message.empty() && message.back() == '.') message.pop_back();
        return message;
      });
      continue;
    }
    simdjson::dom::object object;
    if (root.get(object)) {
      Note(out->issues, InputIssue::kMalformedJson, ln,
           [&] { return absl::StrCat("the line is ", TypeName(root.type()), ", not a JSON object"); });
      continue;
    }
    simdjson::dom::element value;
    if (object.at_key(options_.jsonl_key).get(value)) {
      Note(out->issues, InputIssue::kMissingKey, ln,
           [&] { return absl::StrCat("the object has no \"", options_.jsonl_key, "\" member"); });
      continue;
    }
    std::string_view value_text;
    if (value.get(value_text)) {
      Note(out->issues, InputIssue::kNonString, ln, [&] {
        return absl::StrCat("the value of \"", options_.jsonl_key, "\" is ", TypeName(value.type()), ", not a string");
      });
      continue;
    }
    const absl::string_view text(value_text.data(), value_text.size());
    if (!CheckSize(text, ln, out)) continue;
    Encode(text, ln, out);
  }
}

void DocumentEncoder::EncodeFile(std::string contents, EncodedChunk* out) {
  if (!IsValidUtf8(contents)) {
    Utf8Repair repair = RepairUtf8(contents);
    const int64_t line =
        1 + std::count(contents.begin(), contents.begin() + repair.first_invalid_offset, '\n');
    out->issues.Add(InputIssue::kInvalidUtf8, line,
                    absl::StrCat(repair.num_invalid, " invalid UTF-8 sequence(s) replaced by U+FFFD, the first at byte ",
                                 repair.first_invalid_offset + 1, " of the file"));
    contents = std::move(repair.text);
  }
  if (options_.brown) contents = BrownToPlainText(contents);
  if (!CheckSize(contents, 0, out)) return;
  Encode(contents, 0, out);
}

JsonlChunkReader::JsonlChunkReader(std::string path, std::FILE* file, size_t chunk_bytes)
    : path_(std::move(path)), file_(file), chunk_bytes_(std::max<size_t>(chunk_bytes, 1)) {}

JsonlChunkReader::~JsonlChunkReader() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::StatusOr<std::unique_ptr<JsonlChunkReader>> JsonlChunkReader::Open(const std::string& path,
                                                                         size_t chunk_bytes) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  std::unique_ptr<JsonlChunkReader> reader(new JsonlChunkReader(path, file, chunk_bytes));
  // A byte order mark can only be at the very start: look at the first bytes once.
  char head[3];
  const size_t got = std::fread(head, 1, sizeof(head), file);
  if (got < sizeof(head) && std::ferror(file)) return absl::DataLossError(absl::StrCat("cannot read '", path, "'"));
  if (absl::string_view(head, got) == kUtf8ByteOrderMark) {
    reader->bom_stripped_ = true;
  } else {
    reader->pending_.assign(head, got);
  }
  return reader;
}

absl::StatusOr<bool> JsonlChunkReader::Next(std::string* lines, int64_t* first_line) {
  std::string data = std::move(pending_);
  pending_.clear();
  size_t searched = 0;  // bytes of `data` known to hold no '\n'
  size_t last_newline = std::string::npos;
  while (!eof_) {
    const size_t old_size = data.size();
    data.resize(old_size + chunk_bytes_);
    const size_t got = std::fread(&data[old_size], 1, chunk_bytes_, file_);
    data.resize(old_size + got);
    if (got < chunk_bytes_) {
      if (std::ferror(file_)) return absl::DataLossError(absl::StrCat("cannot read '", path_, "'"));
      eof_ = true;
    }
    const size_t found = absl::string_view(data).substr(searched).rfind('\n');
    if (found != absl::string_view::npos) {
      last_newline = searched + found;
      break;
    }
    searched = data.size();
  }
  if (last_newline != std::string::npos && last_newline + 1 < data.size()) {
    pending_.assign(data, last_newline + 1, std::string::npos);
    data.resize(last_newline + 1);
  }
  if (data.empty()) return false;
  *first_line = next_line_;
  next_line_ += std::count(data.begin(), data.end(), '\n');
  *lines = std::move(data);
  return true;
}

}  // namespace moe::data
