// RMSNorm: forward against an FP64 reference (and the BF16-rounded variant), backward by finite
// differences, dw accumulation and its independence of the thread count.
#include <cmath>
#include <vector>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::ExpectGradientMatches;
using testing::ProbeLoss;
using testing::RandomVector;

TEST(RmsNorm, ForwardMatchesReference) {
  CpuBackend be(2);
  const int64_t rows = 7, dim = 96;
  const float eps = 1e-6f;
  auto x = RandomVector(rows * dim, 1, -3.0f, 3.0f), w = RandomVector(dim, 2, 0.5f, 1.5f);
  std::vector<float> y(rows * dim), yr(rows * dim), rstd(rows), rstd2(rows);
  be.RmsNormForward(x.data(), w.data(), rows, dim, eps, false, y.data(), rstd.data());
  be.RmsNormForward(x.data(), w.data(), rows, dim, eps, true, yr.data(), rstd2.data());
  for (int64_t i = 0; i < rows; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(x[i * dim + j]) * x[i * dim + j];
    const double r = 1.0 / std::sqrt(ss / dim + eps);
    EXPECT_NEAR(rstd[i], r, 1e-6 * r);
    EXPECT_EQ(rstd[i], rstd2[i]);
    for (int64_t j = 0; j < dim; ++j) {
      EXPECT_NEAR(y[i * dim + j], w[j] * x[i * dim + j] * r, 1e-5);
      EXPECT_EQ(yr[i * dim + j], w[j] * moe::RoundToBf16(x[i * dim + j] * rstd[i]));
    }
  }
}

TEST(RmsNorm, BackwardFiniteDifferences) {
  CpuBackend be(2);
  const int64_t rows = 5, dim = 48;
  const float eps = 1e-6f;
  auto x = RandomVector(rows * dim, 3), w = RandomVector(dim, 4, 0.5f, 1.5f);
  auto probe = RandomVector(rows * dim, 5);
  std::vector<float> y(rows * dim), rstd(rows), dx(rows * dim), dw(dim, 0.5f);
  be.RmsNormForward(x.data(), w.data(), rows, dim, eps, false, y.data(), rstd.data());
  be.RmsNormBackward(x.data(), w.data(), rstd.data(), probe.data(), rows, dim, dx.data(),
                     dw.data());
  for (float& g : dw) g -= 0.5f;  // dw was accumulated onto 0.5
  auto loss = [&] {
    be.RmsNormForward(x.data(), w.data(), rows, dim, eps, false, y.data(), rstd.data());
    return ProbeLoss(y.data(), probe);
  };
  ExpectGradientMatches("dx", x, dx, loss);
  ExpectGradientMatches("dw", w, dw, loss);
}

// A saved activation kept as BF16 bits (ValuesIn::Bits) gives exactly what its FP32 twin gives.
TEST(RmsNorm, BackwardReadsBf16BitsLikeTheirFp32Values) {
  CpuBackend be(2);
  const int64_t rows = 70, dim = 520;  // over the parallel threshold
  auto x = RandomVector(rows * dim, 9, -2.0f, 2.0f), w = RandomVector(dim, 10), dy = RandomVector(rows * dim, 11);
  std::vector<uint16_t> bits(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    bits[i] = moe::FloatToBf16Bits(x[i]);
    x[i] = moe::Bf16BitsToFloat(bits[i]);
  }
  std::vector<float> y(rows * dim), rstd(rows), dx1(rows * dim), dx2(rows * dim), dw1(dim, 0.25f), dw2(dim, 0.25f);
  be.RmsNormForward(x.data(), w.data(), rows, dim, 1e-6f, false, y.data(), rstd.data());
  be.RmsNormBackward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx1.data(), dw1.data());
  be.RmsNormBackward(ValuesIn::Bits(bits.data()), w.data(), rstd.data(), dy.data(), rows, dim, dx2.data(),
                     dw2.data());
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dw1, dw2);
}

TEST(RmsNorm, DwIndependentOfThreadCount) {
  const int64_t rows = 300, dim = 256;
  auto x = RandomVector(rows * dim, 6), w = RandomVector(dim, 7), dy = RandomVector(rows * dim, 8);
  std::vector<float> y(rows * dim), rstd(rows), dx1(rows * dim), dx2(rows * dim), dw1(dim, 0.0f),
      dw2(dim, 0.0f);
  CpuBackend one(1), two(2);
  one.RmsNormForward(x.data(), w.data(), rows, dim, 1e-6f, false, y.data(), rstd.data());
  one.RmsNormBackward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx1.data(),
                      dw1.data());
  two.RmsNormBackward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx2.data(),
                      dw2.data());
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dw1, dw2);
}

}  // namespace
}  // namespace moe::kernels
