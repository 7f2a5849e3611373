#include "trainer/init_from.h"

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "trainer/checkpoint.h"

namespace moe::trainer {

absl::Status InitWeightsFrom(const std::string& dir, const config::ModelConfig& target, bool bf16,
                             model::ParamStore* params, std::vector<std::string>* warnings) {
  if (FileExists(JoinPath(dir, kManifestFile))) {  // a native checkpoint step directory
    ASSIGN_OR_RETURN(const checkpoint::Manifest m, ReadManifest(dir));
    RETURN_IF_ERROR(config::CheckSameArchitecture(m.config().model(), target, dir));
    absl::Status status;
    for (const auto& entry : m.tensors()) {
      model::Param* p = params->Find(entry.name());
      if (p == nullptr) continue;  // another EP rank's expert
      auto values = ReadGlobalTensor(dir, entry, "master");
      if (!values.ok()) return values.status();
      p->SetMasterFromGlobal(*values);
    }
    params->ForEach([&](model::Param& p) {
      bool found = false;
      for (const auto& entry : m.tensors()) found = found || entry.name() == p.name;
      if (!found && status.ok()) {
        status = absl::NotFoundError(absl::StrCat("checkpoint ", dir, " has no tensor ", p.name));
      }
    });
    RETURN_IF_ERROR(status);
    params->RefreshWorking(bf16);
    return absl::OkStatus();
  }
  if (FileExists(JoinPath(dir, hf::kConfigFile))) {  // a Hugging Face directory
    ASSIGN_OR_RETURN(hf::HfTensorSource source, hf::HfTensorSource::Open(dir));
    ASSIGN_OR_RETURN(const std::string text, source.ReadConfigJson());
    ASSIGN_OR_RETURN(const config::ModelConfig hf_model,
                     config::ModelConfigFromHfJson(text, JoinPath(dir, hf::kConfigFile)));
    RETURN_IF_ERROR(config::CheckSameArchitecture(hf_model, target, dir));
    return model::LoadHfWeights(source, bf16, params, warnings);
  }
  return absl::NotFoundError(absl::StrCat("--init_from=", dir, " is neither a native checkpoint step directory (",
                                          kManifestFile, ") nor a Hugging Face directory (", hf::kConfigFile, ")"));
}

}  // namespace moe::trainer
