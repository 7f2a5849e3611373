// prepare_data: text files -> train/validation token shards (data/token_shard.h) for the trainer.
//
//   prepare_data --input=PATH[,PATH...] --output=DIR [--val_fraction=0.05] [--seed=1234]
//                [--format=text|brown]
//
// Each input file is one document. A directory is read recursively; its files are taken in byte-wise
// order of their path relative to it (hidden files skipped), inputs in the order given, so the result
// depends only on the files. Documents are encoded with the byte tokenizer (vocab 257, EOD 256) and
// written to DIR/train.{tokens,index} and DIR/val.{tokens,index}.
//
// The split is by document, decided from a seeded hash of the document's name (its path relative to
// the input it came from): u = Mix64(Fnv1a64(name) ^ Mix64(seed)) mapped to [0, 1), validation iff
// u < val_fraction. Hashing names rather than positions keeps a document's side stable when files are
// added or removed. With two or more documents and val_fraction > 0, validation is never left empty (the
// document with the smallest u moves there) and neither is training (the largest u moves back).
//
// --format=brown reads the Brown corpus as unpacked by tools/fetch_brown.sh: in directories only the
// 500 samples (ca01..cr09) are taken, and their `word/tag` annotations are stripped (data/brown.h).
// Empty documents (empty files, or nothing left after stripping) are skipped and counted.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "data/brown.h"
#include "data/byte_tokenizer.h"
#include "data/prng.h"
#include "data/token_shard.h"

ABSL_FLAG(std::vector<std::string>, input, {}, "input files or directories, comma-separated");
ABSL_FLAG(std::string, output, "", "output directory for train.* and val.* shards (created if missing)");
ABSL_FLAG(double, val_fraction, 0.05, "fraction of documents for validation, in [0, 1)");
ABSL_FLAG(uint64_t, seed, 1234, "seed of the train/validation split");
ABSL_FLAG(std::string, format, "text", "input format: text (plain files) or brown (POS-tagged Brown corpus)");

namespace moe::tools {
namespace {

namespace fs = std::filesystem;

enum class Format { kText, kBrown };
enum class Split { kTrain, kVal };

struct Document {
  fs::path path;     // where to read it
  std::string name;  // path relative to its input; what the split hashes
  double u = 0;      // the split hash in [0, 1)
  Split split = Split::kTrain;
};

bool IsHidden(const fs::path& relative) {
  for (const fs::path& part : relative) {
    const std::string s = part.string();
    if (!s.empty() && s[0] == '.' && s != "." && s != "..") return true;
  }
  return false;
}

// True if `path` lies inside `dir` (both canonical): never read our own output back as input.
bool IsInside(const fs::path& path, const fs::path& dir) {
  const std::string p = path.string(), d = dir.string();
  return p.size() > d.size() && p.compare(0, d.size(), d) == 0 && p[d.size()] == '/';
}

absl::StatusOr<std::vector<Document>> ListDocuments(const std::vector<std::string>& inputs, Format format,
                                                    const fs::path& output_dir, int64_t* num_empty) {
  std::vector<Document> docs;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status status = fs::status(input, ec);
    if (ec || !fs::exists(status)) {
      return absl::NotFoundError(absl::StrCat("input '", input, "' does not exist"));
    }
    std::vector<Document> found;
    if (fs::is_directory(status)) {
      fs::recursive_directory_iterator it(input, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file()) continue;
        const fs::path relative = it->path().lexically_relative(input);
        if (IsHidden(relative)) continue;
        if (format == Format::kBrown && !data::IsBrownSampleName(it->path().filename().string())) continue;
        const fs::path canonical = fs::weakly_canonical(it->path(), ec);
        if (!ec && IsInside(canonical, output_dir)) continue;
        found.push_back({it->path(), relative.string()});
      }
      if (ec) return absl::InternalError(absl::StrCat("cannot list directory '", input, "': ", ec.message()));
      std::sort(found.begin(), found.end(), [](const Document& a, const Document& b) { return a.name < b.name; });
    } else {
      found.push_back({fs::path(input), fs::path(input).filename().string()});
    }
    for (Document& doc : found) {
      const uintmax_t size = fs::file_size(doc.path, ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot stat '", doc.path.string(), "': ", ec.message()));
      if (size == 0) {
        ++*num_empty;
        continue;
      }
      docs.push_back(std::move(doc));
    }
  }
  return docs;
}

void AssignSplits(std::vector<Document>& docs, double val_fraction, uint64_t seed) {
  int64_t num_val = 0;
  for (Document& doc : docs) {
    const uint64_t h = data::Mix64(data::Fnv1a64(doc.name) ^ data::Mix64(seed));
    doc.u = static_cast<double>(h >> 11) * 0x1.0p-53;
    doc.split = doc.u < val_fraction ? Split::kVal : Split::kTrain;
    num_val += doc.split == Split::kVal;
  }
  if (docs.size() < 2 || val_fraction <= 0) return;
  const auto by_u = [](const Document& a, const Document& b) { return a.u < b.u; };
  if (num_val == 0) std::min_element(docs.begin(), docs.end(), by_u)->split = Split::kVal;
  if (num_val == static_cast<int64_t>(docs.size())) std::max_element(docs.begin(), docs.end(), by_u)->split = Split::kTrain;
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path.string(), "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read '", path.string(), "'"));
  return buffer.str();
}

