// convert_checkpoint: native checkpoints (trainer/checkpoint.h) <-> Hugging Face DeepseekV3
// directories (docs/model.md, "Hugging Face checkpoints"). The direction follows --from:
//
//   native -> HF   convert_checkpoint --from=STEP_DIR --to=HF_DIR [--dtype=bf16|fp32] [--max_shard_mb=N]
//     config.json from the manifest's model; every tensor's FP32 master assembled from its pieces and
//     written as BF16 (default, round to nearest even: exactly the working weights of a BF16 run) or
//     F32; e_score_correction_bias always F32. Each multi-token-prediction module also gets the copies of
//     the embedding and head that official checkpoints carry under its layer (model.layers.N.embed_tokens,
//     .shared_head.head); --drop_mtp leaves the modules out (num_nextn_predict_layers 0), an inference-only
//     copy. Sharded with model.safetensors.index.json above
//     max_shard_mb (10^6 bytes; default 5000). The tokenizer stored in the checkpoint (tokenizer.json,
//     tokenizer_config.json; verified against the manifest) is copied into HF_DIR; a byte-level
//     checkpoint has none (stale tokenizer files in HF_DIR are removed).
//
//   HF -> native   convert_checkpoint --from=HF_DIR --to=CHECKPOINTS_ROOT [--config=TRAIN.textproto]
//                                    [--set key=value ...]
//     config.json must describe the train config's model (differences are listed and refused; without
//     --config a TrainConfig with the HF model and defaults is recorded). Weights are read by name
//     through HfTensorSource (FP8 block-scaled weights dequantised); a missing e_score_correction_bias
//     starts at zero with a warning. MTP modules are converted (their embedding/head copies checked
//     against the shared tensors, not stored) unless --drop_mtp, or a --config with fewer of them, drops
//     them with a warning. Writes
//     CHECKPOINTS_ROOT/step-00000000 as a 1-rank checkpoint with zero Adam moments and points
//     CHECKPOINTS_ROOT/latest at it: `train` with output_dir such that output_dir/checkpoints is
//     CHECKPOINTS_ROOT (or --resume_from=the step directory) starts from these weights, in any layout.
//     HF_DIR's tokenizer.json (+ tokenizer_config.json) is stored in the step directory (it must load);
//     without one, the --config's data.tokenizer if it sets one, else none (the byte tokenizer). A
//     data.tokenizer other than HF_DIR's own is refused.
//
// A STEP_DIR is recognised by its manifest and COMPLETE marker (a checkpoints root with `latest` is
// followed); an HF_DIR by its config.json.
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "model/model.h"
#include "trainer/checkpoint.h"
#include "trainer/init_from.h"
#include "trainer/stored_tokenizer.h"

ABSL_FLAG(std::string, from, "", "source: a native checkpoint step directory or a Hugging Face directory");
ABSL_FLAG(std::string, to, "",
          "destination: a Hugging Face directory (from native) or a checkpoints root (from HF)");
ABSL_FLAG(std::string, dtype, "bf16", "native -> HF: weight dtype, bf16 or fp32");
ABSL_FLAG(double, max_shard_mb, 5000, "native -> HF: shard above this many MB (10^6 bytes; fractions allowed)");
ABSL_FLAG(std::string, config, "",
          "HF -> native: the TrainConfig text proto to record; its model must match config.json");
ABSL_FLAG(bool, overwrite, false, "HF -> native: replace an existing complete step-00000000 directory");
ABSL_FLAG(bool, drop_mtp, false,
          "leave out the multi-token-prediction modules: an inference-only copy with num_nextn_predict_layers 0");

namespace moe {
namespace {

constexpr char kBiasSuffix[] = "e_score_correction_bias";

void Warn(const std::string& s) { std::fprintf(stderr, "warning: %s\n", s.c_str()); }

// "model.layers.10.x" sorts after "model.layers.9.x": digit runs compare as numbers.
bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string x = a.substr(i, ie - i), y = b.substr(j, je - j);
      if (x.size() != y.size()) return x.size() < y.size();  // no leading zeros in HF names
      if (x != y) return x < y;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

absl::Status NativeToHf(const std::string& from, const std::string& to) {
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype != "bf16" && dtype != "fp32") {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16 or fp32, got '", dtype, "'"));
  }
  const double shard_mb = absl::GetFlag(FLAGS_max_shard_mb);
  if (shard_mb <= 0) return absl::InvalidArgumentError("--max_shard_mb must be > 0");
  ASSIGN_OR_RETURN(const checkpoint::Manifest m, trainer::ReadManifest(from));

  config::ModelConfig mc = m.config().model();
  mc.set_torch_dtype(dtype == "bf16" ? "bfloat16" : "float32");
  const bool drop_mtp = absl::GetFlag(FLAGS_drop_mtp);
  std::vector<const checkpoint::TensorEntry*> entries;
  for (const auto& e : m.tensors()) {
    if (!drop_mtp || model::MtpDepthOf(mc, e.name()) == 0) entries.push_back(&e);
  }
  if (drop_mtp) mc.set_num_nextn_predict_layers(0);
  std::sort(entries.begin(), entries.end(),
            [](const auto* a, const auto* b) { return NaturalLess(a->name(), b->name()); });

