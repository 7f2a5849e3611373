#include "base/json.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "gtest/gtest.h"

namespace moe {
namespace {

TEST(Json, Quote) {
  EXPECT_EQ(JsonQuote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(JsonQuote("x\ny\x01"), R"("x\u000ay\u0001")");
  EXPECT_EQ(JsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(JsonQuote("caf\xc3\xa9", /*escape_non_ascii=*/true), R"("caf\u00c3\u00a9")");
}

TEST(Json, NumberRoundTripsShortest) {
  EXPECT_EQ(JsonNumber(3.0), "3");
  EXPECT_EQ(JsonNumber(-0.5), "-0.5");
  EXPECT_EQ(JsonNumber(0.1), "0.1");
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::quiet_NaN()), "null");
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::infinity()), "null");
  for (double v : {1.0 / 3.0, 2.5e-17, 6.02214076e23, 1e16 + 2}) {
    EXPECT_EQ(std::strtod(JsonNumber(v).c_str(), nullptr), v) << JsonNumber(v);
  }
}

}  // namespace
}  // namespace moe
