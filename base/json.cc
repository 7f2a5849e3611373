#include "base/json.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace moe {

std::string JsonQuote(absl::string_view s, bool escape_non_ascii) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || (escape_non_ascii && c >= 0x7f)) {
      out += absl::StrFormat("\\u%04x", static_cast<int>(c));
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  if (v == std::floor(v) && std::abs(v) < 9e15) return absl::StrFormat("%.0f", v);
  std::string s;
  for (int precision = 1; precision <= 17; ++precision) {
    s = absl::StrFormat("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) break;
  }
  return s;
}

}  // namespace moe
