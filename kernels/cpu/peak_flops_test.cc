// The matmul peak probe returns plausible positive rates in both precisions, also where BF16 products
// run as FP32 (oneDNN's BF16 matmul forced off, as on AVX2-only CPUs).
#include "kernels/cpu/peak_flops.h"

#include <optional>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_util.h"

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

TEST(PeakFlops, Bf16WithoutBf16MatmulTimesTheFp32Matmul) {
  EXPECT_EQ(EffectiveMatmulPrecision(MatmulPrecision::kFp32), MatmulPrecision::kFp32);
  EXPECT_EQ(EffectiveMatmulPrecision(MatmulPrecision::kBf16) == MatmulPrecision::kBf16,
            cpu_internal::Bf16MatmulSupported());
  cpu_internal::SetBf16MatmulSupportedForTesting(false);
  EXPECT_EQ(EffectiveMatmulPrecision(MatmulPrecision::kBf16), MatmulPrecision::kFp32);
  const double flops = MeasureMatmulPeak(MatmulPrecision::kBf16, 128, 64, 192, 2, 0.02);
  cpu_internal::SetBf16MatmulSupportedForTesting(std::nullopt);
  EXPECT_GT(flops, 1e8);
  EXPECT_LT(flops, 1e14);
}

}  // namespace
}  // namespace moe::kernels
