// The GEMM rate probe returns a plausible positive rate.
#include "kernels/cpu/peak_flops.h"

#include "gtest/gtest.h"

namespace moe::kernels {
namespace {

TEST(PeakFlops, MeasuresAPositiveRate) {
  const double flops = MeasureGemmFlops(256, 0.05);
  EXPECT_GT(flops, 1e8);   // any machine that runs the tests does more than 0.1 GFLOP/s
  EXPECT_LT(flops, 1e14);  // and less than 100 TFLOP/s in FP32 on CPU
  EXPECT_EQ(MeasureGemmFlops(0, 0.01), 0.0);
}

}  // namespace
}  // namespace moe::kernels
