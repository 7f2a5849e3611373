// Brown corpus tag stripping (see brown.h for the rules).
#include "data/brown.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace moe::data {
namespace {

enum class Kind {
  kWord,
  kOpen,         // `` ( [ : no space after
  kClose,        // , . ; : ? ! ) ] '' : no space before
  kDash,         // -- : no space on either side
  kSingleQuote,  // ' : opening or closing, decided from context
};

Kind Classify(absl::string_view word) {
  if (word == "``" || word == "(" || word == "[") return Kind::kOpen;
  if (word == "''" || word == "," || word == "." || word == ";" || word == ":" || word == "?" ||
      word == "!" || word == ")" || word == "]") {
    return Kind::kClose;
  }
  if (word == "--") return Kind::kDash;
  if (word == "'") return Kind::kSingleQuote;
  return Kind::kWord;
}

// `word/TAG` -> `word` (the tag follows the last slash); a token without a slash is kept whole.
absl::string_view StripTag(absl::string_view token) {
  const size_t slash = token.rfind('/');
  if (slash == absl::string_view::npos || slash == 0) return token;
  return token.substr(0, slash);
}

}  // namespace

std::string BrownToPlainText(absl::string_view tagged) {
  std::string out;
  bool pending_paragraph_break = false;  // a blank line or an indented line was seen since the last text
  bool single_quote_open = false;        // within the current paragraph
  for (absl::string_view line : absl::StrSplit(tagged, '\n')) {
    std::vector<absl::string_view> words;
    absl::string_view previous_token;
    for (absl::string_view token : absl::StrSplit(line, absl::ByAnyChar(" \t\r\f\v"), absl::SkipEmpty())) {
      // This edition doubles every sentence-final punctuation token other than the period ("?/. ?/.",
      // ";/. ;/.", "!/. !/.", ":/. :/."): keep one of each run.
      const bool repeated_final = token == previous_token && absl::EndsWith(token, "/.");
      previous_token = token;
      if (repeated_final) continue;
      words.push_back(StripTag(token));
    }
    if (words.empty()) {
      pending_paragraph_break = true;
      continue;
    }
    if (absl::ascii_isspace(static_cast<unsigned char>(line.front()))) pending_paragraph_break = true;
    if (pending_paragraph_break) {
      if (!out.empty()) out.push_back('\n');  // blank line between paragraphs
      single_quote_open = false;
      pending_paragraph_break = false;
    }

    bool attach_next = true;  // no space before the next word (line start, or after opening punctuation)
    for (size_t i = 0; i < words.size(); ++i) {
      const absl::string_view word = words[i];
      Kind kind = Classify(word);
      if (kind == Kind::kSingleQuote) {
        const bool at_end = i + 1 == words.size();
        const Kind next = at_end ? Kind::kClose : Classify(words[i + 1]);
        const bool after_opening = i == 0 || Classify(words[i - 1]) == Kind::kOpen ||
                                   Classify(words[i - 1]) == Kind::kDash;
        if (next == Kind::kClose || next == Kind::kSingleQuote) {
          kind = Kind::kClose;
        } else if (after_opening) {
          kind = Kind::kOpen;
        } else {
          kind = single_quote_open ? Kind::kClose : Kind::kOpen;
        }
        single_quote_open = kind == Kind::kOpen;
      }
      const bool space = !attach_next && kind != Kind::kClose && kind != Kind::kDash;
      if (space) out.push_back(' ');
      if (word == "``" || word == "''") {
        out.push_back('"');
      } else {
        out.append(word.data(), word.size());
      }
      attach_next = kind == Kind::kOpen || kind == Kind::kDash;
    }
    out.push_back('\n');
  }
  return out;
}

bool IsBrownSampleName(absl::string_view file_name) {
  return file_name.size() == 4 && file_name[0] == 'c' && file_name[1] >= 'a' && file_name[1] <= 'r' &&
         absl::ascii_isdigit(static_cast<unsigned char>(file_name[2])) &&
         absl::ascii_isdigit(static_cast<unsigned char>(file_name[3]));
}

}  // namespace moe::data
