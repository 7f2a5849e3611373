// Gemm and GroupedGemm against a naive FP64 loop: every transpose combination, leading dimensions
// wider than the rows, alpha/beta, empty problems (k == 0 zero-fills with beta == 0); with BF16
// operands, against the FP64 product of the operands rounded to BF16, also with oneDNN's BF16 matmul
// forced off (the FP32 path on rounded operands, as on AVX2-only CPUs).
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::RandomVector;

// Storage for one problem with padded leading dimensions.
struct Problem {
  Transpose ta, tb;
  int64_t m, n, k;
  std::vector<float> a, b, c;
  GemmProblem view;

  Problem(Transpose ta_, Transpose tb_, int64_t m_, int64_t n_, int64_t k_, uint32_t seed)
      : ta(ta_), tb(tb_), m(m_), n(n_), k(k_) {
    const int64_t a_rows = ta == Transpose::kNo ? m : k, a_cols = ta == Transpose::kNo ? k : m;
    const int64_t b_rows = tb == Transpose::kNo ? k : n, b_cols = tb == Transpose::kNo ? n : k;
    const int64_t lda = a_cols + 3, ldb = b_cols + 2, ldc = n + 5;
    a = RandomVector(a_rows * lda, seed);
    b = RandomVector(b_rows * ldb, seed + 1);
    c = RandomVector(m * ldc, seed + 2);
    view = {m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc};
  }

  // alpha op(A) op(B) + beta C0 in FP64, with C0 the initial c (beta == 0 ignores C0); with bf16 the
  // operands rounded to BF16 first.
  std::vector<double> Reference(float alpha, float beta, bool bf16 = false) const {
    auto v = [bf16](float x) { return static_cast<double>(bf16 ? moe::RoundToBf16(x) : x); };
    std::vector<double> r(m * view.ldc);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < view.ldc; ++j) {
        const double c0 = c[i * view.ldc + j];
        if (j >= n) {
          r[i * view.ldc + j] = c0;  // padding must be untouched
          continue;
        }
        double acc = 0.0;
        for (int64_t l = 0; l < k; ++l) {
          const double av = v(ta == Transpose::kNo ? a[i * view.lda + l] : a[l * view.lda + i]);
          const double bv = v(tb == Transpose::kNo ? b[l * view.ldb + j] : b[j * view.ldb + l]);
          acc += av * bv;
        }
        r[i * view.ldc + j] = alpha * acc + (beta == 0.0f ? 0.0 : beta * c0);
      }
    }
    return r;
  }
};

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "at " << i;
}

const Transpose kBoth[] = {Transpose::kNo, Transpose::kYes};

TEST(Gemm, AllTransposesWithPaddedLeadingDims) {
  CpuBackend be(2);
  uint32_t seed = 1;
  for (Transpose ta : kBoth) {
    for (Transpose tb : kBoth) {
      for (float beta : {0.0f, 0.5f}) {
        Problem p(ta, tb, 13, 17, 11, seed += 10);
        const auto want = p.Reference(0.75f, beta);
        be.Gemm(ta, tb, p.view, 0.75f, beta);
        ExpectNear(p.c, want, 1e-5);
      }
    }
  }
}

TEST(Gemm, LargeMatchesReference) {
  CpuBackend be(2);
  Problem p(Transpose::kNo, Transpose::kYes, 130, 70, 300, 7);
  const auto want = p.Reference(1.0f, 1.0f);
  be.Gemm(Transpose::kNo, Transpose::kYes, p.view, 1.0f, 1.0f);
  ExpectNear(p.c, want, 1e-4);
}

TEST(Gemm, KZeroScalesOrZeroFillsC) {
  CpuBackend be(1);
  std::vector<float> c(6, std::numeric_limits<float>::quiet_NaN());
  GemmProblem p{2, 3, 0, nullptr, 0, nullptr, 0, c.data(), 3};
  be.Gemm(Transpose::kNo, Transpose::kNo, p, 1.0f, 0.0f);
  for (float x : c) EXPECT_EQ(x, 0.0f);
  std::fill(c.begin(), c.end(), 2.0f);
  be.Gemm(Transpose::kNo, Transpose::kNo, p, 1.0f, 0.5f);
  for (float x : c) EXPECT_EQ(x, 1.0f);
}

