// The tokenizer.json pipeline stage by stage, on small hand-written tokenizers whose expected ids follow
// from Hugging Face's definitions (the golden test, tests/tokenizer_golden_test.cc, checks real
// tokenizers against the reference library itself).
#include "data/hf_tokenizer/hf_tokenizer.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/hf_tokenizer/regex.h"
#include "gtest/gtest.h"

namespace moe::data::hf {
namespace {

using Ids = std::vector<uint32_t>;

// Vocabulary shared by the small tokenizers: single letters, '-', digits, and a few merged tokens.
constexpr char kVocab[] = R"({"a":0,"b":1,"c":2,"-":3,"1":4,"2":5,"3":6,"ab":7,"bc":8,"abc":9,"a-":10,
  "b-":11,"-c":12,"-b":13,"--":14,"<unk>":15,"x":16," ":17,"ｈ":18,"h":19,"12":20})";

std::string WriteJson(const std::string& json) {
  static int counter = 0;
  const std::string path = absl::StrCat(::testing::TempDir(), "/tok", counter++, ".json");
  std::ofstream(path) << json;
  return path;
}

// A tokenizer.json with the given parts (JSON text; "null" for none).
std::string Json(const std::string& model_extra, const std::string& merges, const std::string& pre_tokenizer,
                 const std::string& normalizer = "null", const std::string& added = "[]",
                 const std::string& post = "null", const std::string& decoder = "null") {
  return absl::StrCat(R"({"version":"1.0","truncation":null,"padding":null,"added_tokens":)", added,
                      R"(,"normalizer":)", normalizer, R"(,"pre_tokenizer":)", pre_tokenizer,
                      R"(,"post_processor":)", post, R"(,"decoder":)", decoder,
                      R"(,"model":{"type":"BPE","dropout":null,)", model_extra, R"("vocab":)", kVocab,
                      R"(,"merges":)", merges, "}}");
}

std::unique_ptr<Tokenizer> Load(const std::string& json) {
  auto tokenizer = LoadHfTokenizer(WriteJson(json));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::string LoadError(const std::string& json) {
  auto tokenizer = LoadHfTokenizer(WriteJson(json));
  return tokenizer.ok() ? "loaded" : std::string(tokenizer.status().message());
}

const char kSplitOnSpace[] = R"({"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false})";

TEST(HfTokenizerTest, MergesApplyByRankNotByPosition) {
  // (b,c) has rank 0, (a,b) rank 1: "abc" -> a + bc -> abc, never ab + c.
  for (const char* merges : {R"(["b c","a b","a bc"])", R"([["b","c"],["a","b"],["a","bc"]])"}) {
    auto tok = Load(Json("", merges, kSplitOnSpace));
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->Encode("abc"), (Ids{9}));
    EXPECT_EQ(tok->Encode("ab"), (Ids{7}));
    EXPECT_EQ(tok->Encode("ab abc cab"), (Ids{7, 9, 2, 7}));
  }
  // Without (a, bc) the word stops at a + bc.
  auto tok = Load(Json("", R"(["b c","a b"])", kSplitOnSpace));
  EXPECT_EQ(tok->Encode("abc"), (Ids{0, 8}));
}

TEST(HfTokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  auto plain = Load(Json("", "[]", kSplitOnSpace));
  auto ignoring = Load(Json(R"("ignore_merges":true,)", "[]", kSplitOnSpace));
  EXPECT_EQ(plain->Encode("abc"), (Ids{0, 1, 2}));
  EXPECT_EQ(ignoring->Encode("abc"), (Ids{9}));
  EXPECT_EQ(ignoring->Encode("cab"), (Ids{2, 0, 1}));
}

TEST(HfTokenizerTest, UnknownCharactersBecomeUnkFusedOrNotOrAreDropped) {
  EXPECT_EQ(Load(Json(R"("unk_token":"<unk>",)", "[]", kSplitOnSpace))->Encode("azza"), (Ids{0, 15, 15, 0}));
  EXPECT_EQ(Load(Json(R"("unk_token":"<unk>","fuse_unk":true,)", "[]", kSplitOnSpace))->Encode("azza"),
            (Ids{0, 15, 0}));
  EXPECT_EQ(Load(Json("", "[]", kSplitOnSpace))->Encode("azza"), (Ids{0, 0}));
}

