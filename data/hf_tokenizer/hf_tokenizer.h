// Hugging Face `tokenizer.json` tokenizers (byte-level BPE: DeepSeek-V2/V3, Llama 3, Qwen2/3, GPT-2),
// encoding exactly as the Hugging Face `tokenizers` library does. See docs/tokenizers.md.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace moe::data::hf {

// `path`: a tokenizer.json file, or a directory holding tokenizer.json and optionally
// tokenizer_config.json (read for bos_token / eos_token / add_bos_token). Anything the pipeline does not
// support (WordPiece, Unigram, Metaspace, byte_fallback, ...) is refused with one line naming the field
// and its value.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path);

}  // namespace moe::data::hf