TEST(Gemm, BetaZeroIgnoresNanInC) {
  CpuBackend be(1);
  Problem p(Transpose::kYes, Transpose::kNo, 4, 5, 6, 3);
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j)
      p.c[i * p.view.ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  const auto want = p.Reference(1.0f, 0.0f);
  be.Gemm(p.ta, p.tb, p.view, 1.0f, 0.0f);
  ExpectNear(p.c, want, 1e-5);
}

// A mix of one problem cut into several tiles (3 x 3 of GroupedGemm's 128 x 256), a mid-sized one, many
// small ones (sgemm) and empty ones.
std::vector<Problem> MakeGroup(Transpose ta, Transpose tb, uint32_t seed) {
  std::vector<Problem> ps;
  ps.emplace_back(ta, tb, 300, 520, 24, seed + 4000);
  ps.emplace_back(ta, tb, 96, 40, 64, seed);
  for (int i = 0; i < 9; ++i) ps.emplace_back(ta, tb, 3 + 4 * i, 24, 16, seed + 100 * (i + 1));
  ps.emplace_back(ta, tb, 0, 24, 16, seed + 2000);  // no tokens for this expert
  ps.emplace_back(ta, tb, 5, 24, 0, seed + 3000);   // k == 0
  return ps;
}

TEST(GroupedGemm, MatchesPerProblemReference) {
  for (int threads : {1, 2}) {
    CpuBackend be(threads);
    uint32_t seed = 50;
    for (Transpose ta : kBoth) {
      for (Transpose tb : kBoth) {
        for (float beta : {0.0f, 1.0f}) {
          auto ps = MakeGroup(ta, tb, seed += 7);
          std::vector<std::vector<double>> want;
          std::vector<GemmProblem> views;
          for (auto& p : ps) {
            want.push_back(p.Reference(1.5f, beta));
            views.push_back(p.view);
          }
          be.GroupedGemm(ta, tb, views, 1.5f, beta);
          for (size_t i = 0; i < ps.size(); ++i) {
            SCOPED_TRACE(::testing::Message() << "problem " << i << " threads " << threads);
            ExpectNear(ps[i].c, want[i], 1e-4);
          }
        }
      }
    }
  }
}

TEST(GroupedGemm, KZeroWithBetaZeroOverwritesNan) {
  CpuBackend be(2);
  std::vector<float> c(8, std::numeric_limits<float>::quiet_NaN());
  std::vector<GemmProblem> ps = {{2, 4, 0, nullptr, 0, nullptr, 0, c.data(), 4}};
  be.GroupedGemm(Transpose::kNo, Transpose::kYes, ps, 1.0f, 0.0f);
  for (float x : c) EXPECT_EQ(x, 0.0f);
}

TEST(GroupedGemm, SameResultForAnyThreadCount) {
  CpuBackend one(1), two(2);
  auto p1 = MakeGroup(Transpose::kNo, Transpose::kNo, 9);
  auto p2 = MakeGroup(Transpose::kNo, Transpose::kNo, 9);
  std::vector<GemmProblem> v1, v2;
  for (auto& p : p1) v1.push_back(p.view);
  for (auto& p : p2) v2.push_back(p.view);
  one.GroupedGemm(Transpose::kNo, Transpose::kNo, v1, 1.0f, 0.0f);
  two.GroupedGemm(Transpose::kNo, Transpose::kNo, v2, 1.0f, 0.0f);
  for (size_t i = 0; i < p1.size(); ++i) EXPECT_EQ(p1[i].c, p2[i].c) << "problem " << i;
}

