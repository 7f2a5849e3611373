// prepare_data: text, Brown or JSON Lines files -> train/validation token shards (data/token_shard.h).
//
//   prepare_data --input=PATH[,PATH...] --output=DIR [--format=text|brown|jsonl] [--tokenizer=byte|PATH]
//                [--jsonl_key=text] [--bos|--nobos] [--eod_token=TOKEN] [--val_fraction=0.05] [--seed=1234]
//                [--threads=N] [--strict] [--max_document_bytes=67108864]
//
// Inputs. A directory is read recursively; its files are taken in byte-wise order of their path relative
// to it (hidden files skipped; the output directory never read back), inputs in the order given, so the
// result depends only on the files. Formats:
//   text   each file is one document.
//   brown  the Brown corpus as unpacked by tools/fetch_brown.sh: in directories only the 500 samples
//          (ca01..cr09) are taken, and their `word/tag` annotations are stripped (data/brown.h).
//   jsonl  JSON Lines: one JSON object per line, one document per line, its text the string member
//          --jsonl_key. In directories only files named *.jsonl are taken.
//
// Tokens. --tokenizer is "byte" (the byte-level tokenizer: vocab 257, EOD 256) or a Hugging Face
// tokenizer.json (or a directory holding it and tokenizer_config.json), data/load_tokenizer.h. Each
// document becomes [BOS if --bos] + Encode(text, add_special_tokens=false) + [EOD]. --bos defaults to
// the tokenizer's add_bos_token (tokenizer_config.json; false for "byte"); --eod_token names the EOD
// token (a vocabulary or added token), by default the tokenizer's eos token; a tokenizer with neither is
// refused. A BOS equal to the EOD is not prepended (--bos then is an error): the previous document's EOD
// already separates, and shards hold the EOD only at document ends. The shard index records vocab_size,
// the EOD id, the tokenizer's name and its fingerprint.
//
// Split. By document, from a seeded hash of the document's name: the file's path relative to its input,
// plus ":" and the line number (from 1) for JSONL. u = Mix64(Fnv1a64(name) ^ Mix64(seed)) mapped to
// [0, 1), validation iff u < val_fraction. Hashing names rather than positions keeps a document's side
// stable when other documents are added or removed. With two or more documents and val_fraction > 0,
// validation is never left empty (the training document with the smallest u moves there; both shards
// are then rewritten once) and neither is training (the validation document with the largest u moves).
//
// Threads. Files are read in order as chunks (a whole file for text/brown; about --chunk_bytes of whole
// lines for JSONL), encoded on --threads threads, and written in input order: the shards are
// byte-identical for every thread count and chunk size. A progress bar goes to stderr when it is a
// terminal; the last line on stdout always gives the throughput (MB/s of input, tokens/s, the time).
//
// Bad input: one policy per case, each counted (the counts are printed at the end), the first of each
// kind reported on stderr as FILE:LINE; with --strict the first of any kind is an error (exit 1, naming
// FILE:LINE and the problem) and no shard is written. Nothing is dropped silently.
//   malformed JSON line           skipped (also a line that is valid JSON but not an object)
//   missing key                   skipped (the object has no --jsonl_key member)
//   non-string value              skipped (number, null, boolean, array or object)
//   blank JSONL line              skipped (empty or only spaces, tabs, CR)
//   empty document                skipped ("" in JSONL, an empty file, nothing left of a Brown sample;
//                                 an empty or BOM-only JSONL file counts as one too)
//   document too large            skipped when its text is over --max_document_bytes (default 64 MiB;
//                                 0 = no limit): such a "document" is nearly always an extraction error,
//                                 and it would take that much memory at once. Raise the limit to keep it.
//   invalid UTF-8                 repaired, kept: each maximal invalid subpart becomes U+FFFD, as Rust's
//                                 from_utf8_lossy (data/utf8.h), in every format and for every tokenizer;
//                                 in JSONL also a \uD800-\uDFFF escape without its pair
//   byte order mark               stripped, kept (a UTF-8 BOM at the start of a file)
//   end-of-document token in text split there into several documents (the text encodes to the EOD id,
//                                 e.g. a literal "<|endoftext|>" that a Hugging Face tokenizer matches as
//                                 a special token; a shard holds the EOD only at document ends)
// An input that cannot be read at all (missing, unreadable) is an error, as is a run with no documents.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status.h"
#include "data/brown.h"
#include "data/jsonl_documents.h"
#include "data/jsonl_pipeline.h"
#include "data/load_tokenizer.h"
#include "data/prng.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

