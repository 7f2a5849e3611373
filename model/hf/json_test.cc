// Tests for the protobuf-Struct-based JSON helpers.
#include "model/hf/json.h"

#include "gtest/gtest.h"

namespace moe::hf {
namespace {


TEST(Json, ParsesObjectWithTrailingSpaces) {
  auto s = ParseJsonObject(R"({"a": 1, "b": {"c": [1, 2]}, "d": "x"}    )", "t.json");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->fields_size(), 3);
  EXPECT_EQ(s->fields().at("d").string_value(), "x");
}

TEST(Json, RejectsNonObjectsAndGarbage) {
  for (const char* text : {"[1, 2]", "", "  7", "{\"a\": 1} junk", "{\"a\": }"}) {
    auto s = ParseJsonObject(text, "t.json");
    EXPECT_FALSE(s.ok()) << text;
    EXPECT_PRED_FORMAT2(::testing::IsSubstring, "t.json", std::string(s.status().message())) << text;
  }
}

TEST(Json, RejectsDuplicateKeys) {
  auto s = ParseJsonObject(R"({"a": 1, "a": 2})", "dup.json");
  ASSERT_FALSE(s.ok());
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "dup.json", std::string(s.status().message()));
  // Escaped spellings of the same key are duplicates too.
  EXPECT_FALSE(ParseJsonObject(R"({"a": 1, "\u0061": 2})", "dup.json").ok());
}

TEST(Json, Uint64ChecksIntegrality) {
  auto s = ParseJsonObject(
      R"({"ok": 9007199254740992, "big": 9007199254740994, "neg": -1, "frac": 1.5, "str": "1"})",
      "n.json");
  ASSERT_TRUE(s.ok()) << s.status();
  const auto& f = s->fields();
  auto ok = JsonToUint64(f.at("ok"), "ok");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, uint64_t{1} << 53);
  EXPECT_FALSE(JsonToUint64(f.at("big"), "big").ok());
  EXPECT_FALSE(JsonToUint64(f.at("neg"), "neg").ok());
  EXPECT_FALSE(JsonToUint64(f.at("frac"), "frac").ok());
  auto str = JsonToUint64(f.at("str"), "field str");
  ASSERT_FALSE(str.ok());
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "field str", std::string(str.status().message()));
}

TEST(Json, QuoteRoundTrips) {
  const std::string nasty = "a\"b\\c\nd\te\x01 \xc3\xa9";
  auto s = ParseJsonObject("{" + JsonQuote("k") + ":" + JsonQuote(nasty) + "}", "q.json");
  ASSERT_TRUE(s.ok()) << s.status();
  auto v = JsonToString(s->fields().at("k"), "k");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, nasty);
}

}  // namespace
}  // namespace moe::hf
