// The tokenizer travels with the model: which tokenizer weights were trained with is stored beside them
// (tokenizer.json + tokenizer_config.json in a checkpoint step directory or a Hugging Face directory;
// nothing for the byte tokenizer), and the trainer and the tools read it back from there.
//
//   train       the run tokenizer: data.tokenizer when set, else the one stored with the weights the
//               run starts from (the checkpoint it resumes, or --init_from), else byte. A data.tokenizer
//               other than the stored one is refused. Its files are read into memory once and written
//               into every checkpoint and the --export_hf directory.
//   tools       generate and eval_long: --tokenizer when given, else the one stored with the weights,
//               else byte.
//   conversion  convert_checkpoint copies the files both ways (native <-> Hugging Face).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "data/tokenizer.h"
#include "trainer/checkpoint.h"

namespace moe::trainer {

// Reads `tokenizer`'s files() into memory under the names they get beside weights: tokenizer_config.json
// keeps its name, the tokenizer.json (whatever its own name) becomes tokenizer.json. None for the byte
// tokenizer.
absl::StatusOr<TokenizerFiles> SnapshotTokenizerFiles(const data::Tokenizer& tokenizer);

// The tokenizer stored with the weights in `dir`:
//   - a native checkpoint step directory (manifest): its stored files, verified against the manifest
//     (size, CRC32C) and loaded, their fingerprint checked against the manifest's; the byte tokenizer
//     when it stores none (also every checkpoint written before tokenizers were stored);
//   - a Hugging Face directory (config.json): its tokenizer.json (+ tokenizer_config.json), or nullptr
//     when it has none (it says nothing about its tokenizer).
// Errors name the file.
absl::StatusOr<std::unique_ptr<data::Tokenizer>> LoadStoredTokenizer(const std::string& dir);

// What tools encode and decode with for the weights in `dir` (a step or Hugging Face directory).
struct ModelTokenizer {
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::string source;       // "--tokenizer", "stored with the model" or "default (none stored)"
  bool by_default = false;  // neither given nor stored: the byte tokenizer by default
};
// `override_spec` (a --tokenizer flag: "byte" or a path) when non-empty, else LoadStoredTokenizer(dir),
// else the byte tokenizer.
absl::StatusOr<ModelTokenizer> LoadModelTokenizer(const std::string& dir, const std::string& override_spec);

// Where the weights of a run come from (for the wording of ResolveRunTokenizer's errors).
enum class WeightsRole {
  kResume,    // the checkpoint a run resumes
  kInitFrom,  // train --init_from
  kConvert,   // convert_checkpoint HF -> native with a --config
};

// The run tokenizer of a training job (or of a converted checkpoint) whose weights come from
// `weights_dir` ("" for a fresh run): data.tokenizer when set, refused when `weights_dir` stores
// another tokenizer; else the one stored there; else byte.
absl::StatusOr<std::unique_ptr<data::Tokenizer>> ResolveRunTokenizer(const config::TrainConfig& cfg,
                                                                      const std::string& weights_dir,
                                                                      WeightsRole role);

// For logs: "byte (vocabulary 257)", or "NAME (FINGERPRINT, vocabulary N)".
std::string DescribeTokenizer(const data::Tokenizer& tokenizer);

}  // namespace moe::trainer