TEST(HfTokenizerTest, SplitBehaviors) {
  const auto split = [](const char* behavior, bool invert) {
    return absl::StrCat(R"({"type":"Split","pattern":{"String":"-"},"behavior":")", behavior,
                        R"(","invert":)", invert ? "true" : "false", "}");
  };
  const std::string merges = R"([["a","-"],["b","-"],["-","c"],["-","b"],["-","-"]])";
  const std::string text = "a-b--c";
  EXPECT_EQ(Load(Json("", merges, split("Removed", false)))->Encode(text), (Ids{0, 1, 2}));
  EXPECT_EQ(Load(Json("", merges, split("Isolated", false)))->Encode(text), (Ids{0, 3, 1, 3, 3, 2}));
  EXPECT_EQ(Load(Json("", merges, split("MergedWithPrevious", false)))->Encode(text), (Ids{10, 11, 3, 2}));
  EXPECT_EQ(Load(Json("", merges, split("MergedWithNext", false)))->Encode(text), (Ids{0, 13, 3, 12}));
  EXPECT_EQ(Load(Json("", merges, split("Contiguous", false)))->Encode(text), (Ids{0, 3, 1, 14, 2}));
  // Inverted: the letters are the delimiters.
  EXPECT_EQ(Load(Json("", merges, split("Removed", true)))->Encode(text), (Ids{3, 3, 3}));
}

TEST(HfTokenizerTest, DigitsContiguousOrIndividual) {
  // "12" exists only as a merge: contiguous digits form one word that merges, individual ones cannot.
  auto contiguous = Load(Json("", R"(["a b","1 2"])", R"({"type":"Digits","individual_digits":false})"));
  auto individual = Load(Json("", R"(["a b","1 2"])", R"({"type":"Digits","individual_digits":true})"));
  ASSERT_NE(contiguous, nullptr);
  ASSERT_NE(individual, nullptr);
  EXPECT_EQ(contiguous->Encode("ab123c"), (Ids{7, 20, 6, 2}));
  EXPECT_EQ(individual->Encode("ab123c"), (Ids{7, 4, 5, 6, 2}));
}

TEST(HfTokenizerTest, AddedTokensRawNormalizedStripAndSingleWord) {
  const std::string added = R"([
    {"id":20,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
    {"id":21,"content":"[M]","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":false},
    {"id":22,"content":"hab","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false},
    {"id":23,"content":"cc","single_word":true,"lstrip":false,"rstrip":false,"normalized":false,"special":false}])";
  const std::string isolate_spaces = R"({"type":"Split","pattern":{"String":" "},"behavior":"Isolated","invert":false})";
  auto tok = Load(Json("", "[]", isolate_spaces, R"({"type":"NFKC"})", added));
  ASSERT_NE(tok, nullptr);
  // Added tokens take ids after the vocabulary (21 entries: ids 0..20) in file order.
  const uint32_t s = 21, m = 22, hab = 23, cc = 24;
  EXPECT_EQ(tok->Encode("a<s>b"), (Ids{0, s, 1}));
  // lstrip/rstrip take the spaces around [M].
  EXPECT_EQ(tok->Encode("a  [M]  b"), (Ids{0, m, 1}));
  // A normalized token matches the normalized text: fullwidth 'ｈ' is 'h' under NFKC.
  EXPECT_EQ(tok->Encode("xｈabx"), (Ids{16, hab, 16}));
  // single_word: not inside a word.
  EXPECT_EQ(tok->Encode("acc cc"), (Ids{0, 2, 2, 17, cc}));
  EXPECT_EQ(tok->TokenToId("<s>"), std::optional<uint32_t>(s));
  EXPECT_EQ(tok->vocab_size(), 25u);
  EXPECT_EQ(tok->Decode({0, s, 1}), "a <s> b");  // no decoder: tokens joined by spaces
  EXPECT_EQ(tok->Decode({0, s, 1}, /*skip_special_tokens=*/true), "a b");
}