ABSL_FLAG(std::vector<std::string>, input, {}, "input files or directories, comma-separated");
ABSL_FLAG(std::string, output, "", "output directory for train.* and val.* shards (created if missing)");
ABSL_FLAG(double, val_fraction, 0.05, "fraction of documents for validation, in [0, 1)");
ABSL_FLAG(uint64_t, seed, 1234, "seed of the train/validation split");
ABSL_FLAG(std::string, format, "text",
          "input format: text (a file is a document), brown (POS-tagged Brown corpus) or jsonl (a line is a "
          "document)");
ABSL_FLAG(std::string, tokenizer, "byte", "\"byte\", or a Hugging Face tokenizer.json (or its directory)");
ABSL_FLAG(std::string, jsonl_key, "text", "jsonl: the member holding each document's text");
ABSL_FLAG(bool, bos, false, "prepend the BOS token to every document (default: the tokenizer's add_bos_token)");
ABSL_FLAG(std::string, eod_token, "", "the token ending every document (default: the tokenizer's eos token)");
ABSL_FLAG(int32_t, threads, 0, "encoding threads (0: the number of hardware threads)");
ABSL_FLAG(bool, strict, false, "fail on the first bad input (see --help) instead of skipping or repairing it");
ABSL_FLAG(int64_t, max_document_bytes, int64_t{64} << 20,
          "documents with more text than this are skipped and counted (0: no limit)");
ABSL_FLAG(int64_t, chunk_bytes, int64_t{1} << 20,
          "jsonl: bytes of whole lines per unit of work (tuning only: the output does not depend on it)");

namespace moe::tools {
namespace {

namespace fs = std::filesystem;
using data::InputIssue;

using data::InputFile;
using Format = data::InputFormat;

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

bool TakeFromDirectory(const fs::path& path, Format format) {
  const std::string file_name = path.filename().string();
  if (format == Format::kBrown) return data::IsBrownSampleName(file_name);
  if (format == Format::kJsonl) return absl::EndsWith(file_name, ".jsonl");
  return true;
}

absl::StatusOr<std::vector<InputFile>> ListInputs(const std::vector<std::string>& inputs, Format format,
                                                  const fs::path& output_dir) {
  std::vector<InputFile> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status status = fs::status(input, ec);
    if (ec || !fs::exists(status)) {
      return absl::NotFoundError(absl::StrCat("input '", input, "' does not exist"));
    }
    std::vector<InputFile> found;
    if (fs::is_directory(status)) {
      fs::recursive_directory_iterator it(input, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file()) continue;
        const fs::path relative = it->path().lexically_relative(input);
        if (IsHidden(relative) || !TakeFromDirectory(it->path(), format)) continue;
        const fs::path canonical = fs::weakly_canonical(it->path(), ec);
        if (!ec && IsInside(canonical, output_dir)) continue;
        found.push_back({it->path().string(), relative.string()});
      }
      if (ec) return absl::InternalError(absl::StrCat("cannot list directory '", input, "': ", ec.message()));
      std::sort(found.begin(), found.end(), [](const InputFile& a, const InputFile& b) { return a.name < b.name; });
    } else {
      found.push_back({input, fs::path(input).filename().string()});
    }
    for (InputFile& file : found) {
      file.size = fs::file_size(file.path, ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot stat '", file.path, "': ", ec.message()));
      files.push_back(std::move(file));
    }
  }
  return files;
}

const char* PolicyWord(InputIssue issue) {
  if (issue == InputIssue::kByteOrderMark) return "stripped";
  if (issue == InputIssue::kEndOfDocumentToken) return "split there";
  return data::InputIssueSkips(issue) ? "skipped" : "repaired";
}

std::string Location(const InputFile& file, int64_t line) {
  return line > 0 ? absl::StrCat(file.path, ":", line) : file.path;
}

// "[#####.....]  45.2%  12.3/27.2 MB  8.1 MB/s" on one rewritten stderr line.
void ShowProgress(int64_t done, int64_t total, double seconds) {
  const double fraction = total > 0 ? static_cast<double>(done) / total : 1.0;
  const int width = 30, filled = static_cast<int>(fraction * width);
  std::fprintf(stderr, "\rprepare_data: [%s%s] %5.1f%%  %.1f/%.1f MB  %.1f MB/s ", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), 100 * fraction, done / 1e6, total / 1e6,
               seconds > 0 ? done / 1e6 / seconds : 0.0);
  std::fflush(stderr);
}

