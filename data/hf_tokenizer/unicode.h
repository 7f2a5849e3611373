// Character facts the Hugging Face pipeline relies on, with Rust's definitions (the `tokenizers` library is
// Rust), answered by ICU so that no Unicode table is written by hand here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace moe::data::hf {

// Length of the UTF-8 sequence that starts with `lead` (1 for continuation bytes, which valid text
// never starts with).
inline int Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// The code point at byte `i` of valid UTF-8 `s`; `*length` receives its byte length.
char32_t DecodeUtf8At(absl::string_view s, size_t i, int* length);

// Rust `char::is_whitespace`: the White_Space property.
bool IsWhitespace(char32_t c);
// Rust `char::is_numeric`: general categories Nd, Nl, No.
bool IsNumeric(char32_t c);
// The Rust `regex` crate's Unicode `\w`: Alphabetic, marks, Nd, Pc, Join_Control.
bool IsWordCharacter(char32_t c);

}  // namespace moe::data::hf
