// Token shard writer and memory-mapped reader (see token_shard.h for the format).
#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/shard.pb.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

// The .tokens file is little-endian uint32 and is mapped without conversion.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards assume a little-endian host");

namespace moe::data {
namespace {

std::string ErrnoText() { return std::strerror(errno); }

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// fsync a directory so that renames inside it survive a crash.
absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open directory '", dir, "': ", ErrnoText()));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync of directory '", dir, "' failed: ", ErrnoText()));
  return absl::OkStatus();
}

absl::Status WriteFileSynced(const std::string& path, const std::string& contents) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create '", path, "': ", ErrnoText()));
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string error = ErrnoText();
      ::close(fd);
      return absl::InternalError(absl::StrCat("write to '", path, "' failed: ", error));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string error = ErrnoText();
    ::close(fd);
    return absl::InternalError(absl::StrCat("fsync of '", path, "' failed: ", error));
  }
  if (::close(fd) != 0) return absl::InternalError(absl::StrCat("close of '", path, "' failed: ", ErrnoText()));
  return absl::OkStatus();
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename '", from, "' to '", to, "': ", ErrnoText()));
  }
  return absl::OkStatus();
}

// Collects the first text-format parse error with its position.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (error_.empty()) error_ = absl::StrFormat("line %d column %d: %s", line + 1, column + 1, message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Writer

absl::StatusOr<TokenShardWriter> TokenShardWriter::Create(const std::string& prefix, const Options& options) {
  if (options.vocab_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat("token shard '", prefix, "': vocab_size must be > 0"));
  }
  if (options.end_of_document_id >= options.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("token shard '", prefix, "': end_of_document_id ",
                                                   options.end_of_document_id, " is not < vocab_size ",
                                                   options.vocab_size));
  }
  TokenShardWriter writer;
  writer.prefix_ = prefix;
  writer.options_ = options;
  writer.tmp_tokens_path_ = absl::StrCat(prefix, ".tokens.tmp-", ::getpid());
  writer.tokens_file_ = std::fopen(writer.tmp_tokens_path_.c_str(), "wb");
  if (writer.tokens_file_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create '", writer.tmp_tokens_path_, "': ", ErrnoText()));
  }
  return writer;
}

TokenShardWriter::TokenShardWriter(TokenShardWriter&& other) noexcept { *this = std::move(other); }

TokenShardWriter& TokenShardWriter::operator=(TokenShardWriter&& other) noexcept {
  if (this != &other) {
    Abandon();
    prefix_ = std::move(other.prefix_);
    options_ = std::move(other.options_);
    tmp_tokens_path_ = std::move(other.tmp_tokens_path_);
    tokens_file_ = std::exchange(other.tokens_file_, nullptr);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
    document_starts_ = std::move(other.document_starts_);
    error_ = std::move(other.error_);
    other.tmp_tokens_path_.clear();
  }
  return *this;
}

TokenShardWriter::~TokenShardWriter() { Abandon(); }

void TokenShardWriter::Abandon() {
  if (tokens_file_ != nullptr) {
    std::fclose(tokens_file_);
    tokens_file_ = nullptr;
    std::remove(tmp_tokens_path_.c_str());
  }
}

absl::Status TokenShardWriter::WriteTokens(const uint32_t* tokens, size_t count) {
  if (count > 0 && std::fwrite(tokens, sizeof(uint32_t), count, tokens_file_) != count) {
    error_ = absl::InternalError(absl::StrCat("write to '", tmp_tokens_path_, "' failed: ", ErrnoText()));
  }
  return error_;
}

absl::Status TokenShardWriter::AddDocument(absl::Span<const uint32_t> tokens) {
  if (tokens_file_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("token shard '", prefix_, "': writer already finished"));
  }
  if (!error_.ok()) return error_;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= options_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token shard '", prefix_, "': document ",
                                                     document_starts_.size(), " has token id ", tokens[i],
                                                     " at position ", i, ", not < vocab_size ",
                                                     options_.vocab_size));
    }
  }
  document_starts_.push_back(static_cast<uint64_t>(num_tokens_));
  const uint32_t eod = options_.end_of_document_id;
  if (!WriteTokens(tokens.data(), tokens.size()).ok() || !WriteTokens(&eod, 1).ok()) return error_;
  num_tokens_ += static_cast<int64_t>(tokens.size()) + 1;
  return absl::OkStatus();
}