  std::vector<std::vector<float>> values(entries.size());
  std::vector<hf::WriteTensor> tensors(entries.size());
  uint64_t bytes = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const checkpoint::TensorEntry& e = *entries[i];
    ASSIGN_OR_RETURN(values[i], trainer::ReadGlobalTensor(from, e, "master"));
    hf::WriteTensor& t = tensors[i];
    t.name = e.name();
    t.shape.assign(e.global_shape().begin(), e.global_shape().end());
    t.dtype = dtype == "fp32" || absl::EndsWith(e.name(), kBiasSuffix) ? hf::DType::kF32 : hf::DType::kBF16;
    t.data = values[i].data();
    bytes += values[i].size() * hf::DTypeSize(t.dtype);
  }
  const size_t own_tensors = tensors.size();
  model::AppendMtpSharedCopies(mc, &tensors);  // as official checkpoints carry them
  for (size_t i = own_tensors; i < tensors.size(); ++i) {
    uint64_t numel = 1;
    for (const int64_t dim : tensors[i].shape) numel *= static_cast<uint64_t>(dim);
    bytes += numel * hf::DTypeSize(tensors[i].dtype);
  }
  ASSIGN_OR_RETURN(const trainer::TokenizerFiles tokenizer, trainer::ReadStoredTokenizerFiles(from, m));
  RETURN_IF_ERROR(hf::WriteHfDirectory(to, config::ModelConfigToHfJson(mc), tensors,
                                       static_cast<uint64_t>(shard_mb * 1e6)));
  RETURN_IF_ERROR(trainer::WriteTokenizerFiles(to, tokenizer));
  std::printf("wrote %s: %zu tensors, %.1f MB (%s), tokenizer %s, from %s at step %lld\n", to.c_str(),
              tensors.size(), bytes / 1e6, dtype.c_str(), tokenizer.fingerprint.c_str(), from.c_str(),
              static_cast<long long>(m.step()));
  return absl::OkStatus();
}

// The model as config.json would state it (every field explicit), so that two spellings of one
// model compare equal.
absl::StatusOr<config::ModelConfig> Canonical(const config::ModelConfig& m) {
  return config::ModelConfigFromHfJson(config::ModelConfigToHfJson(m), "canonical form");
}

// Fields of ModelConfig that set up training (losses, initialisation, dropout) rather than say what
// the weights are: a train config may change them; the differences are only reported.
constexpr const char* kTrainingOnlyFields[] = {"aux_loss_alpha", "seq_aux", "bias_update_speed",
                                               "mtp_loss_weight", "initializer_range", "attention_dropout"};

// Refuses a train config whose model is not the HF directory's, listing the differences.
absl::Status CheckSameModel(config::ModelConfig hf_model, const config::ModelConfig& train_model,
                            const std::string& hf_source, const std::string& config_path) {
  using google::protobuf::util::MessageDifferencer;
  hf_model.set_torch_dtype(train_model.torch_dtype());  // a storage detail, not the model
  ASSIGN_OR_RETURN(const config::ModelConfig a, Canonical(hf_model));
  ASSIGN_OR_RETURN(const config::ModelConfig b, Canonical(train_model));
  std::string model_report, all_report;
  MessageDifferencer model_diff, all_diff;
  for (MessageDifferencer* d : {&model_diff, &all_diff}) d->set_message_field_comparison(MessageDifferencer::EQUIVALENT);
  model_diff.ReportDifferencesToString(&model_report);
  all_diff.ReportDifferencesToString(&all_report);
  for (const char* name : kTrainingOnlyFields) {
    const auto* field = config::ModelConfig::descriptor()->FindFieldByName(name);
    if (field != nullptr) model_diff.IgnoreField(field);
  }
  if (!model_diff.Compare(a, b)) {
    std::string listed;  // without the "ignored: <field>" lines
    for (absl::string_view line : absl::StrSplit(model_report, '\n', absl::SkipEmpty())) {
      if (!absl::StartsWith(line, "ignored:")) absl::StrAppend(&listed, line, "\n");
    }
    model_report = listed;
    return absl::FailedPreconditionError(absl::StrCat(hf_source, " and the model of ", config_path,
                                                      " differ (config.json -> train config):\n", model_report));
  }
  if (!all_diff.Compare(a, b)) {
    Warn(absl::StrCat("training settings of ", config_path, " differ from ", hf_source,
                      "; the train config's are recorded (config.json -> train config):\n", all_report));
  }
  return absl::OkStatus();
}

