// See load_tokenizer.h.
#include "data/load_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "data/byte_tokenizer.h"
#include "data/hf_tokenizer/hf_tokenizer.h"

namespace moe::data {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(absl::string_view spec) {
  if (spec.empty() || spec == "byte") return std::make_unique<ByteTokenizer>();
  return hf::LoadHfTokenizer(std::string(spec));
}

}  // namespace moe::data