// FP32 products give the same bits at 1 and 2 threads (below AVX-512 through fixed tiles: oneDNN's
// gemm:jit alone differs on these shapes), from one tile (m <= 128, n <= 256) to several. Short k only:
// with a long k and a small C, oneDNN's AVX-512 brgemm may split k among threads, which no product of
// the model does (its long-k products, the weight gradients, have large C).
TEST(Gemm, Fp32SameResultForAnyThreadCount) {
  CpuBackend one(1), two(2);
  const int64_t shapes[][3] = {{128, 32, 64}, {384, 257, 64}, {300, 520, 96}};  // m, n, k
  for (const auto& s : shapes) {
    for (Transpose ta : kBoth) {
      for (Transpose tb : kBoth) {
        Problem p1(ta, tb, s[0], s[1], s[2], 31), p2(ta, tb, s[0], s[1], s[2], 31);
        one.Gemm(ta, tb, p1.view, 1.0f, 0.5f);
        two.Gemm(ta, tb, p2.view, 1.0f, 0.5f);
        EXPECT_EQ(p1.c, p2.c) << s[0] << "x" << s[1] << "x" << s[2] << " ta " << (ta == Transpose::kYes) << " tb "
                              << (tb == Transpose::kYes);
      }
    }
  }
}

// BF16 operands (BF16 mode): every transpose and padded leading dimensions, on the primitive path
// (m·n·k >= 2^15) and the small-product path (sgemm on the rounded values); either way the products
// are those of the rounded operands, accumulated in FP32.
TEST(Gemm, Bf16OperandsAreRoundedThenAccumulatedInFp32) {
  CpuBackend be(2, /*bf16_matmul=*/true);
  uint32_t seed = 300;
  for (Transpose ta : kBoth) {
    for (Transpose tb : kBoth) {
      for (float beta : {0.0f, 0.5f}) {
        Problem p(ta, tb, 37, 45, 64, seed += 10);  // 106,560 multiply-adds: a matmul primitive
        const auto rounded = p.Reference(0.75f, beta, /*bf16=*/true);
        const auto exact = p.Reference(0.75f, beta, /*bf16=*/false);
        be.Gemm(ta, tb, p.view, 0.75f, beta);
        ExpectNear(p.c, rounded, 2e-5);
        double worst = 0;  // the rounding is visible against the FP32 operands' product
        for (size_t i = 0; i < exact.size(); ++i) worst = std::max(worst, std::fabs(p.c[i] - exact[i]));
        EXPECT_GT(worst, 1e-3);
      }
    }
  }
  Problem small(Transpose::kNo, Transpose::kYes, 8, 8, 8, 5);  // 512 multiply-adds: sgemm
  const auto want = small.Reference(1.0f, 0.0f, /*bf16=*/true);
  be.Gemm(Transpose::kNo, Transpose::kYes, small.view, 1.0f, 0.0f);
  ExpectNear(small.c, want, 1e-5);
}

TEST(GroupedGemm, Bf16MatchesReferenceAndAnyThreadCount) {
  std::vector<std::vector<float>> results[2];
  for (int threads : {1, 2}) {
    CpuBackend be(threads, /*bf16_matmul=*/true);
    auto ps = MakeGroup(Transpose::kNo, Transpose::kYes, 77);
    std::vector<GemmProblem> views;
    std::vector<std::vector<double>> want;
    for (auto& p : ps) {
      want.push_back(p.Reference(1.0f, 1.0f, /*bf16=*/true));
      views.push_back(p.view);
    }
    be.GroupedGemm(Transpose::kNo, Transpose::kYes, views, 1.0f, 1.0f);
    for (size_t i = 0; i < ps.size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "problem " << i << " threads " << threads);
      ExpectNear(ps[i].c, want[i], 1e-4);
      results[threads - 1].push_back(ps[i].c);
    }
  }
  EXPECT_EQ(results[0], results[1]);
}

}  // namespace
}  // namespace moe::kernels

