#include "trainer/stored_tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/status.h"
#include "data/byte_tokenizer.h"
#include "data/load_tokenizer.h"
#include "model/hf/hf_checkpoint.h"

namespace moe::trainer {
namespace {

absl::Status Prefixed(const absl::Status& s, absl::string_view prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

}  // namespace

absl::StatusOr<TokenizerFiles> SnapshotTokenizerFiles(const data::Tokenizer& tokenizer) {
  TokenizerFiles out;
  out.fingerprint = tokenizer.fingerprint();
  for (const std::string& path : tokenizer.files()) {
    const std::string base = std::filesystem::path(path).filename().string();
    const std::string name = base == kTokenizerConfigFile ? kTokenizerConfigFile : kTokenizerFile;
    for (const auto& f : out.files) {
      if (f.first == name) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer ", tokenizer.name(), " lists two files that would "
                                                       "both be stored as ", name, " (the second is ", path, ")"));
      }
    }
    ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path));
    out.files.emplace_back(name, std::move(contents));
  }
  if (out.fingerprint != kByteFingerprint && out.files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer ", tokenizer.name(), " (", out.fingerprint, ") names no files to store"));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<data::Tokenizer>> LoadStoredTokenizer(const std::string& dir) {
  if (FileExists(JoinPath(dir, kManifestFile))) {
    ASSIGN_OR_RETURN(const checkpoint::Manifest m, ReadManifest(dir));  // verifies the stored files
    const std::string fingerprint = TokenizerFingerprint(m);
    if (fingerprint == kByteFingerprint) return std::unique_ptr<data::Tokenizer>(new data::ByteTokenizer());
    bool has_json = false;
    for (const auto& f : m.files()) has_json = has_json || f.name() == kTokenizerFile;
    if (!has_json) {
      return absl::DataLossError(absl::StrCat("checkpoint ", dir, " records tokenizer ", fingerprint,
                                              " but stores no ", kTokenizerFile));
    }
    auto loaded = data::LoadTokenizer(dir);
    if (!loaded.ok()) return Prefixed(loaded.status(), absl::StrCat("the tokenizer stored in ", dir, ": "));
    if ((*loaded)->fingerprint() != fingerprint) {
      return absl::DataLossError(absl::StrCat(JoinPath(dir, kTokenizerFile), " has fingerprint ",
                                              (*loaded)->fingerprint(), ", the manifest records ", fingerprint,
                                              ": the checkpoint is corrupt"));
    }
    return std::move(*loaded);
  }
  if (FileExists(JoinPath(dir, hf::kConfigFile))) {
    if (!FileExists(JoinPath(dir, kTokenizerFile))) return std::unique_ptr<data::Tokenizer>();
    auto loaded = data::LoadTokenizer(dir);
    if (!loaded.ok()) return Prefixed(loaded.status(), absl::StrCat("the tokenizer stored in ", dir, ": "));
    return std::move(*loaded);
  }
  return absl::NotFoundError(absl::StrCat(dir, " is neither a native checkpoint step directory (", kManifestFile,
                                          ") nor a Hugging Face directory (", hf::kConfigFile, ")"));
}

absl::StatusOr<ModelTokenizer> LoadModelTokenizer(const std::string& dir, const std::string& override_spec) {
  ModelTokenizer out;
  if (!override_spec.empty()) {
    auto loaded = data::LoadTokenizer(override_spec);
    if (!loaded.ok()) return Prefixed(loaded.status(), absl::StrCat("--tokenizer=", override_spec, ": "));
    out.tokenizer = std::move(*loaded);
    out.source = "--tokenizer";
    return out;
  }
  ASSIGN_OR_RETURN(out.tokenizer, LoadStoredTokenizer(dir));
  if (out.tokenizer != nullptr) {
    out.source = "stored with the model";
    return out;
  }
  out.tokenizer = std::make_unique<data::ByteTokenizer>();
  out.source = "default (none stored)";
  out.by_default = true;
  return out;
}

absl::StatusOr<std::unique_ptr<data::Tokenizer>> ResolveRunTokenizer(const config::TrainConfig& cfg,
                                                                      const std::string& weights_dir,
                                                                      WeightsRole role) {
  std::unique_ptr<data::Tokenizer> stored;
  if (!weights_dir.empty()) {
    auto loaded = LoadStoredTokenizer(weights_dir);
    if (!loaded.ok()) return role == WeightsRole::kInitFrom ? Prefixed(loaded.status(), "--init_from: ") : loaded.status();
    stored = std::move(*loaded);
  }
  if (!cfg.data().has_tokenizer()) {
    if (stored != nullptr) return stored;
    return std::unique_ptr<data::Tokenizer>(new data::ByteTokenizer());
  }
  const std::string& spec = cfg.data().tokenizer();
  auto configured = data::LoadTokenizer(spec);
  if (!configured.ok()) {
    return Prefixed(configured.status(), absl::StrCat("data.tokenizer (\"", spec, "\") does not load: "));
  }
  if (stored != nullptr && stored->fingerprint() != (*configured)->fingerprint()) {
    const std::string both = absl::StrCat("tokenizer ", stored->fingerprint(), " (", stored->name(),
                                          "), but data.tokenizer (\"", spec, "\") is ",
                                          (*configured)->fingerprint());
    switch (role) {
      case WeightsRole::kResume:
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot resume from ", weights_dir, ": it was trained with ", both,
            "; a run keeps its tokenizer: set data.tokenizer to the checkpoint's (or leave it unset to use the "
            "one stored in the checkpoint), or start a new output_dir"));
      case WeightsRole::kInitFrom:
        return absl::FailedPreconditionError(absl::StrCat(
            "--init_from=", weights_dir, " holds weights for ", both,
            "; leave data.tokenizer unset to train with the tokenizer stored there, or set it to that tokenizer"));
      case WeightsRole::kConvert:
        return absl::FailedPreconditionError(absl::StrCat(
            weights_dir, " holds weights for ", both,
            "; leave data.tokenizer unset in the --config to keep the directory's tokenizer, or set it to that "
            "tokenizer"));
    }
  }
  return std::move(*configured);
}

std::string DescribeTokenizer(const data::Tokenizer& tokenizer) {
  if (tokenizer.fingerprint() == kByteFingerprint) {
    return absl::StrCat("byte (vocabulary ", tokenizer.vocab_size(), ")");
  }
  return absl::StrCat(tokenizer.name(), " (", tokenizer.fingerprint(), ", vocabulary ", tokenizer.vocab_size(), ")");
}

}  // namespace moe::trainer
