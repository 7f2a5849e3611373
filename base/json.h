// JSON text for the hand-written outputs of the tools and the config writer (protobuf's JSON printer
// writes int64 values as strings, which Hugging Face's config.json readers do not accept).
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace moe {

// A JSON string literal: quotes and backslashes escaped, control characters as \u00XX; with
// escape_non_ascii also every byte >= 0x7f (for bytes that may not be UTF-8, e.g. a weak model's output).
std::string JsonQuote(absl::string_view s, bool escape_non_ascii = false);

// The shortest text that reads back as the same double; integral values (below 9e15) without a
// fraction; "null" for NaN and infinities.
std::string JsonNumber(double v);

}  // namespace moe
