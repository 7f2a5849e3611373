// UTF-8 repair: the expected outputs are Node's Buffer.from(bytes).toString('utf8') (the WHATWG decoder,
// the same as Rust's String::from_utf8_lossy), generated once and pasted here.
#include "data/utf8.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moe::data {
namespace {

struct Case {
  std::string input;
  std::string expected;
  int64_t num_invalid;
};

// Generated with node v20: for each input, Buffer.from(input, 'latin1').toString('utf8') re-encoded to
// bytes, and the number of U+FFFD in it.
const std::vector<Case>& Cases() {
  static const auto* cases = new std::vector<Case>{
      {"", "", 0},
      {"\x61\x62\x63", "\x61\x62\x63", 0},
      {"\xE2\x82", "\xEF\xBF\xBD", 1},                                    // truncated 3-byte sequence
      {"\xF0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD", 2},                        // 80 cannot follow F0
      {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 3},        // surrogate U+D800
      {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD", 2},                        // overlong '/'
      {"\xE2\x82\xAC", "\xE2\x82\xAC", 0},                                // euro sign
      {"\x61\x80\x62", "\x61\xEF\xBF\xBD\x62", 1},                        // lone continuation byte
      {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 4},  // above U+10FFFF
      {"\xF0\x9F\x98", "\xEF\xBF\xBD", 1},                                // truncated emoji
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80", 0},                        // U+1F600
      {"\xE0\x80\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 3},        // overlong 3-byte '/'
      {"\xFF\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD", 2},                        // UTF-16 BOM bytes
      {"\xEF\xBB\xBF\x78", "\xEF\xBB\xBF\x78", 0},                        // a UTF-8 BOM is valid
      {"\xC2", "\xEF\xBF\xBD", 1},
      {"\xE1\x80\xE2\xF0\x91\x92\xF1\xBF\x41", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\x41", 4},
      {"\xF5\x80\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 4},
      {"\xED\x9F\xBF", "\xED\x9F\xBF", 0},                                // U+D7FF, just below the surrogates
      {"\xEE\x80\x80", "\xEE\x80\x80", 0},                                // U+E000, just above
      {"\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF", 0},                        // U+10FFFF
      {"\xC1\xBF", "\xEF\xBF\xBD\xEF\xBF\xBD", 2},                        // overlong 2-byte lead
      {"\xC2\x7F", "\xEF\xBF\xBD\x7F", 1},
  };
  return *cases;
}

TEST(Utf8Test, RepairMatchesNode) {
  for (const Case& c : Cases()) {
    const Utf8Repair r = RepairUtf8(c.input);
    EXPECT_EQ(r.text, c.expected) << "input of " << c.input.size() << " bytes";
    EXPECT_EQ(r.num_invalid, c.num_invalid);
    EXPECT_EQ(IsValidUtf8(c.input), c.num_invalid == 0);
    EXPECT_EQ(r.first_invalid_offset < 0, c.num_invalid == 0);
  }
}

TEST(Utf8Test, FirstInvalidOffsetAndPrefix) {
  const std::string s = "hello w\xC3\xB6rld, \xE2\x82 and \xFF";
  const Utf8Repair r = RepairUtf8(s);
  EXPECT_EQ(r.first_invalid_offset, 14);
  EXPECT_EQ(r.num_invalid, 2);
  EXPECT_EQ(r.text, "hello w\xC3\xB6rld, \xEF\xBF\xBD and \xEF\xBF\xBD");
  EXPECT_EQ(ValidUtf8PrefixLength(s), 14u);
  // Long ASCII runs take the 8-byte path; the first bad byte is found at every alignment.
  for (size_t pos = 0; pos < 40; ++pos) {
    std::string t(48, 'x');
    t[pos] = '\x80';
    EXPECT_EQ(ValidUtf8PrefixLength(t), pos);
    EXPECT_EQ(RepairUtf8(t).first_invalid_offset, static_cast<int64_t>(pos));
  }
  EXPECT_TRUE(IsValidUtf8(std::string(1000, 'a')));
  EXPECT_TRUE(IsValidUtf8(std::string("\0\0\0", 3)));  // NUL is valid UTF-8
}

// FNV-1a 32 over every repaired output followed by a 0xFF separator (a byte that never occurs in valid
// UTF-8), for: all 65536 two-byte strings, then all strings of length 1..4 over the alphabet below
// (first byte slowest). The reference numbers come from the same enumeration in Node:
// Buffer.from(bytes).toString('utf8') -> 540790 strings, 1514712 substitutions, digest 0xDE73C892.
TEST(Utf8Test, ExhaustiveShortStringsMatchNode) {
  const std::vector<unsigned char> alphabet = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBD,
                                               0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED,
                                               0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  uint32_t h = 0x811C9DC5u;
  int64_t strings = 0, invalid = 0;
  const auto feed = [&](const std::string& bytes) {
    const Utf8Repair r = RepairUtf8(bytes);
    for (unsigned char b : r.text) h = (h ^ b) * 0x01000193u;
    h = (h ^ 0xFFu) * 0x01000193u;
    invalid += r.num_invalid;
    ++strings;
    EXPECT_TRUE(IsValidUtf8(r.text));
    EXPECT_EQ(IsValidUtf8(bytes), r.num_invalid == 0);
    if (r.num_invalid == 0) {
      EXPECT_EQ(r.text, bytes);
    }
  };
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) feed(std::string{static_cast<char>(a), static_cast<char>(b)});
  }
  for (size_t len = 1; len <= 4; ++len) {
    std::vector<size_t> idx(len, 0);
    for (;;) {
      std::string s;
      for (size_t i : idx) s.push_back(static_cast<char>(alphabet[i]));
      feed(s);
      size_t k = len;
      while (k > 0 && ++idx[k - 1] == alphabet.size()) idx[--k] = 0;
      if (k == 0) break;
    }
  }
  EXPECT_EQ(strings, 540790);
  EXPECT_EQ(invalid, 1514712);
  EXPECT_EQ(h, 0xDE73C892u);
}

}  // namespace
}  // namespace moe::data
