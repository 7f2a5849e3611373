// Elementwise ops, SwiGLU (finite differences), embedding and row gather/scatter (values, finite
// differences, determinism across thread counts), and the data-movement ops (Copy2D, Fill, RowDot,
// ScaleRows: exact values).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::ExpectGradientMatches;
using testing::ProbeLoss;
using testing::RandomVector;

// Distance in units in the last place between two finite floats of the same sign (or zero).
int64_t UlpDistance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

// ExpF (the vectorisable e^x of the softmax and SwiGLU loops) against e^x in double, rounded to float,
// over every 97th float in [-104, 89] (about 10^7 values, subnormal and overflowing results included),
// and its special values.
TEST(Elementwise, ExpFWithinTwoUlpOfExactResult) {
  int64_t worst = 0;
  float worst_x = 0;
  int64_t checked = 0;
  for (const float sign : {-1.0f, 1.0f}) {
    const float limit = sign < 0 ? 104.0f : 89.0f;
    int32_t limit_bits;
    std::memcpy(&limit_bits, &limit, 4);
    for (int32_t bits = 0; bits <= limit_bits; bits += 97) {
      float magnitude;
      std::memcpy(&magnitude, &bits, 4);
      const float x = sign * magnitude;
      const float want = static_cast<float>(std::exp(static_cast<double>(x)));
      const float got = cpu_internal::ExpF(x);
      if (std::isinf(want)) {
        ASSERT_TRUE(std::isinf(got)) << x;
        continue;
      }
      const int64_t d = UlpDistance(got, want);
      if (d > worst) worst = d, worst_x = x;
      ++checked;
    }
  }
  EXPECT_GT(checked, 5000000);
  EXPECT_LE(worst, 2) << "at x = " << worst_x;
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu_internal::ExpF(0.0f), 1.0f);
  EXPECT_EQ(cpu_internal::ExpF(-inf), 0.0f);
  EXPECT_EQ(cpu_internal::ExpF(inf), inf);
  EXPECT_EQ(cpu_internal::ExpF(89.0f), inf);
  EXPECT_EQ(cpu_internal::ExpF(-200.0f), 0.0f);
  EXPECT_TRUE(std::isnan(cpu_internal::ExpF(std::numeric_limits<float>::quiet_NaN())));
}

