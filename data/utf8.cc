// UTF-8 validation and lossy repair (see utf8.h).
#include "data/utf8.h"

#include <cstring>

namespace moe::data {
namespace {

// The length of the well-formed sequence at bytes[i] (1..4), or 0 if the bytes there do not form one.
// In the latter case *subpart is the length of the maximal subpart to replace by one U+FFFD (>= 1).
// Table 3-7 of the Unicode Standard: the allowed range of the second byte depends on the first (no
// overlongs, no surrogates, nothing above U+10FFFF); later bytes are 80..BF.
inline size_t SequenceLength(const unsigned char* s, size_t n, size_t* subpart) {
  const unsigned char b = s[0];
  if (b < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {  // 80..C1 (a continuation byte or an overlong 2-byte lead), F5..FF
    *subpart = 1;
    return 0;
  }
  size_t j = 1;
  for (; j <= need; ++j) {
    if (j >= n || s[j] < lo || s[j] > hi) {
      *subpart = j;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return j;
}

inline bool AllAscii8(const unsigned char* s) {
  uint64_t word;
  std::memcpy(&word, s, 8);
  return (word & 0x8080808080808080ull) == 0;
}

}  // namespace

size_t ValidUtf8PrefixLength(absl::string_view bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    while (i + 8 <= n && AllAscii8(s + i)) i += 8;
    if (i >= n) break;
    size_t subpart = 0;
    const size_t len = SequenceLength(s + i, n - i, &subpart);
    if (len == 0) return i;
    i += len;
  }
  return n;
}

Utf8Repair RepairUtf8(absl::string_view bytes) {
  Utf8Repair result;
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const size_t valid = ValidUtf8PrefixLength(bytes.substr(i));
    result.text.append(bytes.data() + i, valid);
    i += valid;
    if (i >= n) break;
    size_t subpart = 0;
    SequenceLength(s + i, n - i, &subpart);  // 0: the sequence at i is invalid (the prefix stopped there)
    if (result.first_invalid_offset < 0) {
      result.first_invalid_offset = static_cast<int64_t>(i);
      result.text.reserve(n + 2 * (n - i));
    }
    result.text.append(kUtf8Replacement.data(), kUtf8Replacement.size());
    ++result.num_invalid;
    i += subpart;
  }
  return result;
}

}  // namespace moe::data
