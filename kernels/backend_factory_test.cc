// The factory hands out a working CPU backend, and asking for CUDA in a CPU-only build is a clear
// Unimplemented error (in a --config=cuda build on a machine without a GPU it is a start-up error).
#include "kernels/backend_factory.h"

#include <vector>

#include "gtest/gtest.h"

namespace moe::kernels {
namespace {

TEST(BackendFactoryTest, CpuBackendWorks) {
  BackendOptions options;
  options.num_threads = 1;
  auto backend = CreateBackend(Device::kCpu, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<float> a = {1, 2, 3}, y = {10, 20, 30};
  (*backend)->Add(a.data(), y.data(), 3);
  EXPECT_EQ(y, (std::vector<float>{11, 22, 33}));
}

TEST(BackendFactoryTest, CudaWithoutCudaBuildIsAnError) {
  if (CudaBackendCompiledIn()) GTEST_SKIP() << "built with --config=cuda";
  auto backend = CreateBackend(Device::kCuda, BackendOptions());
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(backend.status().message().find("--config=cuda"), std::string::npos);
}

}  // namespace
}  // namespace moe::kernels