// Moves document `index` of shard `from` into the empty shard `to`, rewriting both; only when the split
// would otherwise leave one side empty.
absl::Status MoveDocument(const std::string& from, int64_t index, const std::string& to,
                          const data::TokenShardWriter::Options& options) {
  ASSIGN_OR_RETURN(data::TokenShard source, data::TokenShard::Open(from, data::ShardValidation::kHeader));
  ASSIGN_OR_RETURN(data::TokenShardWriter rest, data::TokenShardWriter::Create(from, options));
  ASSIGN_OR_RETURN(data::TokenShardWriter moved, data::TokenShardWriter::Create(to, options));
  for (int64_t i = 0; i < source.num_documents(); ++i) {
    const int64_t start = source.document_start(i), end = source.document_end(i) - 1;  // without the EOD
    RETURN_IF_ERROR((i == index ? moved : rest)
                        .AddDocument(absl::MakeConstSpan(source.tokens() + start, static_cast<size_t>(end - start))));
  }
  RETURN_IF_ERROR(rest.Finish());
  return moved.Finish();
}

struct TokenizerSetup {
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::optional<uint32_t> bos_id;
  uint32_t eod_id = 0;
};

// `bos_given`: whether --bos or --nobos was on the command line (otherwise the tokenizer decides).
absl::StatusOr<TokenizerSetup> SetUpTokenizer(bool bos_given) {
  TokenizerSetup setup;
  ASSIGN_OR_RETURN(setup.tokenizer, data::LoadTokenizer(absl::GetFlag(FLAGS_tokenizer)));
  const data::Tokenizer& tok = *setup.tokenizer;
  const std::string eod_token = absl::GetFlag(FLAGS_eod_token);
  if (!eod_token.empty()) {
    const std::optional<uint32_t> id = tok.TokenToId(eod_token);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--eod_token: '", eod_token, "' is not a token of tokenizer ", tok.name()));
    }
    setup.eod_id = *id;
  } else if (tok.eos_id().has_value()) {
    setup.eod_id = *tok.eos_id();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", tok.name(), " has no eos token (tokenizer_config.json): name the end-of-document "
        "token with --eod_token, e.g. --eod_token='<|endoftext|>'"));
  }
  const bool bos = bos_given ? absl::GetFlag(FLAGS_bos) : tok.add_bos_token();
  if (bos) {
    if (!tok.bos_id().has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("--bos: tokenizer ", tok.name(), " has no BOS token"));
    }
    // A shard holds the EOD id only at document ends; the previous document's EOD already separates.
    if (*tok.bos_id() == setup.eod_id) {
      const std::string why = absl::StrCat("the BOS token is the end-of-document token (id ", setup.eod_id,
                                           "), which a shard holds only at document ends");
      if (bos_given) return absl::InvalidArgumentError(absl::StrCat("--bos: ", why, "; drop --bos"));
      std::fprintf(stderr, "prepare_data: note: not prepending BOS (add_bos_token): %s\n", why.c_str());
    } else {
      setup.bos_id = tok.bos_id();
    }
  }
  return setup;
}

