// tokenize: a file's text -> token ids (or ids -> text) with any tokenizer the trainer can use; the
// command to compare this project's tokenizers with Hugging Face's.
//
//   tokenize --tokenizer=PATH --input=FILE [--add_special_tokens] [--strict]
//       prints one line on stdout: the ids of the whole file as a JSON array. No special tokens are
//       added unless --add_special_tokens (then the tokenizer's post-processor decides, as in Hugging
//       Face's encode(text, add_special_tokens=True)).
//   tokenize --tokenizer=PATH --input=FILE --decode [--skip_special_tokens]
//       FILE holds a JSON array of ids; prints their text exactly (no newline added).
//
// PATH: "byte", a tokenizer.json file, or a directory holding tokenizer.json (and tokenizer_config.json).
// Input that is not valid UTF-8 is decoded lossily (each maximal invalid subpart -> U+FFFD, as Rust's
// from_utf8_lossy and Node do) and the replacements are counted on stderr; --strict refuses it instead,
// naming the byte offset. Diagnostics go to stderr only.
#include <cstdio>
#include <string>
#include <vector>

#include <simdjson.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/status.h"
#include "data/load_tokenizer.h"
#include "data/utf8.h"

ABSL_FLAG(std::string, tokenizer, "byte", "\"byte\", a tokenizer.json file, or a directory holding one");
ABSL_FLAG(std::string, input, "", "the file to encode (or, with --decode, a JSON array of ids)");
ABSL_FLAG(bool, add_special_tokens, false, "add what the tokenizer's post-processor adds (e.g. BOS)");
ABSL_FLAG(bool, decode, false, "decode a JSON array of ids from --input instead of encoding");
ABSL_FLAG(bool, skip_special_tokens, false, "with --decode: drop special tokens");
ABSL_FLAG(bool, strict, false, "refuse input that is not valid UTF-8 instead of replacing it");

namespace moe::tools {
namespace {

absl::StatusOr<std::vector<uint32_t>> ParseIds(const std::string& text, const std::string& path) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  const simdjson::padded_string padded(text);
  if (parser.parse(padded).get(root) != simdjson::SUCCESS || !root.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON array of token ids"));
  }
  std::vector<uint32_t> ids;
  size_t index = 0;
  for (const simdjson::dom::element v : simdjson::dom::array(root)) {
    uint64_t id = 0;
    if (v.get_uint64().get(id) != simdjson::SUCCESS || id > 0xFFFFFFFFull) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": element ", index, " is not a token id"));
    }
    ids.push_back(static_cast<uint32_t>(id));
    ++index;
  }
  return ids;
}

absl::Status Run() {
  const std::string input = absl::GetFlag(FLAGS_input);
  if (input.empty()) return absl::InvalidArgumentError("--input is required");
  ASSIGN_OR_RETURN(std::unique_ptr<data::Tokenizer> tokenizer, data::LoadTokenizer(absl::GetFlag(FLAGS_tokenizer)));
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(input));

  if (absl::GetFlag(FLAGS_decode)) {
    ASSIGN_OR_RETURN(std::vector<uint32_t> ids, ParseIds(text, input));
    const std::string decoded = tokenizer->Decode(ids, absl::GetFlag(FLAGS_skip_special_tokens));
    std::fwrite(decoded.data(), 1, decoded.size(), stdout);
    return absl::OkStatus();
  }

  // The byte tokenizer takes bytes as they are; the others need UTF-8.
  if (tokenizer->fingerprint() != "byte" && !data::IsValidUtf8(text)) {
    data::Utf8Repair repair = data::RepairUtf8(text);
    if (absl::GetFlag(FLAGS_strict)) {
      return absl::InvalidArgumentError(absl::StrCat(input, ": invalid UTF-8 at byte offset ",
                                                     repair.first_invalid_offset, " (--strict)"));
    }
    std::fprintf(stderr, "tokenize: %s: %lld invalid UTF-8 sequence(s) replaced by U+FFFD (first at byte %lld)\n",
                 input.c_str(), static_cast<long long>(repair.num_invalid),
                 static_cast<long long>(repair.first_invalid_offset));
    text = std::move(repair.text);
  }
  const std::vector<uint32_t> ids = tokenizer->Encode(text, absl::GetFlag(FLAGS_add_special_tokens));
  std::string line = "[";
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&line, i ? "," : "", ids[i]);
  line += "]\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace moe::tools

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "text -> token ids as one JSON line (or ids -> text with --decode).\n"
      "  tokenize --tokenizer=PATH --input=FILE [--add_special_tokens] [--strict]\n"
      "  tokenize --tokenizer=PATH --input=IDS.json --decode [--skip_special_tokens]");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = moe::tools::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "tokenize: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