namespace moe::kernels {
namespace {

// Operands given as BF16 bits (a_bf16 / b_bf16, padded leading dims) give bit for bit the product of
// their values given as FP32 words, in both GEMM precisions, on the sgemm path (small) and the matmul
// primitive's (large), alone and grouped.
TEST(Gemm, Bf16BitOperandsEqualTheirFp32Values) {
  for (bool bf16_mode : {false, true}) {
    CpuBackend be(2, bf16_mode);
    for (int64_t size : {6, 48, 300}) {  // 300: several of GroupedGemm's tiles
      for (Transpose ta : {Transpose::kNo, Transpose::kYes}) {
        for (Transpose tb : {Transpose::kNo, Transpose::kYes}) {
          Problem fp32(ta, tb, size, size + 5, size + 3, 17);
          for (float& x : fp32.a) x = moe::RoundToBf16(x);
          for (float& x : fp32.b) x = moe::RoundToBf16(x);
          std::vector<uint16_t> a_bits(fp32.a.size()), b_bits(fp32.b.size());
          for (size_t i = 0; i < a_bits.size(); ++i) a_bits[i] = moe::FloatToBf16Bits(fp32.a[i]);
          for (size_t i = 0; i < b_bits.size(); ++i) b_bits[i] = moe::FloatToBf16Bits(fp32.b[i]);
          std::vector<float> c_bits = fp32.c;
          GemmProblem bits = fp32.view;
          bits.a = nullptr;
          bits.b = nullptr;
          bits.a_bf16 = a_bits.data();
          bits.b_bf16 = b_bits.data();
          bits.c = c_bits.data();
          be.Gemm(ta, tb, fp32.view, 0.5f, 1.0f);
          be.Gemm(ta, tb, bits, 0.5f, 1.0f);
          ASSERT_EQ(fp32.c, c_bits) << "bf16 mode " << bf16_mode << " size " << size;
          GemmProblem mixed = fp32.view;  // grouped, A as bits and B as FP32, from the same C
          std::vector<float> c_mixed = fp32.c;
          mixed.a = nullptr;
          mixed.a_bf16 = a_bits.data();
          mixed.c = c_mixed.data();
          be.GroupedGemm(ta, tb, {fp32.view}, 1.0f, 1.0f);
          be.GroupedGemm(ta, tb, {mixed}, 1.0f, 1.0f);
          ASSERT_EQ(fp32.c, c_mixed) << "grouped, bf16 mode " << bf16_mode << " size " << size;
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe::kernels

namespace moe::kernels {
namespace {

// Grouped BF16 products with both operands as BF16 bits run on fixed-shape primitives, the routed rows
// padded (no transposed A) or the reduction over them chunked and padded (transposed A: weight
// gradients). Every transpose pair, row counts off the padding quanta, on both sides of a tile and of a
// chunk, alpha and beta: against the FP64 product of the rounded operands, C's padding untouched, and
// the same bits at 1 and 2 threads.
TEST(GroupedGemm, Bf16BitOperandsOnFixedShapesMatchReference) {
  for (Transpose ta : {Transpose::kNo, Transpose::kYes}) {
    for (Transpose tb : {Transpose::kNo, Transpose::kYes}) {
      std::vector<float> by_threads[2];
      for (int threads : {1, 2}) {
        CpuBackend be(threads, /*bf16_matmul=*/true);
        // (m, n, k): with ta the routed rows are k, else m.
        const int64_t routed[] = {1, 15, 16, 77, 128, 129, 256, 300, 530, 0};
        std::vector<Problem> ps;
        std::vector<std::vector<uint16_t>> a_bits, b_bits;
        for (size_t i = 0; i < std::size(routed); ++i) {
          const int64_t r = routed[i];
          ps.emplace_back(ta, tb, ta == Transpose::kYes ? 48 : r, 40, ta == Transpose::kYes ? r : 64, 91 + i);
        }
        std::vector<GemmProblem> views;
        std::vector<std::vector<double>> want;
        for (auto& p : ps) {
          for (float& x : p.a) x = moe::RoundToBf16(x);
          for (float& x : p.b) x = moe::RoundToBf16(x);
          a_bits.emplace_back(p.a.size());
          b_bits.emplace_back(p.b.size());
          for (size_t j = 0; j < p.a.size(); ++j) a_bits.back()[j] = moe::FloatToBf16Bits(p.a[j]);
          for (size_t j = 0; j < p.b.size(); ++j) b_bits.back()[j] = moe::FloatToBf16Bits(p.b[j]);
          want.push_back(p.Reference(0.5f, 0.75f, /*bf16=*/true));
          GemmProblem v = p.view;
          v.a = nullptr;
          v.b = nullptr;
          v.a_bf16 = a_bits.back().data();
          v.b_bf16 = b_bits.back().data();
          views.push_back(v);
        }
        be.GroupedGemm(ta, tb, views, 0.5f, 0.75f);
        for (size_t i = 0; i < ps.size(); ++i) {
          SCOPED_TRACE(::testing::Message() << "ta " << (ta == Transpose::kYes) << " tb " << (tb == Transpose::kYes)
                                            << " problem " << i << " threads " << threads);
          ExpectNear(ps[i].c, want[i], 2e-4 * std::sqrt(static_cast<double>(std::max<int64_t>(ps[i].k, 1))));
          by_threads[threads - 1].insert(by_threads[threads - 1].end(), ps[i].c.begin(), ps[i].c.end());
        }
      }
      EXPECT_EQ(by_threads[0], by_threads[1]);
    }
  }
}

}  // namespace
}  // namespace moe::kernels

namespace moe::kernels {
namespace {

// Bf16MatmulSupported() forced false for a scope: BF16-mode products as on CPUs where oneDNN has no BF16
// matmul (AVX2 only), whatever this one has.
class NoBf16Matmul {
 public:
  NoBf16Matmul() { cpu_internal::SetBf16MatmulSupportedForTesting(false); }
  ~NoBf16Matmul() { cpu_internal::SetBf16MatmulSupportedForTesting(std::nullopt); }
};

// Without a oneDNN BF16 matmul, BF16-mode products run on the FP32 path with the operands rounded to BF16:
// on sgemm (small), the fixed-shape FP32 primitive (Gemm) and grouped tiles (several per problem), every
// transpose, operands as FP32 words or as BF16 bits (both, as the model's expert products pass them), they
// give the product of the rounded operands within FP32 summation error (a BF16 x BF16 product is exact in
// FP32), visibly apart from the unrounded one, and bits give the same bits as their FP32 values.
TEST(Gemm, Bf16WithoutBf16MatmulRunsFp32OnRoundedOperands) {
  NoBf16Matmul forced;
  CpuBackend be(2, /*bf16_matmul=*/true);
  uint32_t seed = 700;
  for (int64_t size : {8, 40, 300}) {  // 8: sgemm; 40: a primitive; 300: several grouped tiles
    for (Transpose ta : kBoth) {
      for (Transpose tb : kBoth) {
        Problem p(ta, tb, size, size + 5, size + 3, seed += 10);
        const auto rounded = p.Reference(0.75f, 0.5f, /*bf16=*/true);
        const auto exact = p.Reference(0.75f, 0.5f, /*bf16=*/false);
        const double tol = 2e-5 * std::sqrt(static_cast<double>(p.k));
        std::vector<uint16_t> a_bits(p.a.size()), b_bits(p.b.size());
        for (size_t i = 0; i < a_bits.size(); ++i) a_bits[i] = moe::FloatToBf16Bits(p.a[i]);
        for (size_t i = 0; i < b_bits.size(); ++i) b_bits[i] = moe::FloatToBf16Bits(p.b[i]);
        GemmProblem bits = p.view;
        bits.a = nullptr;
        bits.b = nullptr;
        bits.a_bf16 = a_bits.data();
        bits.b_bf16 = b_bits.data();
        const std::vector<float> c0 = p.c;
        for (bool grouped : {false, true}) {
          for (bool as_bits : {false, true}) {
            SCOPED_TRACE(::testing::Message() << "size " << size << " ta " << (ta == Transpose::kYes) << " tb "
                                              << (tb == Transpose::kYes) << " grouped " << grouped << " bits "
                                              << as_bits);
            std::vector<float> c = c0;
            GemmProblem v = as_bits ? bits : p.view;
            v.c = c.data();
            if (grouped) {
              be.GroupedGemm(ta, tb, {v}, 0.75f, 0.5f);
            } else {
              be.Gemm(ta, tb, v, 0.75f, 0.5f);
            }
            ExpectNear(c, rounded, tol);
            double worst = 0;  // the rounding is visible against the FP32 operands' product
            for (size_t i = 0; i < exact.size(); ++i) worst = std::max(worst, std::fabs(c[i] - exact[i]));
            EXPECT_GT(worst, 1e-3);
            if (as_bits) {
              ASSERT_EQ(c, p.c);  // the FP32 operands' run just before
            } else {
              p.c = c;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe::kernels
