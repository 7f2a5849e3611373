#include "base/crc32c.h"

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace moe {
namespace {

TEST(Crc32c, KnownVectors) {
  // RFC 3720 (iSCSI) appendix B.4 test vectors.
  EXPECT_EQ(Crc32c("123456789", 9), 0xe3069283u);
  unsigned char zeros[32] = {0};
  EXPECT_EQ(Crc32c(zeros, 32), 0x8a9136aau);
  unsigned char ones[32];
  std::memset(ones, 0xff, 32);
  EXPECT_EQ(Crc32c(ones, 32), 0x62a8ab43u);
  unsigned char inc[32];
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(Crc32c(inc, 32), 0x46dd794eu);
}

TEST(Crc32c, ExtendsIncrementally) {
  const std::string s = "checkpoint shard bytes";
  EXPECT_EQ(Crc32c(s.data() + 5, s.size() - 5, Crc32c(s.data(), 5)), Crc32c(s.data(), s.size()));
}

}  // namespace
}  // namespace moe