// SumSquares is FP64 and independent of the thread count (fixed chunks and lanes).
TEST(Elementwise, SumSquaresMatchesLongDoubleForAnyThreadCount) {
  const std::vector<float> x = RandomVector(100003, 7);
  long double want = 0;
  for (float v : x) want += static_cast<long double>(v) * v;
  const double one = CpuBackend(1).SumSquares(x.data(), static_cast<int64_t>(x.size()));
  const double two = CpuBackend(2).SumSquares(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(one, two);
  EXPECT_NEAR(one, static_cast<double>(want), 1e-12 * static_cast<double>(want));
  EXPECT_EQ(CpuBackend(2).SumSquares(x.data(), 5), static_cast<double>(x[0]) * x[0] + static_cast<double>(x[1]) * x[1] +
                                                       static_cast<double>(x[2]) * x[2] + static_cast<double>(x[3]) * x[3] +
                                                       static_cast<double>(x[4]) * x[4]);
}

TEST(Elementwise, RoundToBf16NearestEven) {
  CpuBackend be(2);
  std::vector<float> x = {1.0f + std::ldexp(1.0f, -8),      // halfway, even is 1.0
                          1.0f + 3 * std::ldexp(1.0f, -8),  // halfway, even is 1 + 2^-6
                          1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20),  // above halfway
                          -2.5f, 0.0f};
  be.RoundToBf16(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_EQ(x[1], 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(x[2], 1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(x[3], -2.5f);
  EXPECT_EQ(x[4], 0.0f);

  auto big = RandomVector(100000, 3, -100.0f, 100.0f);
  auto want = big;
  be.RoundToBf16(big.data(), static_cast<int64_t>(big.size()));
  for (size_t i = 0; i < big.size(); ++i) ASSERT_EQ(big[i], moe::RoundToBf16(want[i]));
}

// PackBf16 writes the bits RoundToBf16 rounds to, UnpackBf16 gives those values back exactly, and
// RoundAndPackBf16 does both in one pass: the same bits and the same rounded values, bit for bit
// (infinities and NaN included), on one thread and on several.
TEST(Elementwise, PackUnpackAndRoundAndPackAgreeWithRounding) {
  auto x = RandomVector(100003, 11, -50.0f, 50.0f);
  x[0] = std::numeric_limits<float>::infinity();
  x[1] = -std::numeric_limits<float>::infinity();
  x[2] = std::numeric_limits<float>::quiet_NaN();
  x[3] = 1.0f + std::ldexp(1.0f, -8);  // halfway: to even
  const int64_t n = static_cast<int64_t>(x.size());
  auto rounded = x;
  CpuBackend(1).RoundToBf16(rounded.data(), n);
  for (int threads : {1, 2}) {
    CpuBackend be(threads);
    std::vector<uint16_t> bits(n), fused_bits(n);
    be.PackBf16(x.data(), n, bits.data());
    std::vector<float> back(n);
    be.UnpackBf16(bits.data(), n, back.data());
    auto fused = x;
    be.RoundAndPackBf16(fused.data(), n, fused_bits.data());
    ASSERT_EQ(bits, fused_bits) << threads << " threads";
    ASSERT_EQ(std::memcmp(back.data(), rounded.data(), n * sizeof(float)), 0) << threads << " threads";
    ASSERT_EQ(std::memcmp(fused.data(), rounded.data(), n * sizeof(float)), 0) << threads << " threads";
  }
}

TEST(Elementwise, AddScaleSumSquares) {
  CpuBackend be(2);
  const int64_t n = 70001;
  auto a = RandomVector(n, 1), y = RandomVector(n, 2);
  auto y0 = y;
  be.Add(a.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], y0[i] + a[i]);
  be.Scale(y.data(), n, 0.5f);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], (y0[i] + a[i]) * 0.5f);
  // The residual add stored as BF16: the FP32 sum, rounded (nearest even), for any thread count.
  for (int threads : {1, 2}) {
    CpuBackend t(threads);
    std::vector<float> r = y0;
    t.AddAndRoundToBf16(a.data(), r.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(r[i], moe::RoundToBf16(y0[i] + a[i])) << i;
  }

  double want = 0.0;
  for (float v : a) want += static_cast<double>(v) * v;
  const double got = be.SumSquares(a.data(), n);
  EXPECT_NEAR(got, want, 1e-9 * want);
  CpuBackend one(1);
  EXPECT_EQ(one.SumSquares(a.data(), n), got);  // fixed chunking: bitwise the same
  EXPECT_EQ(be.SumSquares(a.data(), 0), 0.0);
}

TEST(DataMovement, Copy2DPaddedLeadingDims) {
  CpuBackend be(2);
  const int64_t rows = 5, cols = 7, src_ld = 9, dst_ld = 11;
  const auto src = RandomVector(rows * src_ld, 20);
  const auto dst0 = RandomVector(rows * dst_ld, 21);
  for (bool accumulate : {false, true}) {
    auto dst = dst0;
    be.Copy2D(src.data(), src_ld, dst.data(), dst_ld, rows, cols, accumulate);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < dst_ld; ++c) {
        const int64_t i = r * dst_ld + c;
        const float in = src[r * src_ld + c];
        const float want = c >= cols ? dst0[i] : accumulate ? dst0[i] + in : in;  // padding kept
        ASSERT_EQ(dst[i], want) << "accumulate " << accumulate << " r " << r << " c " << c;
      }
    }
  }
}

TEST(DataMovement, CopyContiguousAndEmpty) {
  CpuBackend be(2);
  const int64_t n = 100003;  // above the OpenMP threshold
  const auto src = RandomVector(n, 22);
  std::vector<float> dst(n, NAN);
  be.Copy(src.data(), dst.data(), n);
  EXPECT_EQ(dst, src);
  // Contiguous rows (ld == cols) are one run too; accumulate adds.
  const int64_t rows = 5, cols = 20000;
  auto acc = RandomVector(rows * cols, 23);
  auto want = acc;
  for (int64_t i = 0; i < rows * cols; ++i) want[i] += src[i];
  be.Copy2D(src.data(), cols, acc.data(), cols, rows, cols, true);
  EXPECT_EQ(acc, want);
  std::vector<float> untouched(8, 5.0f);  // empty shapes write nothing
  be.Copy2D(src.data(), 4, untouched.data(), 4, 0, 4, false);
  be.Copy2D(src.data(), 4, untouched.data(), 4, 2, 0, true);
  be.Copy(src.data(), untouched.data(), 0);
  EXPECT_EQ(untouched, std::vector<float>(8, 5.0f));
}

