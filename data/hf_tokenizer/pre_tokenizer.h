// tokenizer.json pre-tokenizers: Split (regex or literal, every behavior, invert), ByteLevel (with or
// without its GPT-2 regex, add_prefix_space), Digits, and Sequence of them. Each step maps every current
// piece to sub-pieces; empty pieces are dropped, as Hugging Face's PreTokenizedString::split does.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/hf_tokenizer/regex.h"

namespace moe::data::hf {

// What happens to the matched delimiters of a Split (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kDigits };
  Kind kind = Kind::kSplit;
  Regex regex;                          // kSplit: the pattern
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;                  // kSplit
  bool add_prefix_space = false;        // kByteLevel
  bool use_regex = true;                // kByteLevel
  bool individual_digits = false;       // kDigits
};

class PreTokenizer {
 public:
  PreTokenizer() = default;  // pre_tokenizer: null (the whole text is one piece)
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {}

  // Appends the pieces of `text` (one normalized split) to `out`.
  void Apply(absl::string_view text, std::vector<std::string>* out) const;

 private:
  std::vector<PreTokenizerStep> steps_;
};

// The ByteLevel step's regex (GPT-2's), and its byte -> printable character map: byte b becomes the
// UTF-8 string ByteToUnicode()[b].
const Regex& ByteLevelRegex();
const std::vector<std::string>& ByteToUnicode();
// The inverse map for decoding: the byte of a mapped character, or -1 for other characters.
int UnicodeToByte(char32_t c);

}  // namespace moe::data::hf