absl::Status Run() {
  const std::vector<std::string> inputs = absl::GetFlag(FLAGS_input);
  const std::string output = absl::GetFlag(FLAGS_output);
  const double val_fraction = absl::GetFlag(FLAGS_val_fraction);
  const std::string format_name = absl::GetFlag(FLAGS_format);
  if (inputs.empty()) return absl::InvalidArgumentError("--input is required");
  if (output.empty()) return absl::InvalidArgumentError("--output is required");
  if (!(val_fraction >= 0 && val_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--val_fraction must be in [0, 1), got ", val_fraction));
  }
  Format format;
  if (format_name == "text") {
    format = Format::kText;
  } else if (format_name == "brown") {
    format = Format::kBrown;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--format must be text or brown, got '", format_name, "'"));
  }

  std::error_code ec;
  fs::create_directories(output, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create output directory '", output, "': ", ec.message()));
  const fs::path output_dir = fs::weakly_canonical(output);

  int64_t num_empty = 0;
  ASSIGN_OR_RETURN(std::vector<Document> docs, ListDocuments(inputs, format, output_dir, &num_empty));
  if (docs.empty()) return absl::InvalidArgumentError("no non-empty input documents found");
  AssignSplits(docs, val_fraction, absl::GetFlag(FLAGS_seed));

  const data::TokenShardWriter::Options options{data::ByteTokenizer::kVocabSize,
                                                data::ByteTokenizer::kEndOfDocument, "byte", "byte"};
  ASSIGN_OR_RETURN(data::TokenShardWriter train, data::TokenShardWriter::Create(output + "/train", options));
  ASSIGN_OR_RETURN(data::TokenShardWriter val, data::TokenShardWriter::Create(output + "/val", options));
  for (const Document& doc : docs) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(doc.path));
    if (format == Format::kBrown) text = data::BrownToPlainText(text);
    if (text.empty()) {
      ++num_empty;
      continue;
    }
    const std::vector<uint32_t> ids = data::ByteTokenizer().Encode(text);
    RETURN_IF_ERROR((doc.split == Split::kVal ? val : train).AddDocument(ids));
  }
  RETURN_IF_ERROR(train.Finish());
  RETURN_IF_ERROR(val.Finish());
  // Read both shards back: what the trainer will see must open cleanly.
  ASSIGN_OR_RETURN(data::TokenShard train_shard, data::TokenShard::Open(output + "/train"));
  ASSIGN_OR_RETURN(data::TokenShard val_shard, data::TokenShard::Open(output + "/val"));

  std::printf("prepare_data: %lld documents (%s, %lld empty skipped): train %lld documents %lld tokens, "
              "val %lld documents %lld tokens -> %s/{train,val}.{tokens,index}\n",
              static_cast<long long>(train_shard.num_documents() + val_shard.num_documents()),
              format_name.c_str(), static_cast<long long>(num_empty),
              static_cast<long long>(train_shard.num_documents()), static_cast<long long>(train_shard.num_tokens()),
              static_cast<long long>(val_shard.num_documents()), static_cast<long long>(val_shard.num_tokens()),
              output.c_str());
  if (val_shard.num_documents() == 0) {
    std::fprintf(stderr, "prepare_data: warning: the validation split is empty\n");
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace moe::tools

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "text files -> byte-level token shards.\n"
      "  prepare_data --input=PATH[,PATH...] --output=DIR [--val_fraction=0.05] [--seed=1234] "
      "[--format=text|brown]");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = moe::tools::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "prepare_data: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
