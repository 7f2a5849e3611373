// `train --init_from=DIR`: start a fresh run (new optimizer state, step 0) from the weights of a
// Hugging Face directory or of a native checkpoint step directory. The architecture must match the
// config; what a fine-tune may change (RoPE scaling and maximum length for context extension,
// training-only keys such as the balance-loss weight) is allowed to differ.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "configs/config.pb.h"
#include "model/params.h"

namespace moe::trainer {

// Fills every parameter's master (this rank's slices) and working copy from `dir`.
absl::Status InitWeightsFrom(const std::string& dir, const config::ModelConfig& target, bool bf16,
                             model::ParamStore* params, std::vector<std::string>* warnings);

}  // namespace moe::trainer
