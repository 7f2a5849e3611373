// The matmul peak probe returns plausible positive rates in both precisions.
#include "kernels/cpu/peak_flops.h"

#include "gtest/gtest.h"

namespace moe::kernels {
namespace {

TEST(PeakFlops, MeasuresAPositiveRateInBothPrecisions) {
  for (const MatmulPrecision p : {MatmulPrecision::kFp32, MatmulPrecision::kBf16}) {
    const double flops = MeasureMatmulPeak(p, 128, 64, 192, 2, 0.02);
    EXPECT_GT(flops, 1e8);   // any machine that runs the tests does more than 0.1 GFLOP/s
    EXPECT_LT(flops, 1e14);  // and less than 100 TFLOP/s on CPU
  }
  EXPECT_EQ(MeasureMatmulPeak(MatmulPrecision::kFp32, 0, 1, 1), 0.0);
}

}  // namespace
}  // namespace moe::kernels