TEST(DataMovement, Fill) {
  CpuBackend be(2);
  const int64_t n = 70001;
  std::vector<float> x(n + 1, 1.0f);
  be.Fill(x.data(), n, -3.25f);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], -3.25f);
  EXPECT_EQ(x[n], 1.0f);
  be.Fill(x.data(), 0, 7.0f);
  EXPECT_EQ(x[0], -3.25f);
}

TEST(DataMovement, RowDotAccumulatesInFp64) {
  CpuBackend two(2), one(1);
  // FP32 accumulation would cancel the 1 against 1e8; FP64 keeps it.
  const std::vector<float> a = {1e8f, 1.0f, -1e8f, 0.5f, 2.0f, 0.25f};
  const std::vector<float> b = {1.0f, 1.0f, 1.0f, 3.0f, -1.5f, 4.0f};
  std::vector<float> out(2, NAN);
  two.RowDot(a.data(), b.data(), 2, 3, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 0.5f * 3.0f - 2.0f * 1.5f + 0.25f * 4.0f);

  const int64_t rows = 100, dim = 1000;  // above the OpenMP threshold
  const auto x = RandomVector(rows * dim, 24), y = RandomVector(rows * dim, 25);
  std::vector<float> got(rows, NAN), got1(rows, NAN);
  two.RowDot(x.data(), y.data(), rows, dim, got.data());
  one.RowDot(x.data(), y.data(), rows, dim, got1.data());
  for (int64_t r = 0; r < rows; ++r) {
    double want = 0.0;
    for (int64_t j = 0; j < dim; ++j) want += static_cast<double>(x[r * dim + j]) * y[r * dim + j];
    ASSERT_EQ(got[r], static_cast<float>(want)) << r;
  }
  EXPECT_EQ(got, got1);
}

TEST(DataMovement, ScaleRows) {
  CpuBackend be(2);
  const int64_t rows = 50, dim = 1001;
  const auto x0 = RandomVector(rows * dim, 26), s = RandomVector(rows, 27, -2.0f, 2.0f);
  auto x = x0;
  be.ScaleRows(x.data(), s.data(), rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(x[r * dim + j], x0[r * dim + j] * s[r]);
  }
}

TEST(Swiglu, ForwardAndFiniteDifferences) {
  CpuBackend be(2);
  const int64_t n = 257;
  auto a = RandomVector(n, 5, -4.0f, 4.0f), c = RandomVector(n, 6, -2.0f, 2.0f);
  auto probe = RandomVector(n, 7);
  std::vector<float> m(n), da(n), dc(n);
  be.SwigluForward(a.data(), c.data(), m.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double silu = a[i] / (1.0 + std::exp(-static_cast<double>(a[i])));
    EXPECT_NEAR(m[i], silu * c[i], 1e-5);
  }
  be.SwigluBackward(a.data(), c.data(), probe.data(), da.data(), dc.data(), n);
  auto loss = [&] {
    be.SwigluForward(a.data(), c.data(), m.data(), n);
    return ProbeLoss(m.data(), probe);
  };
  ExpectGradientMatches("da", a, da, loss);
  ExpectGradientMatches("dc", c, dc, loss);
}

