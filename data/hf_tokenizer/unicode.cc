// See unicode.h.
#include "data/hf_tokenizer/unicode.h"

#include <unicode/uchar.h>

namespace moe::data::hf {

char32_t DecodeUtf8At(absl::string_view s, size_t i, int* length) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const int n = Utf8Length(byte(0));
  *length = n;
  switch (n) {
    case 1: return byte(0);
    case 2: return (char32_t{byte(0)} & 0x1F) << 6 | (byte(1) & 0x3F);
    case 3: return (char32_t{byte(0)} & 0x0F) << 12 | (char32_t{byte(1)} & 0x3F) << 6 | (byte(2) & 0x3F);
    default:
      return (char32_t{byte(0)} & 0x07) << 18 | (char32_t{byte(1)} & 0x3F) << 12 |
             (char32_t{byte(2)} & 0x3F) << 6 | (byte(3) & 0x3F);
  }
}

bool IsWhitespace(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE); }

bool IsNumeric(char32_t c) {
  const int8_t type = u_charType(static_cast<UChar32>(c));
  return type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER;
}

bool IsWordCharacter(char32_t c) {
  const UChar32 u = static_cast<UChar32>(c);
  const uint32_t mask = U_GET_GC_MASK(u);
  return u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || (mask & U_GC_M_MASK) != 0 ||
         (mask & (U_GC_ND_MASK | U_GC_PC_MASK)) != 0 || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL);
}

}  // namespace moe::data::hf
