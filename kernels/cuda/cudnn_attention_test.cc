// What of the cuDNN attention runs without a GPU: every descriptor of both graphs finalises (cuDNN
// validates each one's attributes then), and on a machine without a device a plan request fails
// with a message naming the shape and cuDNN's reason rather than crashing. The fused kernels
// themselves run in tests/gpu/kernel_check (group "attention") on a GPU machine.
#include "kernels/cuda/cudnn_attention.h"

#include <cuda_runtime_api.h>

#include <string>

#include "gtest/gtest.h"

namespace moe::kernels {
namespace {

// {batch, seq, heads, qk_dim, v_dim, scale}.
constexpr float kScale = 0.125f;

TEST(CudnnAttentionTest, EveryDescriptorFinalises) {
  for (const AttentionShape& s : {AttentionShape{8, 4096, 16, 96, 64, kScale}, AttentionShape{1, 300, 2, 192, 128, kScale},
                                 AttentionShape{2, 5, 1, 64, 64, kScale}}) {
    auto fwd = CudnnAttention::BuildOperations(s, /*backward=*/false);
    ASSERT_TRUE(fwd.ok()) << fwd.status();
    // matmul, scale, 2 indices, compare, select, max, sub, exp, sum, log, add, div, matmul.
    EXPECT_EQ(*fwd, 14);
    auto bwd = CudnnAttention::BuildOperations(s, /*backward=*/true);
    ASSERT_TRUE(bwd.ok()) << bwd.status();
    // rowsum chain 3; P 8 (matmul, scale, sub, 4 mask ops, exp); dV 2; dP..dS 4; dK 2; dQ 2.
    EXPECT_EQ(*bwd, 21);
  }
}

TEST(CudnnAttentionTest, NoDeviceIsAClearError) {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) GTEST_SKIP() << "a GPU is present";
  CudnnAttention attention(nullptr);
  auto bytes = attention.ForwardWorkspaceBytes(AttentionShape{1, 128, 2, 96, 64, kScale});
  ASSERT_FALSE(bytes.ok());
  const std::string message(bytes.status().message());
  EXPECT_NE(message.find("cuDNN attention forward for B1 T128 H2 qk96 v64"), std::string::npos) << message;
  EXPECT_NE(message.find("cudnnCreate"), std::string::npos) << message;
  // The same answer again, from the cache of refused shapes.
  EXPECT_EQ(attention.ForwardWorkspaceBytes(AttentionShape{1, 128, 2, 96, 64, kScale}).status(), bytes.status());
}

}  // namespace
}  // namespace moe::kernels