absl::Status Run(bool bos_given) {
  const auto start_time = std::chrono::steady_clock::now();
  const std::vector<std::string> inputs = absl::GetFlag(FLAGS_input);
  const std::string output = absl::GetFlag(FLAGS_output);
  const double val_fraction = absl::GetFlag(FLAGS_val_fraction);
  const std::string format_name = absl::GetFlag(FLAGS_format);
  const int64_t max_document_bytes = absl::GetFlag(FLAGS_max_document_bytes);
  const int64_t chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  const bool strict = absl::GetFlag(FLAGS_strict);
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (inputs.empty()) return absl::InvalidArgumentError("--input is required");
  if (output.empty()) return absl::InvalidArgumentError("--output is required");
  if (!(val_fraction >= 0 && val_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--val_fraction must be in [0, 1), got ", val_fraction));
  }
  if (max_document_bytes < 0) return absl::InvalidArgumentError("--max_document_bytes must be >= 0");
  if (chunk_bytes <= 0) return absl::InvalidArgumentError("--chunk_bytes must be > 0");
  Format format;
  if (format_name == "text") {
    format = Format::kText;
  } else if (format_name == "brown") {
    format = Format::kBrown;
  } else if (format_name == "jsonl") {
    format = Format::kJsonl;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--format must be text, brown or jsonl, got '", format_name, "'"));
  }
  ASSIGN_OR_RETURN(const TokenizerSetup tok, SetUpTokenizer(bos_given));

  std::error_code ec;
  fs::create_directories(output, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create output directory '", output, "': ", ec.message()));
  const fs::path output_dir = fs::weakly_canonical(output);
  ASSIGN_OR_RETURN(const std::vector<InputFile> files, ListInputs(inputs, format, output_dir));
  if (files.empty()) return absl::InvalidArgumentError("no input files found");
  int64_t total_bytes = 0;
  for (const InputFile& file : files) total_bytes += static_cast<int64_t>(file.size);

  const data::TokenShardWriter::Options options{tok.tokenizer->vocab_size(), tok.eod_id, tok.tokenizer->name(),
                                                tok.tokenizer->fingerprint()};
  const std::string train_prefix = output + "/train", val_prefix = output + "/val";
  ASSIGN_OR_RETURN(data::TokenShardWriter train, data::TokenShardWriter::Create(train_prefix, options));
  ASSIGN_OR_RETURN(data::TokenShardWriter val, data::TokenShardWriter::Create(val_prefix, options));

  data::DocumentOptions doc_options;
  doc_options.tokenizer = tok.tokenizer.get();
  doc_options.bos_id = tok.bos_id;
  doc_options.end_of_document_id = tok.eod_id;
  doc_options.jsonl_key = absl::GetFlag(FLAGS_jsonl_key);
  doc_options.max_document_bytes = max_document_bytes;

  // Chunks come back encoded, in input order: write their documents, report their issues.
  const bool progress = ::isatty(STDERR_FILENO) == 1;
  data::IssueLog issues;
  int64_t done_bytes = 0, text_bytes = 0;
  double min_train_u = 2, max_val_u = -1;  // the candidates for a move if one side ends up empty
  int64_t min_train_index = -1, max_val_index = -1;
  double last_progress = 0;
  const uint64_t seed_mix = data::Mix64(absl::GetFlag(FLAGS_seed));
  {
    data::DocumentPipeline pipeline(files, format, doc_options, threads, static_cast<size_t>(chunk_bytes));
    for (;;) {
      ASSIGN_OR_RETURN(const std::unique_ptr<data::DocumentChunk> chunk, pipeline.Next());
      if (chunk == nullptr) break;
      const InputFile& file = files[chunk->file];
      for (const data::IssueReport& report : chunk->out.issues.firsts) {
        const std::string what = absl::StrCat(Location(file, report.line), ": ", data::InputIssueName(report.issue),
                                              ": ", report.detail);
        if (strict) return absl::InvalidArgumentError(absl::StrCat(what, " (--strict)"));
        if (issues.IsFirst(report.issue)) {
          std::fprintf(stderr, "%sprepare_data: warning: %s; %s (later cases are only counted)\n",
                       progress ? "\r\033[K" : "", what.c_str(), PolicyWord(report.issue));
        }
        issues.Add(report.issue, report.line, report.detail);
        issues.counts[static_cast<int>(report.issue)] += chunk->out.issues.count(report.issue) - 1;
      }
      size_t offset = 0;
      for (const data::EncodedChunk::Document& doc : chunk->out.documents) {
        const std::string name = chunk->whole_file ? file.name : absl::StrCat(file.name, ":", doc.line);
        const double u = static_cast<double>(data::Mix64(data::Fnv1a64(name) ^ seed_mix) >> 11) * 0x1.0p-53;
        const bool to_val = u < val_fraction;
        if (to_val && u > max_val_u) max_val_u = u, max_val_index = val.num_documents();
        if (!to_val && u < min_train_u) min_train_u = u, min_train_index = train.num_documents();
        RETURN_IF_ERROR((to_val ? val : train)
                            .AddDocument(absl::MakeConstSpan(chunk->out.tokens.data() + offset, doc.num_tokens)));
        offset += doc.num_tokens;
      }
      text_bytes += chunk->out.text_bytes;
      done_bytes += chunk->input_bytes;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
      if (progress && seconds - last_progress >= 0.2) {
        ShowProgress(done_bytes, total_bytes, seconds);
        last_progress = seconds;
      }
    }
  }
  if (progress) std::fprintf(stderr, "\r\033[K");
  const double encode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();

  const int64_t num_train = train.num_documents(), num_val = val.num_documents();
  RETURN_IF_ERROR(train.Finish());
  RETURN_IF_ERROR(val.Finish());
  if (num_train + num_val >= 2 && val_fraction > 0) {
    if (num_val == 0) RETURN_IF_ERROR(MoveDocument(train_prefix, min_train_index, val_prefix, options));
    if (num_train == 0) RETURN_IF_ERROR(MoveDocument(val_prefix, max_val_index, train_prefix, options));
  }

  std::vector<std::string> skipped, repaired;
  for (int i = 0; i < data::kNumInputIssues; ++i) {
    const auto issue = static_cast<InputIssue>(i);
    (data::InputIssueSkips(issue) ? skipped : repaired)
        .push_back(absl::StrCat(data::InputIssueName(issue), " ", issues.count(issue)));
  }
  const std::string issue_line = absl::StrCat("prepare_data: bad input: skipped: ", absl::StrJoin(skipped, ", "),
                                              "; repaired and kept: ", absl::StrJoin(repaired, ", "), "\n");
  if (num_train + num_val == 0) {
    std::fputs(issue_line.c_str(), stdout);
    return absl::InvalidArgumentError("no documents: every input was empty or skipped (counts above)");
  }
  // Read both shards back: what the trainer will see must open cleanly.
  ASSIGN_OR_RETURN(data::TokenShard train_shard, data::TokenShard::Open(train_prefix));
  ASSIGN_OR_RETURN(data::TokenShard val_shard, data::TokenShard::Open(val_prefix));
  const int64_t num_tokens = train_shard.num_tokens() + val_shard.num_tokens();

  std::printf("prepare_data: %lld documents (%s, %lld empty skipped): train %lld documents %lld tokens, "
              "val %lld documents %lld tokens -> %s/{train,val}.{tokens,index}\n",
              static_cast<long long>(train_shard.num_documents() + val_shard.num_documents()), format_name.c_str(),
              static_cast<long long>(issues.count(InputIssue::kEmptyDocument)),
              static_cast<long long>(train_shard.num_documents()), static_cast<long long>(train_shard.num_tokens()),
              static_cast<long long>(val_shard.num_documents()), static_cast<long long>(val_shard.num_tokens()),
              output.c_str());
  std::printf("prepare_data: tokenizer %s (fingerprint %s, vocab %u), end of document %u, BOS %s\n",
              tok.tokenizer->name().c_str(), tok.tokenizer->fingerprint().c_str(), tok.tokenizer->vocab_size(),
              tok.eod_id, tok.bos_id.has_value() ? absl::StrCat(*tok.bos_id).c_str() : "none");
  std::fputs(issue_line.c_str(), stdout);
  if (val_shard.num_documents() == 0) {
    std::fprintf(stderr, "prepare_data: warning: the validation split is empty\n");
  }
  const double seconds =
      std::max(1e-9, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count());
  std::printf("prepare_data: %.2f MB of input (%.2f MB of text) and %lld tokens in %.2f s: %.2f MB/s, %.3gM "
              "tokens/s (%d threads; %.2f s reading, encoding and writing, %.2f s syncing and verifying)\n",
              done_bytes / 1e6, text_bytes / 1e6, static_cast<long long>(num_tokens), seconds,
              done_bytes / 1e6 / seconds, num_tokens / 1e6 / seconds, threads, encode_seconds,
              seconds - encode_seconds);
  return absl::OkStatus();
}

}  // namespace
}  // namespace moe::tools

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "text, Brown or JSON Lines files -> token shards for the trainer.\n"
      "  prepare_data --input=PATH[,PATH...] --output=DIR [--format=text|brown|jsonl] [--tokenizer=byte|PATH]\n"
      "               [--jsonl_key=text] [--bos|--nobos] [--eod_token=TOKEN] [--val_fraction=0.05] [--seed=1234]\n"
      "               [--threads=N] [--strict] [--max_document_bytes=67108864]\n"
      "Each document is [BOS if --bos] + the tokenizer's ids of its text + [EOD]; text: a file, brown: a Brown\n"
      "sample (tags stripped), jsonl: a line's --jsonl_key string. The split hashes each document's name\n"
      "(relative path, plus :LINE for jsonl). The output is identical for any --threads.\n"
      "Bad input (each counted; the first of each kind reported as FILE:LINE; --strict: the first of any\n"
      "kind is an error and nothing is written):\n"
      "  malformed JSON line (or not an object), missing key, non-string value, blank JSONL line,\n"
      "  empty document (also an empty file), document over --max_document_bytes: skipped;\n"
      "  invalid UTF-8 (also a lone \\uD800-\\uDFFF JSON escape): each bad sequence -> U+FFFD, kept;\n"
      "  UTF-8 byte order mark at the start of a file: stripped, kept;\n"
      "  text that encodes to the EOD id (e.g. a literal <|endoftext|>): the document is split there.");
  // Abseil cannot tell a defaulted flag from a given one: look for --bos / --nobos (any spelling) first
  // (one set in a --flagfile is not seen: there --bos=false cannot override add_bos_token).
  bool bos_given = false;
  for (int i = 1; i < argc && std::string(argv[i]) != "--"; ++i) {
    std::string arg = argv[i];
    arg.erase(0, arg.find_first_not_of('-'));
    arg = arg.substr(0, arg.find('='));
    bos_given |= arg == "bos" || arg == "nobos";
  }
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = moe::tools::Run(bos_given);
  if (!status.ok()) {
    std::fprintf(stderr, "prepare_data: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