// Inputs kept as BF16 bits (ValuesIn::Bits) give exactly what their FP32 twins give: SwiGLU's
// backward (either input) and RowDot's second operand.
TEST(Elementwise, Bf16BitsInputsReadLikeTheirFp32Values) {
  CpuBackend be(2);
  const int64_t n = 40000;  // over the parallel threshold
  auto a = RandomVector(n, 21, -4.0f, 4.0f), c = RandomVector(n, 22), dm = RandomVector(n, 23);
  std::vector<uint16_t> a16(n), c16(n);
  for (int64_t i = 0; i < n; ++i) {
    a16[i] = moe::FloatToBf16Bits(a[i]);
    a[i] = moe::Bf16BitsToFloat(a16[i]);
    c16[i] = moe::FloatToBf16Bits(c[i]);
    c[i] = moe::Bf16BitsToFloat(c16[i]);
  }
  std::vector<float> da(n), dc(n), da2(n), dc2(n);
  be.SwigluBackward(a.data(), c.data(), dm.data(), da.data(), dc.data(), n);
  be.SwigluBackward(ValuesIn::Bits(a16.data()), ValuesIn::Bits(c16.data()), dm.data(), da2.data(), dc2.data(), n);
  EXPECT_EQ(da, da2);
  EXPECT_EQ(dc, dc2);
  be.SwigluBackward(ValuesIn::Bits(a16.data()), c.data(), dm.data(), da2.data(), dc2.data(), n);
  EXPECT_EQ(da, da2);
  EXPECT_EQ(dc, dc2);
  // Outputs written as BF16 bits: the FP32 results, rounded to nearest even.
  std::vector<uint16_t> da16(n), dc16(n), m16(n);
  std::vector<float> m(n);
  be.SwigluBackward(a.data(), c.data(), dm.data(), ValuesOut::Bits(da16.data()), ValuesOut::Bits(dc16.data()), n);
  be.SwigluForward(a.data(), c.data(), m.data(), n);
  be.SwigluForward(a.data(), c.data(), ValuesOut::Bits(m16.data()), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(da16[i], moe::FloatToBf16Bits(da[i])) << i;
    ASSERT_EQ(dc16[i], moe::FloatToBf16Bits(dc[i])) << i;
    ASSERT_EQ(m16[i], moe::FloatToBf16Bits(m[i])) << i;
  }

  const int64_t rows = 80, dim = 500;
  std::vector<float> out(rows), out2(rows);
  be.RowDot(dm.data(), a.data(), rows, dim, out.data());
  be.RowDot(dm.data(), ValuesIn::Bits(a16.data()), rows, dim, out2.data());
  EXPECT_EQ(out, out2);
}

TEST(Embedding, ForwardBackward) {
  CpuBackend be(2);
  const int64_t vocab = 11, dim = 40, n = 23;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7) % 5);  // repeated ids
  auto table = RandomVector(vocab * dim, 8);
  std::vector<float> out(n * dim);
  be.EmbeddingForward(ids.data(), n, table.data(), nullptr, dim, out.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(out[i * dim + j], table[ids[i] * dim + j]);
  }
  // A table of BF16 bits (BF16 mode's working copy) gives its values exactly.
  std::vector<uint16_t> bits(vocab * dim);
  for (int64_t i = 0; i < vocab * dim; ++i) bits[i] = moe::FloatToBf16Bits(table[i]);
  be.EmbeddingForward(ids.data(), n, nullptr, bits.data(), dim, out.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(out[i * dim + j], moe::Bf16BitsToFloat(bits[ids[i] * dim + j]));
  }
  auto probe = RandomVector(n * dim, 9);
  std::vector<float> d_table(vocab * dim, 0.25f);  // accumulates on top of existing contents
  be.EmbeddingBackward(ids.data(), n, probe.data(), dim, d_table.data());
  for (float& g : d_table) g -= 0.25f;
  ExpectGradientMatches("d_table", table, d_table, [&] {
    be.EmbeddingForward(ids.data(), n, table.data(), nullptr, dim, out.data());
    return ProbeLoss(out.data(), probe);
  });
}

TEST(Embedding, BackwardIsDeterministicAcrossThreadCounts) {
  const int64_t vocab = 7, dim = 300, n = 2000;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 13) % vocab);
  auto d_out = RandomVector(n * dim, 10);
  std::vector<float> g1(vocab * dim, 0.0f), g2(vocab * dim, 0.0f);
  CpuBackend one(1), two(2);
  one.EmbeddingBackward(ids.data(), n, d_out.data(), dim, g1.data());
  two.EmbeddingBackward(ids.data(), n, d_out.data(), dim, g2.data());
  EXPECT_EQ(g1, g2);
  // And equal to the plain sequential loop.
  std::vector<float> want(vocab * dim, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dim; ++j) want[ids[i] * dim + j] += d_out[i * dim + j];
  }
  EXPECT_EQ(g2, want);
}

