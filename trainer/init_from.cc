#include "trainer/init_from.h"

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "trainer/checkpoint.h"

namespace moe::trainer {

absl::Status CheckSameArchitecture(const config::ModelConfig& source, const config::ModelConfig& target,
                                   const std::string& source_name) {
  google::protobuf::util::MessageDifferencer diff;
  const auto* d = config::ModelConfig::descriptor();
  for (const char* field : {"rope_scaling", "max_position_embeddings", "rope_theta", "aux_loss_alpha",
                            "seq_aux", "bias_update_speed", "mtp_loss_weight", "torch_dtype", "architectures",
                            "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id",
                            "num_nextn_predict_layers", "attention_dropout"}) {
    diff.IgnoreField(d->FindFieldByName(field));
  }
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (diff.Compare(source, target)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      source_name, " holds a model of another architecture than the config (source vs config):\n", report));
}

absl::Status InitWeightsFrom(const std::string& dir, const config::ModelConfig& target, bool bf16,
                             model::ParamStore* params, std::vector<std::string>* warnings) {
  if (FileExists(JoinPath(dir, kManifestFile))) {  // a native checkpoint step directory
    ASSIGN_OR_RETURN(const checkpoint::Manifest m, ReadManifest(dir));
    RETURN_IF_ERROR(CheckSameArchitecture(m.config().model(), target, dir));
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
    RETURN_IF_ERROR(CheckSameArchitecture(hf_model, target, dir));
    return model::LoadHfWeights(source, bf16, params, warnings);
  }
  return absl::NotFoundError(absl::StrCat("--init_from=", dir, " is neither a native checkpoint step directory (",
                                          kManifestFile, ") nor a Hugging Face directory (", hf::kConfigFile, ")"));
}

}  // namespace moe::trainer