absl::Status HfToNative(const std::string& from, const std::string& to,
                        const std::vector<std::string>& overrides) {
  if (absl::GetFlag(FLAGS_dtype) != "bf16") Warn("--dtype applies to native -> HF only; ignored");
  const std::string step_dir = JoinPath(to, trainer::StepDirName(0));
  if (FileExists(JoinPath(step_dir, trainer::kCompleteMarker)) && !absl::GetFlag(FLAGS_overwrite)) {
    return absl::AlreadyExistsError(absl::StrCat(step_dir, " already holds a checkpoint; remove it or pass --overwrite"));
  }
  ASSIGN_OR_RETURN(hf::HfTensorSource source, hf::HfTensorSource::Open(from));
  ASSIGN_OR_RETURN(const std::string json, source.ReadConfigJson());
  const std::string json_path = JoinPath(from, hf::kConfigFile);
  ASSIGN_OR_RETURN(config::ModelConfig hf_model, config::ModelConfigFromHfJson(json, json_path));

  const std::string config_path = absl::GetFlag(FLAGS_config);
  config::TrainConfig cfg;
  if (!config_path.empty()) {
    ASSIGN_OR_RETURN(cfg, config::ResolveTrainConfig(config_path, overrides));
    if (absl::GetFlag(FLAGS_drop_mtp) && cfg.model().num_nextn_predict_layers() > 0) {
      return absl::InvalidArgumentError(absl::StrCat("--drop_mtp, but ", config_path, " trains ",
                                                     cfg.model().num_nextn_predict_layers(), " MTP module(s)"));
    }
  } else {
    if (!overrides.empty()) return absl::InvalidArgumentError("--set needs --config");
    cfg.set_name(absl::StrCat("converted from ", from));
    *cfg.mutable_model() = hf_model;
    if (absl::GetFlag(FLAGS_drop_mtp)) cfg.mutable_model()->set_num_nextn_predict_layers(0);
  }
  const int64_t mtp_layers = hf_model.num_nextn_predict_layers();
  if (mtp_layers > cfg.model().num_nextn_predict_layers()) {  // a model without (some) MTP modules
    Warn(absl::StrCat(from, " has ", mtp_layers, " multi-token-prediction module(s); ",
                      mtp_layers - cfg.model().num_nextn_predict_layers(), " are not converted"));
    hf_model.set_num_nextn_predict_layers(cfg.model().num_nextn_predict_layers());
  }
  if (!config_path.empty()) RETURN_IF_ERROR(CheckSameModel(hf_model, cfg.model(), json_path, config_path));
  // The tokenizer that travels with the weights: HF_DIR's, else the config's, else byte.
  ASSIGN_OR_RETURN(const std::unique_ptr<data::Tokenizer> tokenizer,
                   trainer::ResolveRunTokenizer(cfg, from, trainer::WeightsRole::kConvert));
  ASSIGN_OR_RETURN(const trainer::TokenizerFiles tokenizer_files, trainer::SnapshotTokenizerFiles(*tokenizer));

  // The parameter list (names, shapes, kinds) of a one-process model; its moments start at zero.
  kernels::CpuBackend ops(1);
  model::DeepseekV3Model net(cfg.model(), model::Numerics::kFp32, &ops, /*max_positions=*/1);
  std::vector<std::string> warnings;
  RETURN_IF_ERROR(model::LoadHfWeights(source, /*bf16=*/false, &net.params(), ops, &warnings));
  for (const std::string& w : warnings) Warn(w);

  ASSIGN_OR_RETURN(const trainer::SaveStats saved,
                   trainer::WriteSingleRankCheckpoint(to, cfg, net.params(), trainer::ResumeState{}, tokenizer_files));
  std::printf("wrote %s: %lld tensors, %.1f MB, 1-rank checkpoint at step 0 (zero Adam moments), tokenizer %s, "
              "from %s\n",
              saved.dir.c_str(), static_cast<long long>(net.params().size()), saved.bytes / 1e6,
              trainer::DescribeTokenizer(*tokenizer).c_str(), from.c_str());
  return absl::OkStatus();
}

absl::Status Run(const std::vector<std::string>& overrides) {
  const std::string from_flag = absl::GetFlag(FLAGS_from), to = absl::GetFlag(FLAGS_to);
  if (from_flag.empty() || to.empty()) return absl::InvalidArgumentError("--from and --to are required");
  ASSIGN_OR_RETURN(const std::string from, trainer::ResolveWeightsDir(from_flag));
  if (FileExists(JoinPath(from, trainer::kManifestFile))) {
    if (!absl::GetFlag(FLAGS_config).empty() || !overrides.empty()) {
      return absl::InvalidArgumentError("--config and --set apply to HF -> native only");
    }
    return NativeToHf(from, to);  // ReadManifest refuses a directory without COMPLETE
  }
  if (FileExists(JoinPath(from, hf::kConfigFile))) return HfToNative(from, to, overrides);
  return absl::InvalidArgumentError(absl::StrCat(
      "--from=", from_flag, " is neither a native checkpoint (no ", trainer::kManifestFile,
      ") nor a Hugging Face directory (no ", hf::kConfigFile, ")"));
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::config::SplitArgs args = moe::config::SplitSetFlags(argc, argv);
  absl::ParseCommandLine(args.argc(), args.rest.data());
  const std::vector<std::string>& overrides = args.overrides;
  const absl::Status status = moe::Run(overrides);
  if (!status.ok()) {
    std::fprintf(stderr, "convert_checkpoint: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
