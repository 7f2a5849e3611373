// Cross-entropy: loss against an FP64 reference (ignored rows, large logits), gradient by finite
// differences, (softmax - onehot) * grad_scale, zero gradient rows for ignored targets.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::ExpectGradientMatches;
using testing::RandomVector;

TEST(CrossEntropy, LossMatchesReference) {
  CpuBackend be(2);
  const int64_t n = 6, vocab = 50;
  auto logits = RandomVector(n * vocab, 1, -5.0f, 5.0f);
  for (int64_t j = 0; j < vocab; ++j) logits[2 * vocab + j] += 1000.0f;  // needs max subtraction
  const std::vector<int32_t> targets = {3, -1, 49, 0, -1, 17};
  double want = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    if (targets[t] < 0) continue;
    double mx = -1e300, sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j)
      mx = std::max(mx, static_cast<double>(logits[t * vocab + j]));
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(logits[t * vocab + j] - mx);
    want += mx + std::log(sum) - logits[t * vocab + targets[t]];
  }
  EXPECT_NEAR(be.CrossEntropy(logits.data(), targets.data(), n, vocab, 1.0f, nullptr), want, 1e-4);

  std::vector<float> d(n * vocab, 7.0f);
  const float scale = 0.25f;
  EXPECT_NEAR(be.CrossEntropy(logits.data(), targets.data(), n, vocab, scale, d.data()), want,
              1e-4);
  for (int64_t t = 0; t < n; ++t) {
    double rowsum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) rowsum += d[t * vocab + j];
    EXPECT_NEAR(rowsum, 0.0, 1e-6);  // softmax sums to 1, onehot to 1 (or the row is zero)
    if (targets[t] < 0) {
      for (int64_t j = 0; j < vocab; ++j) EXPECT_EQ(d[t * vocab + j], 0.0f);
    } else {
      EXPECT_LT(d[t * vocab + targets[t]], 0.0f);
    }
  }
}

TEST(CrossEntropy, GradientFiniteDifferences) {
  CpuBackend be(2);
  const int64_t n = 5, vocab = 37;
  auto logits = RandomVector(n * vocab, 2, -3.0f, 3.0f);
  const std::vector<int32_t> targets = {0, 36, -1, 5, 5};
  const float scale = 0.5f;
  std::vector<float> d(n * vocab);
  be.CrossEntropy(logits.data(), targets.data(), n, vocab, scale, d.data());
  ExpectGradientMatches("d_logits", logits, d, [&] {
    return scale * be.CrossEntropy(logits.data(), targets.data(), n, vocab, 1.0f, nullptr);
  });
}

TEST(CrossEntropy, GradientInPlaceOverLogits) {
  CpuBackend be(2);
  const int64_t n = 4, vocab = 29;
  auto logits = RandomVector(n * vocab, 4, -3.0f, 3.0f);
  const std::vector<int32_t> targets = {7, -1, 0, 28};
  std::vector<float> d(n * vocab);
  const double loss = be.CrossEntropy(logits.data(), targets.data(), n, vocab, 0.5f, d.data());
  const double in_place =
      be.CrossEntropy(logits.data(), targets.data(), n, vocab, 0.5f, logits.data());
  EXPECT_EQ(in_place, loss);
  EXPECT_EQ(logits, d);
}

TEST(CrossEntropy, SameResultForAnyThreadCount) {
  const int64_t n = 400, vocab = 300;
  auto logits = RandomVector(n * vocab, 3, -4.0f, 4.0f);
  std::vector<int32_t> targets(n);
  for (int64_t t = 0; t < n; ++t) targets[t] = static_cast<int32_t>((t * 37) % vocab);
  std::vector<float> d1(n * vocab), d2(n * vocab);
  CpuBackend one(1), two(2);
  EXPECT_EQ(one.CrossEntropy(logits.data(), targets.data(), n, vocab, 1.0f / n, d1.data()),
            two.CrossEntropy(logits.data(), targets.data(), n, vocab, 1.0f / n, d2.data()));
  EXPECT_EQ(d1, d2);
}

}  // namespace
}  // namespace moe::kernels