absl::Status TokenShardWriter::Finish() {
  if (tokens_file_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("token shard '", prefix_, "': writer already finished"));
  }
  if (!error_.ok()) return error_;
  if (std::fflush(tokens_file_) != 0 || ::fsync(::fileno(tokens_file_)) != 0) {
    return absl::InternalError(absl::StrCat("flush of '", tmp_tokens_path_, "' failed: ", ErrnoText()));
  }
  const int close_rc = std::fclose(tokens_file_);
  tokens_file_ = nullptr;
  if (close_rc != 0) {
    std::remove(tmp_tokens_path_.c_str());
    return absl::InternalError(absl::StrCat("close of '", tmp_tokens_path_, "' failed: ", ErrnoText()));
  }

  TokenShardIndex index;
  index.set_magic(kTokenShardMagic);
  index.set_version(kTokenShardVersion);
  index.set_num_tokens(static_cast<uint64_t>(num_tokens_));
  index.set_vocab_size(options_.vocab_size);
  index.set_end_of_document_id(options_.end_of_document_id);
  index.set_num_documents(document_starts_.size());
  for (uint64_t start : document_starts_) index.add_document_start(start);
  if (!options_.tokenizer.empty()) index.set_tokenizer(options_.tokenizer);
  if (!options_.tokenizer_fingerprint.empty()) index.set_tokenizer_fingerprint(options_.tokenizer_fingerprint);
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(index, &text)) {
    std::remove(tmp_tokens_path_.c_str());
    return absl::InternalError(absl::StrCat("token shard '", prefix_, "': cannot serialise the index"));
  }
  const std::string tmp_index_path = absl::StrCat(prefix_, ".index.tmp-", ::getpid());
  absl::Status status = WriteFileSynced(tmp_index_path, text);
  // Tokens first, index last: a crash in between leaves a new .tokens beside an old (or no) .index,
  // which Open() refuses by size instead of silently mixing two shards.
  if (status.ok()) status = Rename(tmp_tokens_path_, prefix_ + ".tokens");
  if (status.ok()) status = Rename(tmp_index_path, prefix_ + ".index");
  if (status.ok()) status = SyncDirectory(DirectoryOf(prefix_));
  if (!status.ok()) {
    std::remove(tmp_tokens_path_.c_str());
    std::remove(tmp_index_path.c_str());
  }
  return status;
}

// ---------------------------------------------------------------------------------------------------
// Reader

TokenShard::TokenShard(TokenShard&& other) noexcept { *this = std::move(other); }

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    Unmap();
    prefix_ = std::move(other.prefix_);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
    document_starts_ = std::move(other.document_starts_);
    vocab_size_ = other.vocab_size_;
    end_of_document_id_ = other.end_of_document_id_;
    tokenizer_ = std::move(other.tokenizer_);
    tokenizer_fingerprint_ = std::move(other.tokenizer_fingerprint_);
  }
  return *this;
}

TokenShard::~TokenShard() { Unmap(); }

void TokenShard::Unmap() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
  mapping_ = nullptr;
  tokens_ = nullptr;
  mapping_bytes_ = 0;
}

