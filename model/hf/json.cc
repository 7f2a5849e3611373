// See json.h.
#include "model/hf/json.h"

#include <cmath>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe::hf {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::StatusOr<Struct> ParseJsonObject(absl::string_view text, absl::string_view what) {
  // Struct's JSON mapping also accepts e.g. `null` for the root; insist on an object up front.
  size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) {
    ++i;
  }
  if (i == text.size() || text[i] != '{') {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object (must start with '{')"));
  }
  Struct out;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), &out);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": invalid JSON: ", std::string(status.message())));
  }
  return out;
}

absl::StatusOr<uint64_t> JsonToUint64(const Value& v, absl::string_view what) {
  if (v.kind_case() != Value::kNumberValue) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected a number, got ", JsonKindName(v)));
  }
  const double d = v.number_value();
  constexpr double kMaxExact = 9007199254740992.0;  // 2^53
  if (!(d >= 0) || d > kMaxExact || std::floor(d) != d) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: expected a non-negative integer <= 2^53, got %.17g", what, d));
  }
  return static_cast<uint64_t>(d);
}

absl::StatusOr<std::string> JsonToString(const Value& v, absl::string_view what) {
  if (v.kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected a string, got ", JsonKindName(v)));
  }
  return v.string_value();
}

const char* JsonKindName(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue: return "null";
    case Value::kNumberValue: return "number";
    case Value::kStringValue: return "string";
    case Value::kBoolValue: return "bool";
    case Value::kStructValue: return "object";
    case Value::kListValue: return "array";
    default: return "nothing";
  }
}

std::string JsonQuote(absl::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(ch);  // UTF-8 passes through unchanged.
        }
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace moe::hf
