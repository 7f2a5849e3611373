// See pre_tokenizer.h.
#include "data/hf_tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "data/hf_tokenizer/unicode.h"

namespace moe::data::hf {
namespace {

using Range = std::pair<size_t, size_t>;

struct Span {
  Range range;
  bool is_match;
};

// Hugging Face's Pattern::find_matches: the whole text as alternating non-match / match spans.
std::vector<Span> SpansOf(absl::string_view text, const std::vector<Range>& matches) {
  std::vector<Span> spans;
  if (text.empty()) return {{{0, 0}, false}};
  size_t previous = 0;
  for (const Range& m : matches) {
    if (previous != m.first) spans.push_back({{previous, m.first}, false});
    spans.push_back({m, true});
    previous = m.second;
  }
  if (previous != text.size()) spans.push_back({{previous, text.size()}, false});
  return spans;
}

// Each character for which `pred` holds is a match (the Digits pre-tokenizer's pattern).
template <typename Pred>
std::vector<Range> CharacterMatches(absl::string_view text, Pred pred) {
  std::vector<Range> matches;
  for (size_t i = 0; i < text.size();) {
    int length = 0;
    const char32_t c = DecodeUtf8At(text, i, &length);
    if (pred(c)) matches.emplace_back(i, i + length);
    i += length;
  }
  return matches;
}

// NormalizedString::split: the pieces kept under `behavior`, as byte ranges (possibly empty).
std::vector<Range> ApplyBehavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> merged;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (Span& s : spans) s.is_match = false;
      merged = std::move(spans);
      break;
    case SplitBehavior::kRemoved:
      merged = std::move(spans);  // matches are dropped below
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !merged.empty()) {
          merged.back().range.second = s.range.second;
        } else {
          merged.push_back({s.range, false});
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !merged.empty()) {
          merged.back().range.second = s.range.second;
        } else {
          merged.push_back({s.range, false});
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().range.first = it->range.first;
        } else {
          merged.push_back({it->range, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
  }
  std::vector<Range> kept;
  kept.reserve(merged.size());
  for (const Span& s : merged) {
    if (!s.is_match) kept.push_back(s.range);
  }
  return kept;
}

void AppendPieces(absl::string_view text, const std::vector<Range>& ranges, std::vector<std::string>* out) {
  for (const Range& r : ranges) {
    if (r.second > r.first) out->emplace_back(text.substr(r.first, r.second - r.first));
  }
}

std::string MapBytes(absl::string_view text) {
  const std::vector<std::string>& table = ByteToUnicode();
  std::string mapped;
  mapped.reserve(text.size() * 2);
  for (const char c : text) mapped += table[static_cast<unsigned char>(c)];
  return mapped;
}

void ApplyStep(const PreTokenizerStep& step, const std::string& piece, std::vector<std::string>* out) {
  switch (step.kind) {
    case PreTokenizerStep::Kind::kSplit: {
      std::vector<Span> spans = SpansOf(piece, step.regex.FindAll(piece));
      if (step.invert) {
        for (Span& s : spans) s.is_match = !s.is_match;
      }
      AppendPieces(piece, ApplyBehavior(std::move(spans), step.behavior), out);
      return;
    }
    case PreTokenizerStep::Kind::kDigits: {
      const std::vector<Span> spans = SpansOf(piece, CharacterMatches(piece, IsNumeric));
      AppendPieces(piece, ApplyBehavior(spans, step.individual_digits ? SplitBehavior::kIsolated
                                                                      : SplitBehavior::kContiguous),
                   out);
      return;
    }
    case PreTokenizerStep::Kind::kByteLevel: {
      std::string text = piece;
      if (step.add_prefix_space && (text.empty() || text[0] != ' ')) text.insert(0, 1, ' ');
      if (!step.use_regex) {
        out->push_back(MapBytes(text));
        return;
      }
      std::vector<std::string> pieces;
      AppendPieces(text, ApplyBehavior(SpansOf(text, ByteLevelRegex().FindAll(text)), SplitBehavior::kIsolated),
                   &pieces);
      for (const std::string& p : pieces) out->push_back(MapBytes(p));
      return;
    }
  }
}

}  // namespace

void PreTokenizer::Apply(absl::string_view text, std::vector<std::string>* out) const {
  std::vector<std::string> current{std::string(text)};
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : steps_) {
    next.clear();
    for (const std::string& piece : current) ApplyStep(step, piece, &next);
    current.swap(next);
  }
  for (std::string& piece : current) {
    if (!piece.empty()) out->push_back(std::move(piece));
  }
}

const Regex& ByteLevelRegex() {
  static const Regex* regex = new Regex(
      *Regex::Compile("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"));
  return *regex;
}

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in
// byte order.
std::vector<char32_t> ByteToCodePoint() {
  std::vector<char32_t> table(256);
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

std::string EncodeUtf8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

}  // namespace

const std::vector<std::string>& ByteToUnicode() {
  static const std::vector<std::string>* table = [] {
    auto* t = new std::vector<std::string>;
    for (const char32_t c : ByteToCodePoint()) t->push_back(EncodeUtf8(c));
    return t;
  }();
  return *table;
}

int UnicodeToByte(char32_t c) {
  static const std::vector<int>* inverse = [] {
    auto* t = new std::vector<int>(512, -1);
    const std::vector<char32_t> forward = ByteToCodePoint();
    for (int b = 0; b < 256; ++b) (*t)[forward[b]] = b;
    return t;
  }();
  return c < inverse->size() ? (*inverse)[c] : -1;
}

}  // namespace moe::data::hf