absl::StatusOr<TokenShard> TokenShard::Open(const std::string& prefix, ShardValidation validation) {
  const std::string index_path = prefix + ".index";
  const std::string tokens_path = prefix + ".tokens";

  // --- The index.
  std::ifstream in(index_path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("token shard index '", index_path, "' cannot be opened: ",
                                            ErrnoText()));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read token shard index '", index_path, "'"));
  TokenShardIndex index;
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(buffer.str(), &index)) {
    return absl::DataLossError(absl::StrCat("'", index_path, "' is not a token shard index (",
                                            errors.error(), ")"));
  }
  if (index.magic() != kTokenShardMagic) {
    return absl::DataLossError(absl::StrCat("'", index_path, "' is not a token shard index: magic is \"",
                                            absl::CEscape(index.magic()), "\", expected \"", kTokenShardMagic,
                                            "\""));
  }
  if (index.version() != kTokenShardVersion) {
    return absl::FailedPreconditionError(absl::StrCat("'", index_path, "' has token shard version ",
                                                      index.version(), "; this build reads version ",
                                                      kTokenShardVersion));
  }
  const auto bad_index = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("token shard index '", index_path, "': ", what));
  };
  if (index.vocab_size() == 0) return bad_index("vocab_size must be > 0");
  if (index.end_of_document_id() >= index.vocab_size()) {
    return bad_index(absl::StrCat("end_of_document_id ", index.end_of_document_id(), " is not < vocab_size ",
                                  index.vocab_size()));
  }
  if (index.num_documents() != static_cast<uint64_t>(index.document_start_size())) {
    return bad_index(absl::StrCat("num_documents is ", index.num_documents(), " but ",
                                  index.document_start_size(), " document_start entries are listed"));
  }
  const uint64_t num_tokens = index.num_tokens();
  if (num_tokens > (uint64_t{1} << 61)) return bad_index(absl::StrCat("num_tokens ", num_tokens, " is absurd"));
  if ((num_tokens == 0) != (index.num_documents() == 0)) {
    return bad_index(absl::StrCat("num_tokens is ", num_tokens, " with ", index.num_documents(), " documents"));
  }
  for (int i = 0; i < index.document_start_size(); ++i) {
    const uint64_t start = index.document_start(i);
    const uint64_t expected_min = i == 0 ? 0 : index.document_start(i - 1) + 1;
    if ((i == 0 && start != 0) || start < expected_min || start >= num_tokens) {
      return bad_index(absl::StrCat("document_start[", i, "] = ", start,
                                    i == 0 ? " (the first document must start at 0)"
                                           : absl::StrCat(" does not follow document_start[", i - 1, "] = ",
                                                          index.document_start(i - 1)),
                                    " (num_tokens ", num_tokens, ")"));
    }
  }

  // --- The tokens: size check, then map.
  const int fd = ::open(tokens_path.c_str(), O_RDONLY);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("token file '", tokens_path, "' cannot be opened: ", ErrnoText()));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const std::string error = ErrnoText();
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat '", tokens_path, "': ", error));
  }
  const uint64_t expected_bytes = num_tokens * sizeof(uint32_t);
  const uint64_t actual_bytes = static_cast<uint64_t>(st.st_size);
  if (actual_bytes != expected_bytes) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(
        "token file '", tokens_path, "' is ", actual_bytes < expected_bytes ? "truncated" : "too long",
        ": expected ", expected_bytes, " bytes (", num_tokens, " tokens per '", index_path, "'), found ",
        actual_bytes, " bytes"));
  }

  TokenShard shard;
  shard.prefix_ = prefix;
  shard.num_tokens_ = static_cast<int64_t>(num_tokens);
  shard.vocab_size_ = index.vocab_size();
  shard.end_of_document_id_ = index.end_of_document_id();
  shard.tokenizer_ = index.tokenizer();
  shard.tokenizer_fingerprint_ = index.has_tokenizer_fingerprint() ? index.tokenizer_fingerprint() : "byte";
  shard.document_starts_.assign(index.document_start().begin(), index.document_start().end());
  if (num_tokens > 0) {
    void* mapping = ::mmap(nullptr, expected_bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (mapping == MAP_FAILED) {
      const std::string error = ErrnoText();
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot mmap '", tokens_path, "': ", error));
    }
    shard.mapping_ = mapping;
    shard.mapping_bytes_ = expected_bytes;
    shard.tokens_ = static_cast<const uint32_t*>(mapping);
  }
  ::close(fd);  // the mapping keeps the file alive

  // --- Token contents.
  const uint32_t eod = shard.end_of_document_id_;
  for (int64_t d = 0; d < shard.num_documents(); ++d) {
    const int64_t last = shard.document_end(d) - 1;
    if (shard.tokens_[last] != eod) {
      return absl::DataLossError(absl::StrCat("token file '", tokens_path, "': document ", d,
                                              " does not end with the end-of-document id ", eod, " (token ",
                                              last, " is ", shard.tokens_[last], ")"));
    }
  }
  if (validation == ShardValidation::kFull) {
    const uint32_t vocab = static_cast<uint32_t>(shard.vocab_size_);
    int64_t num_eod = 0;
    for (int64_t t = 0; t < shard.num_tokens_; ++t) {
      const uint32_t id = shard.tokens_[t];
      num_eod += id == eod;
      if (id >= vocab) {
        return absl::DataLossError(absl::StrCat("token file '", tokens_path, "': token ", t, " has id ", id,
                                                ", not < vocab_size ", vocab));
      }
    }
    if (num_eod != shard.num_documents()) {
      return absl::DataLossError(absl::StrCat("token file '", tokens_path, "' holds ", num_eod,
                                              " end-of-document ids but the index lists ",
                                              shard.num_documents(), " documents"));
    }
  }
  return shard;
}

}  // namespace moe::data
