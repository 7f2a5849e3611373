#include "trainer/init_from.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "trainer/checkpoint.h"

namespace moe::trainer {

absl::StatusOr<std::string> ResolveWeightsDir(const std::string& dir) {
  if (FileExists(JoinPath(dir, kManifestFile)) || FileExists(JoinPath(dir, hf::kConfigFile))) return dir;
  for (const std::string& root : {dir, JoinPath(dir, "checkpoints")}) {
    const std::string latest = JoinPath(root, "latest");
    if (!FileExists(latest)) continue;
    ASSIGN_OR_RETURN(const std::string name, ReadFileToString(latest));
    return JoinPath(root, std::string(absl::StripTrailingAsciiWhitespace(name)));
  }
  return absl::NotFoundError(absl::StrCat(
      dir, " is neither a Hugging Face directory (config.json), a checkpoint step directory (manifest), a "
      "checkpoints root (latest) nor a run directory (checkpoints/latest)"));
}

absl::StatusOr<config::ModelConfig> WeightsModelConfig(const std::string& dir) {
  if (FileExists(JoinPath(dir, kManifestFile))) {
    ASSIGN_OR_RETURN(const checkpoint::Manifest m, ReadManifest(dir));
    return m.config().model();
  }
  return config::LoadHfConfigJson(JoinPath(dir, hf::kConfigFile));
}

absl::Status InitWeightsFrom(const std::string& dir, const config::ModelConfig& target, bool bf16,
                             model::ParamStore* params, kernels::Backend& ops, std::vector<std::string>* warnings) {
  if (FileExists(JoinPath(dir, kManifestFile))) {  // a native checkpoint step directory
    ASSIGN_OR_RETURN(const checkpoint::Manifest m, ReadManifest(dir));
    RETURN_IF_ERROR(config::CheckSameArchitecture(m.config().model(), target, dir));
    absl::Status status;
    for (const auto& entry : m.tensors()) {
      model::Param* p = params->Find(entry.name());
      if (p == nullptr) continue;  // another EP rank's expert
      auto values = ReadGlobalTensor(dir, entry, "master");
      if (!values.ok()) return values.status();
      p->SetMasterFromGlobal(*values, ops);
    }
    // MTP modules the checkpoint was trained without keep their seeded initialisation.
    const int64_t source_mtp = m.config().model().num_nextn_predict_layers();
    if (target.num_nextn_predict_layers() > source_mtp) {
      warnings->push_back(absl::StrCat("multi-token-prediction module(s) ", source_mtp + 1, "..",
                                       target.num_nextn_predict_layers(), " are not in ", dir,
                                       "; they start from the seeded initialisation"));
    }
    params->ForEach([&](model::Param& p) {
      bool found = false;
      for (const auto& entry : m.tensors()) found = found || entry.name() == p.name;
      const bool new_module = model::MtpDepthOf(target, p.name) > source_mtp;
      if (!found && !new_module && status.ok()) {
        status = absl::NotFoundError(absl::StrCat("checkpoint ", dir, " has no tensor ", p.name));
      }
    });
    RETURN_IF_ERROR(status);
    params->RefreshWorking(bf16, ops);
    return absl::OkStatus();
  }
  if (FileExists(JoinPath(dir, hf::kConfigFile))) {  // a Hugging Face directory
    ASSIGN_OR_RETURN(hf::HfTensorSource source, hf::HfTensorSource::Open(dir));
    ASSIGN_OR_RETURN(const std::string text, source.ReadConfigJson());
    ASSIGN_OR_RETURN(const config::ModelConfig hf_model,
                     config::ModelConfigFromHfJson(text, JoinPath(dir, hf::kConfigFile)));
    RETURN_IF_ERROR(config::CheckSameArchitecture(hf_model, target, dir));
    return model::LoadHfWeights(source, bf16, params, ops, warnings, /*keep_missing_mtp=*/true);
  }
  return absl::NotFoundError(absl::StrCat("--init_from=", dir, " is neither a native checkpoint step directory (",
                                          kManifestFile, ") nor a Hugging Face directory (", hf::kConfigFile, ")"));
}

}  // namespace moe::trainer
