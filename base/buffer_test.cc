#include "base/buffer.h"

#include <cmath>
#include <cstdlib>

#include "gtest/gtest.h"

namespace moe {
namespace {

TEST(Buffer, HostMemoryIsPoisonedNotZeroed) {
  Buffer<float> f(100);
  for (float v : f) EXPECT_TRUE(std::isnan(v));  // a read before any write shows up as NaN
  Buffer<int32_t> i(10);
  for (int32_t v : i) EXPECT_EQ(v, -1);
}

TEST(Buffer, ResizeWithinCapacityKeepsStorageAndGrowingReallocates) {
  Buffer<float> b(64);
  float* p = b.data();
  b[3] = 7.0f;
  b.resize(16);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 16);
  EXPECT_EQ(b[3], 7.0f);
  b.resize(64);  // back within capacity
  EXPECT_EQ(b.data(), p);
  b.resize(65);  // growth: new storage, contents undefined (poisoned), at least a quarter more
  EXPECT_EQ(b.size(), 65);
  EXPECT_TRUE(std::isnan(b[3]));
  float* grown = b.data();
  b.resize(80);  // within the 64 + 16 = 80 it reserved
  EXPECT_EQ(b.data(), grown);
  b.reset();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.data(), nullptr);
}

TEST(Buffer, MovesAndAssignsFromHost) {
  Buffer<float> a;
  const float v[3] = {1, 2, 3};
  a.AssignFromHost(v, 3);
  Buffer<float> b(std::move(a));
  EXPECT_TRUE(a.empty());
  ASSERT_EQ(b.size(), 3);
  EXPECT_EQ(b[2], 3.0f);
  Buffer<float> c(5);
  c = std::move(b);
  EXPECT_EQ(c.size(), 3);
  EXPECT_EQ(c[0], 1.0f);
}

// A space that counts its allocations: each Buffer frees into the space it came from.
int live = 0;
void* CountingAllocate(size_t bytes) {
  ++live;
  return std::malloc(bytes);
}
void CountingFree(void* p, size_t) {
  --live;
  std::free(p);
}
const MemorySpace kCounting{"counting", &CountingAllocate, &CountingFree, false};

TEST(Buffer, EachBufferReturnsMemoryToItsOwnSpace) {
  Buffer<float> host(8);
  SetMemorySpace(kCounting);
  {
    Buffer<float> counted(8);
    EXPECT_EQ(live, 1);
    SetMemorySpace(HostMemorySpace());  // switching while `counted` is alive is fine
    Buffer<float> host2(4);
    EXPECT_EQ(live, 1);
  }
  EXPECT_EQ(live, 0);
  EXPECT_STREQ(CurrentMemorySpace().name, "host");
}

}  // namespace
}  // namespace moe
