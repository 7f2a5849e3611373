// Reading, overriding and validating run configs (configs/config.proto), and converting the model block to
// and from a Hugging Face config.json. Every error names the file and the field, so a bad config fails with
// one clear line before any rank allocates memory. Validation lives here, in one place
// (docs/architecture.md "Configuration": one proto per subsystem, validated in one place); the trainer
// calls ResolveTrainConfig and nothing else.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "configs/config.pb.h"

namespace moe::config {

// Parses a protobuf text-format TrainConfig. Syntax errors and unknown fields are refused with
// "<path>:<line>:<column>: <what>" (and a "did you mean" for a misspelt field name). Does not validate.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path);

// Applies one "dotted.path=value" assignment (a --set flag) through protobuf reflection:
//   optimizer.lr=3e-4   model.rope_scaling.factor=8   precision=FP32   parallel.ep=4
//   model.q_lora_rank=null (clears the field; also works for messages: model.rope_scaling=null)
//   model.architectures=A,B (a repeated field is replaced by the comma-separated list)
// Intermediate messages are created as needed; enums by name; bools true/false. Unknown path components and
// unparsable values are refused naming the component, the message type and the assignment.
absl::Status ApplyOverride(TrainConfig* cfg, absl::string_view assignment);

// Checks the model block (the refusals of docs/model.md "config.json keys" and the shape rules); errors
// name fields as "model.<field>". All problems are reported at once, joined by "; ".
absl::Status ValidateModelConfig(const ModelConfig& m);

// Checks the whole run: the model, the batch, optimizer and schedule ranges, the parallel layout against
// the model (e.g. "model.n_routed_experts (64) is not divisible by parallel.ep (3)"), and that
// data.tokenizer, when set, is "byte" or names a tokenizer.json (file or directory; its contents are
// checked when the run loads it). All problems at once.
absl::Status ValidateTrainConfig(const TrainConfig& cfg);

// LoadTrainConfig + ApplyOverride for each assignment in order + ValidateTrainConfig; every error is
// prefixed with the config path. What the `train` binary and the tools call.
absl::StatusOr<TrainConfig> ResolveTrainConfig(const std::string& path,
                                               const std::vector<std::string>& overrides);

// Parses a Hugging Face config.json (text) into a ModelConfig: unknown keys (quantization_config, auto_map,
// ...) are ignored, `null` leaves a field unset (q_lora_rank null -> single q_proj), newer HF spellings are
// mapped (`rope_parameters` -> rope_scaling and rope_theta, `dtype` -> torch_dtype, a list-valued
// bos/eos_token_id -> its first id). Then ValidateModelConfig, plus the rule of docs/model.md "YaRN" that a
// YaRN factor must equal max_position_embeddings / original_max_position_embeddings. Errors are prefixed
// with `source_name`.
absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const std::string& json_text,
                                                  const std::string& source_name);

// Reads the file at `path` and calls ModelConfigFromHfJson with the path as the source name.
absl::StatusOr<ModelConfig> LoadHfConfigJson(const std::string& path);

// Writes a config.json for `m` (2-space indent, HF key names, every field with its effective value so that
// HF's own defaults never apply; q_lora_rank/n_routed_experts/rope_scaling null when unset; architectures
// defaults to DeepseekV3ForCausalLM, or DeepseekV2ForCausalLM for model_type deepseek_v2).
std::string ModelConfigToHfJson(const ModelConfig& m);

// Splits a command line into the repeatable `--set a.b=v` / `--set a.b=v` overrides (in order) and
// everything else (argv[0] first, then a terminating nullptr, as MPI_Init and absl expect). absl's
// vector<string> flags split on commas and keep only the last occurrence, hence this.
struct SplitArgs {
  std::vector<std::string> overrides;
  std::vector<char*> rest;  // rest.size() - 1 arguments, rest.back() == nullptr
  int argc() const { return static_cast<int>(rest.size()) - 1; }
};
SplitArgs SplitSetFlags(int argc, char** argv);

// Refuses two model configs whose parameters or routing differ (unset fields count as their
// defaults), naming the fields. What a fine-tune or resume may change is ignored: RoPE scaling and
// maximum length (context extension), rope_theta, and keys that do not shape the parameters:
// aux_loss_alpha, seq_aux, bias_update_speed, mtp_loss_weight, initializer_range, torch_dtype,
// architectures, bos/eos/pad token ids, num_nextn_predict_layers (MTP depth) and attention_dropout.
absl::Status CheckSameArchitecture(const ModelConfig& source, const ModelConfig& target,
                                   const std::string& source_name);

// The RoPE scaling type in effect: "yarn", "linear" or "none" (absent block, or type "none"/"default").
// `type` and `rope_type` are synonyms; when both are given they must agree (ValidateModelConfig checks).
std::string EffectiveRopeScalingType(const ModelConfig& m);

}  // namespace moe::config
