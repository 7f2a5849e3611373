// UTF-8 validation and lossy repair for text entering the tokenizers (Hugging Face tokenizers need valid
// UTF-8; see data/tokenizer.h).
//
// RepairUtf8 decodes exactly as Rust's String::from_utf8_lossy, Node's Buffer.toString('utf8') and the
// WHATWG Encoding Standard's UTF-8 decoder: every maximal subpart of an ill-formed sequence becomes one
// U+FFFD (Unicode 15, section 3.9, "U+FFFD Substitution of Maximal Subparts"). A maximal subpart is the
// longest prefix of a well-formed sequence that the bytes start, or a single byte that starts none:
//   "\xE2\x82" (a truncated 3-byte sequence)      -> 1 x U+FFFD
//   "\xF0\x80" (0x80 cannot follow 0xF0)           -> 2 x U+FFFD
//   "\xED\xA0\x80" (a UTF-16 surrogate, U+D800)    -> 3 x U+FFFD
//   "\xC0\xAF" (an overlong '/')                   -> 2 x U+FFFD
// Valid input is returned unchanged; well-formed sequences are never altered (a U+FEFF byte order mark
// is a valid character here: stripping it at the start of a file is the caller's decision).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace moe::data {

// The length of the longest prefix of `bytes` that is valid UTF-8 (it ends at a character boundary):
// bytes.size() iff the whole input is valid. ASCII runs are checked 8 bytes at a time.
size_t ValidUtf8PrefixLength(absl::string_view bytes);

inline bool IsValidUtf8(absl::string_view bytes) { return ValidUtf8PrefixLength(bytes) == bytes.size(); }

struct Utf8Repair {
  std::string text;                   // the input with each maximal invalid subpart replaced by U+FFFD
  int64_t num_invalid = 0;            // how many U+FFFD were substituted (0: the input was valid)
  int64_t first_invalid_offset = -1;  // byte offset in the input of the first invalid subpart; -1 if none
};

// Lossy decode as described above. Callers that expect mostly valid text check IsValidUtf8 first and
// keep their string when it is, to avoid the copy.
Utf8Repair RepairUtf8(absl::string_view bytes);

// The UTF-8 encoding of U+FFFD REPLACEMENT CHARACTER.
inline constexpr absl::string_view kUtf8Replacement = "\xEF\xBF\xBD";

}  // namespace moe::data
