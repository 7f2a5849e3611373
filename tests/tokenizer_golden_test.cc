// Real tokenizer.json files (DeepSeek-V3, Llama 3, Qwen3, GPT-2, fetched by tools/fetch_tokenizers.sh)
// against ids and texts recorded from Hugging Face's own library (tokenizers 0.23.2, Rust, through its
// Node bindings; tools/tokenizer_reference/regenerate_golden.sh) on the edge cases of
// tests/testdata/tokenizers/edge_cases.json: encode with and without special tokens, decode with and
// without skipping them, and the round trip decode(encode(text)).
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <simdjson.h>

#include "data/hf_tokenizer/normalizer.h"
#include "data/load_tokenizer.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

using Ids = std::vector<uint32_t>;

struct Case {
  std::string text;
  Ids ids, ids_special;
  std::string decoded, decoded_skip_special;
};

std::vector<Case> ReadGolden(const std::string& name) {
  const std::string path = "tests/testdata/tokenizers/golden_" + name + ".json";
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  EXPECT_EQ(parser.load(path).get(root), simdjson::SUCCESS) << path;
  const auto ids_of = [](simdjson::dom::element array) {
    Ids ids;
    for (const simdjson::dom::element v : simdjson::dom::array(array)) ids.push_back(static_cast<uint32_t>(uint64_t(v)));
    return ids;
  };
  std::vector<Case> cases;
  for (const simdjson::dom::element c : simdjson::dom::array(root["cases"])) {
    cases.push_back({std::string(std::string_view(c["text"])), ids_of(c["ids"]), ids_of(c["ids_special"]),
                     std::string(std::string_view(c["decoded"])),
                     std::string(std::string_view(c["decoded_skip_special"]))});
  }
  return cases;
}

class GoldenTokenizerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTokenizerTest, MatchesHuggingFace) {
  const std::string name = GetParam();
  auto tokenizer = data::LoadTokenizer("external/hf_tokenizers/" + name);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().message();
  const std::vector<Case> cases = ReadGolden(name);
  ASSERT_GE(cases.size(), 50u);
  for (const Case& c : cases) {
    SCOPED_TRACE(name + ": " + c.text.substr(0, 80));
    EXPECT_EQ((*tokenizer)->Encode(c.text), c.ids);
    EXPECT_EQ((*tokenizer)->Encode(c.text, /*add_special_tokens=*/true), c.ids_special);
    EXPECT_EQ((*tokenizer)->Decode(c.ids), c.decoded);
    EXPECT_EQ((*tokenizer)->Decode(c.ids, /*skip_special_tokens=*/true), c.decoded_skip_special);
  }
}

// decode(encode(text)) gives the text back, or its normalization for Qwen3 (NFC); none of these adds a
// prefix space.
TEST_P(GoldenTokenizerTest, RoundTrip) {
  const std::string name = GetParam();
  auto tokenizer = data::LoadTokenizer("external/hf_tokenizers/" + name);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().message();
  const data::hf::Normalizer nfc({data::hf::NormalForm::kNFC});
  for (const Case& c : ReadGolden(name)) {
    const std::string expected = name == "qwen3" ? nfc.Apply(c.text) : c.text;
    EXPECT_EQ((*tokenizer)->Decode((*tokenizer)->Encode(c.text)), expected) << name << ": " << c.text;
  }
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, GoldenTokenizerTest,
                         ::testing::Values("deepseek_v3", "llama3", "qwen3", "gpt2"));

TEST(GoldenTokenizerTest, TokenizerConfigGivesBosEosAndFingerprint) {
  auto deepseek = data::LoadTokenizer("external/hf_tokenizers/deepseek_v3");
  ASSERT_TRUE(deepseek.ok()) << deepseek.status().message();
  EXPECT_EQ((*deepseek)->bos_id(), std::optional<uint32_t>(0));  // <｜begin▁of▁sentence｜>
  EXPECT_EQ((*deepseek)->eos_id(), std::optional<uint32_t>(1));  // <｜end▁of▁sentence｜>
  EXPECT_TRUE((*deepseek)->add_bos_token());
  EXPECT_EQ((*deepseek)->vocab_size(), 128815u);
  EXPECT_EQ((*deepseek)->fingerprint().substr(0, 8), "fnv1a64:");
  auto gpt2 = data::LoadTokenizer("external/hf_tokenizers/gpt2/tokenizer.json");
  ASSERT_TRUE(gpt2.ok());
  EXPECT_NE((*gpt2)->fingerprint(), (*deepseek)->fingerprint());
  EXPECT_EQ((*gpt2)->vocab_size(), 50257u);
}

}  // namespace
}  // namespace moe
