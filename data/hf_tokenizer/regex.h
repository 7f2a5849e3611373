// The regular expressions of tokenizer.json (Split and ByteLevel pre-tokenizers), on PCRE2 with JIT.
//
// Hugging Face compiles these patterns with Oniguruma, whose Unicode meaning of a few escapes differs
// from PCRE2's: Compile() rewrites them so that PCRE2 matches what Oniguruma matches
//   \s \S  -> \p{White_Space} \P{White_Space}  (PCRE2's \s also takes U+180E)
//   \w \W  -> letters, marks, numbers, connector punctuation (PCRE2's \w lacks marks)
//   \h \H  -> hexadecimal digit (PCRE2: horizontal space)
// and compiles with Unicode properties (UCP) and multi-line anchors, Oniguruma's defaults.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::data::hf {

class Regex {
 public:
  // An Oniguruma-syntax pattern, as in {"Regex": "..."}.
  static absl::StatusOr<Regex> Compile(absl::string_view pattern);
  // A literal string, as in {"String": "..."}.
  static absl::StatusOr<Regex> Literal(absl::string_view text);

  // The [begin, end) byte ranges of the successive non-overlapping matches in `text` (valid UTF-8), as
  // Oniguruma's find_iter reports them: after an empty match the search moves on one character, and an
  // empty match right where the previous match ended is not reported.
  std::vector<std::pair<size_t, size_t>> FindAll(absl::string_view text) const;

  // The PCRE2 pattern actually compiled (after the rewrites above).
  const std::string& pcre2_pattern() const { return pattern_; }

 private:
  struct Code;
  static absl::StatusOr<Regex> Build(const std::string& pattern, uint32_t options);

  std::string pattern_;
  std::shared_ptr<const Code> code_;
};

// The Oniguruma -> PCRE2 rewrite of Compile(), exposed for tests.
std::string OnigurumaToPcre2(absl::string_view pattern);

}  // namespace moe::data::hf
