// `train --init_from=DIR`: start a fresh run (new optimizer state, step 0) from the weights of a
// Hugging Face directory or of a native checkpoint step directory. The architecture must match the
// config; what a fine-tune may change (RoPE scaling and maximum length for context extension,
// training-only keys such as the balance-loss weight) is allowed to differ.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "model/params.h"

namespace moe::trainer {

// The one way every tool finds a model's weights: `dir` may be a Hugging Face directory (config.json), a
// checkpoint step directory (manifest), a checkpoints root (its `latest`) or a run's output directory
// (its checkpoints/latest). Returns the HF or step directory; an error names what was looked for.
absl::StatusOr<std::string> ResolveWeightsDir(const std::string& dir);
// The model config of a directory ResolveWeightsDir returned: the manifest's, or config.json's.
absl::StatusOr<config::ModelConfig> WeightsModelConfig(const std::string& dir);

// Fills every parameter's master (this rank's slices) and working copy from `dir` (a directory
// ResolveWeightsDir returned); `ops` is the backend whose memory holds them.
absl::Status InitWeightsFrom(const std::string& dir, const config::ModelConfig& target, bool bf16,
                             model::ParamStore* params, kernels::Backend& ops, std::vector<std::string>* warnings);

}  // namespace moe::trainer