TEST(HfTokenizerTest, TemplateProcessingAddsSpecialTokensOnRequest) {
  const std::string added =
      R"([{"id":20,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}])";
  const std::string post = R"({"type":"Sequence","processors":[
      {"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},
      {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
       "pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[21],"tokens":["<s>"]}}}]})";
  auto tok = Load(Json("", "[]", kSplitOnSpace, "null", added, post));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("ab"), (Ids{0, 1}));
  EXPECT_EQ(tok->Encode("ab", /*add_special_tokens=*/true), (Ids{21, 0, 1}));
}

TEST(HfTokenizerTest, ByteLevelPrefixSpaceAndDecoder) {
  // A byte-level vocabulary: 'Ġ' is the space byte's character.
  const std::string json = R"({"version":"1.0","added_tokens":[],"normalizer":null,
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
    "post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
    "model":{"type":"BPE","vocab":{"Ġ":0,"h":1,"i":2,"Ġh":3,"Ġhi":4,"Ã":5,"©":6},"merges":["Ġ h","Ġh i"]}})";
  auto tok = Load(json);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("hi"), (Ids{4}));        // " hi" after the prefix space
  EXPECT_EQ(tok->Encode("hi hi"), (Ids{4, 4}));
  EXPECT_EQ(tok->Encode("\xC3\xA9"), (Ids{0, 5, 6}));  // 'é' = bytes C3 A9 -> 'Ã' '©'
  EXPECT_EQ(tok->Decode({4, 4}), " hi hi");
  EXPECT_EQ(tok->Decode({5, 6}), "\xC3\xA9");
  EXPECT_EQ(tok->Decode({5}), "\xEF\xBF\xBD");  // a lone lead byte decodes lossily
}

TEST(HfTokenizerTest, RefusesWhatItDoesNotImplementNamingFieldAndValue) {
  EXPECT_NE(LoadError(Json("", "[]", R"({"type":"Metaspace","replacement":"▁"})"))
                .find("pre_tokenizer.type: 'Metaspace' is not supported"),
            std::string::npos);
  EXPECT_NE(LoadError(Json("", "[]", "null", R"({"type":"Lowercase"})")).find("normalizer.type: 'Lowercase'"),
            std::string::npos);
  EXPECT_NE(LoadError(Json(R"("byte_fallback":true,)", "[]", "null")).find("model.byte_fallback: 'true'"),
            std::string::npos);
  EXPECT_NE(LoadError(Json("", "[]", "null", "null", "[]", "null", R"({"type":"Metaspace"})"))
                .find("decoder.type: 'Metaspace'"),
            std::string::npos);
  EXPECT_NE(LoadError(Json("", "[]", "null", "null", "[]", R"({"type":"BertProcessing"})"))
                .find("post_processor.type: 'BertProcessing'"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"model":{"type":"WordPiece","vocab":{}}})").find("model.type: 'WordPiece'"),
            std::string::npos);
  EXPECT_NE(LoadError(Json("", R"(["a zz"])", "null")).find("'zz' is not in model.vocab"), std::string::npos);
  EXPECT_NE(LoadError("{not json").find("invalid JSON"), std::string::npos);
}

TEST(RegexTest, OnigurumaEscapesKeepTheirMeaning) {
  EXPECT_EQ(OnigurumaToPcre2(R"(\s+(?!\S))"), R"(\p{White_Space}+(?!\P{White_Space}))");
  EXPECT_EQ(OnigurumaToPcre2(R"([^\s\p{L}])"), R"([^\p{White_Space}\p{L}])");
  EXPECT_EQ(OnigurumaToPcre2(R"(\w+[\w-]\\s)"), R"([\p{L}\p{M}\p{N}\p{Pc}]+[\p{L}\p{M}\p{N}\p{Pc}-]\\s)");
  EXPECT_EQ(OnigurumaToPcre2(R"([]\s])"), R"([]\p{White_Space}])");
  // U+180E is not White_Space (Unicode >= 6.3); PCRE2's own \s would take it.
  const auto regex = Regex::Compile(R"(\s+)");
  ASSERT_TRUE(regex.ok());
  const auto matches = regex->FindAll("a \xE1\xA0\x8E\xC2\xA0" "b");
  ASSERT_EQ(matches.size(), 2u);
  EXPECT_EQ(matches[0], std::make_pair(size_t{1}, size_t{2}));
  EXPECT_EQ(matches[1], std::make_pair(size_t{5}, size_t{7}));
}

}  // namespace
}  // namespace moe::data::hf
