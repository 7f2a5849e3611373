// Byte tokenizer: exact round trip of arbitrary bytes, and how the special ids decode.
#include "data/byte_tokenizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moe::data {
namespace {

TEST(ByteTokenizerTest, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<uint32_t> ids = ByteTokenizer::Encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (uint32_t b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(ByteTokenizer::Decode(ids), all);
}

TEST(ByteTokenizerTest, RoundTripsUtf8Text) {
  const std::string text = "The Fulton County Grand Jury said \xE2\x80\x9Cno evidence\xE2\x80\x9D.\n";
  EXPECT_EQ(ByteTokenizer::Decode(ByteTokenizer::Encode(text)), text);
  EXPECT_EQ(ByteTokenizer::Encode(text).size(), text.size());
  EXPECT_TRUE(ByteTokenizer::Encode("").empty());
}

TEST(ByteTokenizerTest, EndOfDocumentRendering) {
  const std::vector<uint32_t> ids = {'a', ByteTokenizer::kEndOfDocument, 'b'};
  EXPECT_EQ(ByteTokenizer::Decode(ids), "a<|endoftext|>b");
  EXPECT_EQ(ByteTokenizer::Decode(ids, ByteTokenizer::EodRendering::kMarker), "a<|endoftext|>b");
  EXPECT_EQ(ByteTokenizer::Decode(ids, ByteTokenizer::EodRendering::kDrop), "ab");
}

TEST(ByteTokenizerTest, OutOfVocabularyIdsBecomeReplacementCharacter) {
  const std::vector<uint32_t> ids = {'x', ByteTokenizer::kVocabSize, 1000, 'y'};
  EXPECT_EQ(ByteTokenizer::Decode(ids), "x\xEF\xBF\xBD\xEF\xBF\xBDy");
}

}  // namespace
}  // namespace moe::data
