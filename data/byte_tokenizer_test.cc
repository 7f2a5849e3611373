// Byte tokenizer: exact round trip of arbitrary bytes, and how the special ids decode.
#include "data/byte_tokenizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moe::data {
namespace {

const ByteTokenizer kTok;

TEST(ByteTokenizerTest, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<uint32_t> ids = kTok.Encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (uint32_t b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(kTok.Decode(ids), all);
}

TEST(ByteTokenizerTest, RoundTripsUtf8Text) {
  const std::string text = "The Fulton County Grand Jury said \xE2\x80\x9Cno evidence\xE2\x80\x9D.\n";
  EXPECT_EQ(kTok.Decode(kTok.Encode(text)), text);
  EXPECT_EQ(kTok.Encode(text).size(), text.size());
  EXPECT_TRUE(kTok.Encode("").empty());
}

TEST(ByteTokenizerTest, EndOfDocumentRendering) {
  const std::vector<uint32_t> ids = {'a', ByteTokenizer::kEndOfDocument, 'b'};
  EXPECT_EQ(kTok.Decode(ids), "a<|endoftext|>b");
  EXPECT_EQ(kTok.Decode(ids, /*skip_special_tokens=*/false), "a<|endoftext|>b");
  EXPECT_EQ(kTok.Decode(ids, /*skip_special_tokens=*/true), "ab");
}

TEST(ByteTokenizerTest, OutOfVocabularyIdsBecomeReplacementCharacter) {
  const std::vector<uint32_t> ids = {'x', ByteTokenizer::kVocabSize, 1000, 'y'};
  EXPECT_EQ(kTok.Decode(ids), "x\xEF\xBF\xBD\xEF\xBF\xBDy");
}

}  // namespace
}  // namespace moe::data

namespace moe::data {
namespace {

TEST(ByteTokenizerTest, InterfaceFacts) {
  const Tokenizer& tok = kTok;
  EXPECT_EQ(tok.vocab_size(), 257u);
  EXPECT_EQ(tok.eos_id(), std::optional<uint32_t>(256));
  EXPECT_FALSE(tok.bos_id().has_value());
  EXPECT_EQ(tok.fingerprint(), "byte");
  EXPECT_EQ(tok.TokenToId("a"), std::optional<uint32_t>('a'));
  EXPECT_EQ(tok.TokenToId("<|endoftext|>"), std::optional<uint32_t>(256));
  EXPECT_FALSE(tok.TokenToId("ab").has_value());
  EXPECT_TRUE(tok.files().empty());
}

}  // namespace
}  // namespace moe::data
