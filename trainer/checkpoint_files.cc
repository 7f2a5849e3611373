// The files a checkpoint stores besides tensors (the tokenizer's): verification against the manifest,
// reading them back, writing them into a directory.
#include <string>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "base/file_util.h"
#include "base/status.h"
#include "trainer/checkpoint.h"

namespace moe::trainer {

using checkpoint::Manifest;

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

absl::Status VerifyStoredFile(const std::string& step_dir, const checkpoint::StoredFile& file) {
  if (!IsPlainFileName(file.name())) {
    return absl::DataLossError(absl::StrCat(step_dir, "/manifest lists a stored file named '", file.name(),
                                            "', which is not a file name: the checkpoint is corrupt"));
  }
  const std::string path = JoinPath(step_dir, file.name());
  if (!FileExists(path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint file ", path, " is missing (listed in the manifest)"));
  }
  ASSIGN_OR_RETURN(const std::string contents, ReadFileToString(path));
  if (contents.size() != file.size()) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", path, " has ", contents.size(),
                                            " bytes, the manifest records ", file.size(), ": the checkpoint is corrupt"));
  }
  if (Crc32c(contents.data(), contents.size()) != file.crc32c()) {
    return absl::DataLossError(absl::StrCat("CRC32C mismatch in checkpoint file ", path,
                                            ": the checkpoint is corrupt"));
  }
  return absl::OkStatus();
}

std::string TokenizerFingerprint(const Manifest& m) {
  return m.has_tokenizer_fingerprint() ? m.tokenizer_fingerprint() : std::string(kByteFingerprint);
}

absl::StatusOr<TokenizerFiles> ReadStoredTokenizerFiles(const std::string& step_dir, const Manifest& m) {
  TokenizerFiles out;
  out.fingerprint = TokenizerFingerprint(m);
  for (const checkpoint::StoredFile& f : m.files()) {
    RETURN_IF_ERROR(VerifyStoredFile(step_dir, f));
    ASSIGN_OR_RETURN(std::string contents, ReadFileToString(JoinPath(step_dir, f.name())));
    out.files.emplace_back(f.name(), std::move(contents));
  }
  return out;
}

absl::Status WriteTokenizerFiles(const std::string& dir, const TokenizerFiles& tokenizer) {
  RETURN_IF_ERROR(MakeDirs(dir));
  for (const char* stale : {kTokenizerFile, kTokenizerConfigFile}) {
    bool kept = false;
    for (const auto& f : tokenizer.files) kept = kept || f.first == stale;
    if (!kept) RETURN_IF_ERROR(RemoveIfExists(JoinPath(dir, stale)));
  }
  for (const auto& [name, contents] : tokenizer.files) {
    if (!IsPlainFileName(name)) return absl::InvalidArgumentError(absl::StrCat("bad tokenizer file name '", name, "'"));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, name), contents));
  }
  return absl::OkStatus();
}

}  // namespace moe::trainer
