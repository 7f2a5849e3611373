// Loading a Hugging Face DeepseekV3 directory's tensors into the model's parameters, by HF name
// (no permutation: the model implements the checkpoint's interleaved RoPE layout, docs/model.md "RoPE on
// interleaved pairs" and "Decisions where sources differ" (1)).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "configs/config.pb.h"
#include "model/hf/hf_checkpoint.h"
#include "model/params.h"

namespace moe::model {

// Fills master (and working, rounded when bf16) of every parameter from `source`, taking this rank's
// slice of tensor-parallel tensors and only this rank's experts. A missing or
// mis-shaped tensor is an error naming it; a missing e_score_correction_bias starts at zero with a
// warning; tensors the model does not use (MTP layers of a model configured without them) are
// reported in `warnings`. The MTP modules' copies of the shared embedding and head (MtpSharedCopies)
// are not loaded: the shared tensors are used, and a copy that differs from them is reported.
// With keep_missing_mtp, an MTP module the source does not have (a checkpoint trained without
// multi-token prediction, or with fewer modules) keeps the values `params` hold (their seeded
// initialisation), with a warning, instead of being an error.
// `ops` is the backend whose memory holds the parameters (the working copies are refreshed by it).
absl::Status LoadHfWeights(const hf::HfTensorSource& source, bool bf16, ParamStore* params, kernels::Backend& ops,
                           std::vector<std::string>* warnings, bool keep_missing_mtp = false);

// Hugging Face checkpoints store, under each MTP module's layer (L + k - 1), copies of the tensors
// the module shares with the main model: {copy name, shared name} for
// model.layers.N.embed_tokens.weight (of model.embed_tokens.weight) and
// model.layers.N.shared_head.head.weight (of lm_head.weight).
std::vector<std::pair<std::string, std::string>> MtpSharedCopies(const config::ModelConfig& m);

// Appends those copies to a list of tensors to write, pointing at the shared tensors' data (which
// must be in the list).
void AppendMtpSharedCopies(const config::ModelConfig& m, std::vector<hf::WriteTensor>* tensors);

// k (1-based) if `name` is a tensor of MTP module k (layer index num_hidden_layers + k - 1), else 0.
int64_t MtpDepthOf(const config::ModelConfig& m, const std::string& name);

}  // namespace moe::model