TEST(Rows, GatherRowBlocksIsTheGatherOfItsRuns) {
  CpuBackend be(2);
  const int64_t rows = 12, dim = 5;
  const auto src = RandomVector(rows * dim, 21);
  // Runs out of order, one empty, one over the whole tail; dst is tiled by them in order.
  const std::vector<Backend::RowBlock> blocks = {{7, 3}, {0, 2}, {4, 0}, {2, 5}, {11, 1}};
  std::vector<int32_t> idx;
  for (const auto& b : blocks) {
    for (int64_t i = 0; i < b.rows; ++i) idx.push_back(static_cast<int32_t>(b.src_row + i));
  }
  const int64_t n = static_cast<int64_t>(idx.size());
  std::vector<float> want(n * dim), got(n * dim + dim, -7.0f);
  be.GatherRows(src.data(), idx.data(), n, dim, want.data());
  be.GatherRowBlocks(src.data(), blocks, dim, got.data());
  EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + n * dim), want);
  EXPECT_EQ(std::vector<float>(got.begin() + n * dim, got.end()), std::vector<float>(dim, -7.0f));  // untouched
}

TEST(Rows, GatherAndScatterAreAdjoint) {
  CpuBackend be(2);
  const int64_t rows = 9, dim = 33, n = 20;
  std::vector<int32_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<int32_t>((i * 4 + 1) % rows);
  auto src = RandomVector(rows * dim, 11);
  auto scale = RandomVector(n, 12, 0.1f, 2.0f);
  std::vector<float> gathered(n * dim);
  be.GatherRows(src.data(), idx.data(), n, dim, gathered.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(gathered[i * dim + j], src[idx[i] * dim + j]);
  }

  // Gather backward is an unscaled scatter-add.
  auto probe = RandomVector(n * dim, 13);
  std::vector<float> d_src(rows * dim, 0.0f);
  be.ScatterAddRows(probe.data(), idx.data(), nullptr, n, dim, d_src.data());
  ExpectGradientMatches("gather d_src", src, d_src, [&] {
    be.GatherRows(src.data(), idx.data(), n, dim, gathered.data());
    return ProbeLoss(gathered.data(), probe);
  });

  // Scaled scatter-add: d rows_in[i] = scale[i] * probe_dst[idx[i]],
  //                     d scale[i] = rows_in[i] . probe_dst[idx[i]].
  auto rows_in = RandomVector(n * dim, 14);
  auto probe_dst = RandomVector(rows * dim, 15);
  std::vector<float> dst(rows * dim);
  auto loss = [&] {
    std::fill(dst.begin(), dst.end(), 0.0f);
    be.ScatterAddRows(rows_in.data(), idx.data(), scale.data(), n, dim, dst.data());
    return ProbeLoss(dst.data(), probe_dst);
  };
  std::vector<float> g_gathered(n * dim), d_rows(n * dim), d_scale(n);
  be.GatherRows(probe_dst.data(), idx.data(), n, dim, g_gathered.data());
  for (int64_t i = 0; i < n; ++i) {
    double dot = 0.0;
    for (int64_t j = 0; j < dim; ++j) {
      d_rows[i * dim + j] = scale[i] * g_gathered[i * dim + j];
      dot += static_cast<double>(rows_in[i * dim + j]) * g_gathered[i * dim + j];
    }
    d_scale[i] = static_cast<float>(dot);
  }
  ExpectGradientMatches("scatter d_rows", rows_in, d_rows, loss);
  ExpectGradientMatches("scatter d_scale", scale, d_scale, loss);
}

TEST(Rows, ScatterAddDeterministicWithRepeatedIndices) {
  const int64_t rows = 5, dim = 200, n = 3000;
  std::vector<int32_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<int32_t>((i * 3) % rows);
  auto src = RandomVector(n * dim, 16);
  auto scale = RandomVector(n, 17);
  std::vector<float> d1(rows * dim, 1.0f), d2(rows * dim, 1.0f), want(rows * dim, 1.0f);
  CpuBackend one(1), two(2);
  one.ScatterAddRows(src.data(), idx.data(), scale.data(), n, dim, d1.data());
  two.ScatterAddRows(src.data(), idx.data(), scale.data(), n, dim, d2.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dim; ++j) want[idx[i] * dim + j] += scale[i] * src[i * dim + j];
  }
  EXPECT_EQ(d1, d2);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(d2[i], want[i], 1e-4) << i;
}

}  // namespace
}  // namespace moe::kernels
