// Picks a tokenizer from a spec string (a config key or a --tokenizer flag).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/tokenizer.h"

namespace moe::data {

// "byte" or "" -> the byte tokenizer. Otherwise a path: a tokenizer.json file, or a directory holding
// tokenizer.json (and optionally tokenizer_config.json). Errors name the file and the unsupported
// field and value.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(absl::string_view spec);

}  // namespace moe::data
