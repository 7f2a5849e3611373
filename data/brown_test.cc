// Brown corpus tag stripping on inline samples shaped like the real files (tab-indented paragraphs,
// blank lines, `word/tag` tokens, `` '' quotes, words that contain slashes).
#include "data/brown.h"

#include "gtest/gtest.h"

namespace moe::data {
namespace {

TEST(BrownTest, StripsTagsAndRestoresSpacing) {
  const char* tagged =
      "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at "
      "investigation/nn of/in Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd ``/`` no/at "
      "evidence/nn ''/'' that/cs any/dti irregularities/nns took/vbd place/nn ./.\n"
      "It/pps urged/vbd ,/, ``/`` take/vb steps/nns ''/'' ;/. ;/.\n"
      "\n\n\tHe/pps paid/vbd 1/2/cd of/in it/ppo (/( and/or/cc more/ap )/) --/-- really/rb ?/. ?/.\n"
      "\n\nMerger/nn-hl proposed/vbn-hl \n";
  const std::string expected =
      "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election "
      "produced \"no evidence\" that any irregularities took place.\n"
      "It urged, \"take steps\";\n"
      "\n"
      "He paid 1/2 of it (and/or more)--really?\n"
      "\n"
      "Merger proposed\n";
  EXPECT_EQ(BrownToPlainText(tagged), expected);
}

TEST(BrownTest, SingleQuotes) {
  EXPECT_EQ(BrownToPlainText("the/at term/nn '/' aberrant/jj conduct/nn '/' is/bez used/vbn ./.\n"),
            "the term 'aberrant conduct' is used.\n");
  EXPECT_EQ(BrownToPlainText("Hodges/np :/: '/' It's/pps+bez a/at pity/nn '/' ''/'' ./.\n"),
            "Hodges: 'It's a pity'\".\n");
  EXPECT_EQ(BrownToPlainText("give/vb 'em/ppo hell/nn !/.\n"), "give 'em hell!\n");
}

TEST(BrownTest, DoubledSentencePunctuationIsCollapsed) {
  EXPECT_EQ(BrownToPlainText("Why/wrb ?/. ?/. No/rb !/. !/. Wait/vb ?/. !/. Jr./np ./.\n"),
            "Why? No! Wait?! Jr..\n");
}

TEST(BrownTest, EmptyInput) {
  EXPECT_EQ(BrownToPlainText(""), "");
  EXPECT_EQ(BrownToPlainText("\n\n\t\n"), "");
}

TEST(BrownTest, SampleNames) {
  EXPECT_TRUE(IsBrownSampleName("ca01"));
  EXPECT_TRUE(IsBrownSampleName("cr09"));
  EXPECT_FALSE(IsBrownSampleName("cs01"));
  EXPECT_FALSE(IsBrownSampleName("README"));
  EXPECT_FALSE(IsBrownSampleName("cats.txt"));
  EXPECT_FALSE(IsBrownSampleName("ca1"));
}

}  // namespace
}  // namespace moe::data
