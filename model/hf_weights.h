// Loading a Hugging Face DeepseekV3 directory's tensors into the model's parameters, by HF name
// (no permutation: the model implements the checkpoint's interleaved RoPE layout, spec §4.2, §12.1).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/hf/hf_checkpoint.h"
#include "model/params.h"

namespace moe::model {

// Fills master (and working, rounded when bf16) of every parameter from `source`, taking this rank's
// slice of tensor-parallel tensors and only this rank's experts. A missing or
// mis-shaped tensor is an error naming it; a missing e_score_correction_bias starts at zero with a
// warning; tensors the model does not use (MTP layers, copies) are reported in `warnings`.
absl::Status LoadHfWeights(const hf::HfTensorSource& source, bool bf16, ParamStore* params,
                           std::vector<std::string>* warnings);

}  // namespace moe::model
