// Small JSON helpers for the Hugging Face file formats (safetensors headers, the shard index,
// config.json). Parsing goes through protobuf's google.protobuf.Struct so that no JSON parser is
// hand-written here; writing is done by the callers with JsonQuote, because they need a fixed key
// order and layout (HF's index is written with sorted keys and 2-space indentation).
//
// Struct keeps every number as a double: integers are exact up to 2^53, which is why the integer
// accessors below refuse anything larger or non-integral. Protobuf 3.21 rejects duplicate keys in
// an object ("Repeated map key"), so a parsed Struct never silently merges duplicates.
#pragma once

#include <cstdint>
#include <string>

#include <google/protobuf/struct.pb.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::hf {

// Parses `text` (trailing whitespace allowed) as a JSON object. `what` names the source (a file
// path, "header of FILE") and prefixes every error message.
absl::StatusOr<google::protobuf::Struct> ParseJsonObject(absl::string_view text,
                                                         absl::string_view what);

// A non-negative integer stored as a JSON number, exact (<= 2^53) and integral. `what` names the
// value in errors (e.g. "FILE: tensor 'x' data_offsets[0]").
absl::StatusOr<uint64_t> JsonToUint64(const google::protobuf::Value& v, absl::string_view what);

// A JSON string value.
absl::StatusOr<std::string> JsonToString(const google::protobuf::Value& v, absl::string_view what);

// Name of the value's JSON kind ("number", "string", "object", ...) for error messages.
const char* JsonKindName(const google::protobuf::Value& v);

// `s` as a JSON string literal, quotes included; escapes '"', '\\' and control characters.
std::string JsonQuote(absl::string_view s);

}  // namespace moe::hf
