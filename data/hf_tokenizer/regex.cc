// See regex.h.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/hf_tokenizer/regex.h"

#include <pcre2.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "data/hf_tokenizer/unicode.h"

namespace moe::data::hf {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

namespace {

// Per-thread match state: match data (only the whole-match pair is read) and a JIT stack large enough
// for long runs of one character class.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchState& ThreadMatchState() {
  thread_local MatchState state;
  return state;
}

constexpr absl::string_view kWordClass = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
constexpr absl::string_view kHexClass = "0-9a-fA-F";

}  // namespace

std::string OnigurumaToPcre2(absl::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;  // inside [...] (Oniguruma allows nested classes)
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      const bool in_class = class_depth > 0;
      switch (e) {
        case 's': out += "\\p{White_Space}"; break;
        case 'S': out += "\\P{White_Space}"; break;
        case 'w': out += in_class ? std::string(kWordClass) : absl::StrCat("[", kWordClass, "]"); break;
        case 'W':
          if (in_class) {
            out += "\\W";  // no exact spelling inside a class; PCRE2's meaning
          } else {
            absl::StrAppend(&out, "[^", kWordClass, "]");
          }
          break;
        case 'h': out += in_class ? std::string(kHexClass) : absl::StrCat("[", kHexClass, "]"); break;
        case 'H':
          if (in_class) {
            out += "\\H";
          } else {
            absl::StrAppend(&out, "[^", kHexClass, "]");
          }
          break;
        default: out += '\\'; out += e; break;
      }
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      // A ']' or '^]' right after '[' is a literal, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

absl::StatusOr<Regex> Regex::Build(const std::string& pattern, uint32_t options) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options | PCRE2_UTF, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("regex '", pattern, "' does not compile at offset ", offset,
                                                   ": ", reinterpret_cast<const char*>(message)));
  }
  auto holder = std::make_shared<Code>();
  holder->code = code;
  holder->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  Regex regex;
  regex.pattern_ = pattern;
  regex.code_ = std::move(holder);
  return regex;
}

absl::StatusOr<Regex> Regex::Compile(absl::string_view pattern) {
  return Build(OnigurumaToPcre2(pattern), PCRE2_UCP | PCRE2_MULTILINE);
}

// PCRE2 allows no character-class options with LITERAL (a literal has no classes).
absl::StatusOr<Regex> Regex::Literal(absl::string_view text) { return Build(std::string(text), PCRE2_LITERAL); }

std::vector<std::pair<size_t, size_t>> Regex::FindAll(absl::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  MatchState& state = ThreadMatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  size_t previous_end = static_cast<size_t>(-1);
  uint32_t check = 0;  // the first call validates the UTF-8; later calls need not
  while (pos <= text.size()) {
    const int rc = code_->jit ? pcre2_jit_match(code_->code, subject, text.size(), pos, check, state.data, state.context)
                              : pcre2_match(code_->code, subject, text.size(), pos, check, state.data, state.context);
    check = PCRE2_NO_UTF_CHECK;
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      // Only resource limits or invalid UTF-8 (a caller bug: Encode repairs its input) can get here.
      std::fprintf(stderr, "tokenizer: regex '%s' failed: %s\n", pattern_.c_str(),
                   reinterpret_cast<const char*>(message));
      std::abort();
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const size_t begin = ovector[0], end = ovector[1];
    if (begin == end) {
      if (begin != previous_end) matches.emplace_back(begin, end);
      if (end >= text.size()) break;
      pos = end + Utf8Length(static_cast<unsigned char>(text[end]));
    } else {
      matches.emplace_back(begin, end);
      pos = end;
    }
    previous_end = end;
  }
  return matches;
}

}  // namespace moe::data::hf
