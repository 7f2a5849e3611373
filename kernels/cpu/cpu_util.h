// Private helpers shared by the CPU backend's .cc files: a programmer-error check, the one GEMM entry
// point (oneDNN, gemm.cc) and whether it multiplies in BF16 on this CPU, the readers of a ValuesIn,
// OpenMP thread control, the size below which a loop is not worth an OpenMP fork, and the deterministic
// column-partitioned scatter-add.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "base/bf16.h"
#include "kernels/backend.h"

namespace moe::kernels::cpu_internal {

// Which oneDNN matmul primitive a product runs on. kFixed: one built for its exact shape (oneDNN's
// fastest kernels, brgemm/AMX; ~1 ms to build, then cached): for products whose shapes repeat every
// step. kAny: one per (transposes, precision, alpha, beta) with the dimensions and leading dimensions
// given at each call (oneDNN's gemm:jit, never rebuilt): for the routed experts, whose row counts
// change every step.
enum class PrimitiveShape { kFixed, kAny };

// Row-major C[m,n] = alpha op(A) op(B) + beta C through a cached oneDNN matmul primitive (gemm.cc), on
// the calling thread's OpenMP thread count: all of them outside a parallel region, one inside. Empty
// problems are handled (k == 0 gives beta C; beta == 0 never reads C). With bf16, A and B are rounded to
// BF16 (nearest even) first, and their products accumulated in FP32.
void RunGemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta, bool bf16 = false,
             PrimitiveShape shape = PrimitiveShape::kFixed);

// Whether oneDNN has a BF16 matmul on this CPU, decided once per process by building one (gemm.cc).
// oneDNN 2.6 has none below AVX-512 (AMD Zen 2/3, older Intel): there RunGemm's BF16 products run on
// the FP32 path with the operands rounded to BF16 (exact products, FP32 accumulation: the same numbers
// up to summation order), and MeasureMatmulPeak times the FP32 matmul for BF16.
bool Bf16MatmulSupported();

// Tests: forces Bf16MatmulSupported()'s answer (nullopt: this CPU's again), not while products run. Forced
// true where oneDNN has no BF16 matmul, the first BF16 product aborts.
void SetBf16MatmulSupportedForTesting(std::optional<bool> supported);

// Element i of a ValuesIn, one reader per form: WithReader calls fn(reader) for x's form, so each loop
// over it is compiled (and vectorised) once per form.
struct ReadF32 {
  const float* p;
  float operator()(int64_t i) const { return p[i]; }
};
struct ReadBf16 {
  const uint16_t* p;
  float operator()(int64_t i) const { return moe::Bf16BitsToFloat(p[i]); }
};
template <typename Fn>
void WithReader(ValuesIn x, Fn&& fn) {
  if (x.bf16 != nullptr) {
    fn(ReadBf16{x.bf16});
  } else {
    fn(ReadF32{x.f32});
  }
}

// Element i of a ValuesOut, one writer per form (WithWriter, as WithReader): BF16 bits are rounded to
// nearest even as they are written. W::Of(y) binds a second output y of the same form.
struct WriteF32 {
  float* p;
  void operator()(int64_t i, float v) const { p[i] = v; }
  static WriteF32 Of(ValuesOut o) { return {o.f32}; }
};
struct WriteBf16 {
  uint16_t* p;
  void operator()(int64_t i, float v) const { p[i] = moe::FloatToBf16Bits(v); }
  static WriteBf16 Of(ValuesOut o) { return {o.bf16}; }
};
template <typename Fn>
void WithWriter(ValuesOut y, Fn&& fn) {
  if (y.bf16 != nullptr) {
    fn(WriteBf16{y.bf16});
  } else {
    fn(WriteF32{y.f32});
  }
}

// Aborts on a violated precondition (a bug in the caller, not a data error).
#define MOE_CPU_CHECK(cond, msg)                                                             \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s: %s\n", __FILE__, __LINE__, #cond, msg); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

// oneDNN (OpenMP runtime) runs a primitive on the calling thread's omp_get_max_threads(); the GEMMs
// set it per call for the same reason.
inline void UseOmpThreads(int n) {
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
}

// Elementwise loops shorter than this run on one thread (an OpenMP fork costs a few microseconds).
inline constexpr int64_t kMinParallelElements = 1 << 15;

// Element-wise loops whose speed the vector width sets (exp, division, narrowing to BF16) are compiled
// twice, for x86-64-v4 (AVX-512: twice the lanes) and for the baseline the build targets, and the loader picks the one this CPU runs (GCC function
// multi-versioning, resolved once through an ifunc). Both clones run the same IEEE operations on every
// element, so the results do not depend on which one runs. Put it on a function of its own: a loop
// inside an OpenMP region is outlined into a function the clones do not cover.
#define MOE_CPU_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))

// x rounded up to a multiple of q (x >= 0, q > 0).
inline constexpr int64_t RoundUp(int64_t x, int64_t q) { return (x + q - 1) / q * q; }

// fn(begin, end) over [0, n) in contiguous ranges, one per thread, each a multiple of 16 elements (one
// AVX-512 vector); on the calling thread alone when n is small or threads == 1. For element-wise work,
// whose results do not depend on the split.
template <typename Fn>
void ParallelRanges(int threads, int64_t n, Fn&& fn) {
  if (n < kMinParallelElements || threads == 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t chunk = RoundUp((n + parts - 1) / parts, 16);
    const int64_t begin = std::min(n, part * chunk), end = std::min(n, begin + chunk);
    fn(begin, end);
  }
}

inline float FloatFromBits(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// e^x for float, within 2 ulp of libm's expf (tests: elementwise_test), written so that loops over
// arrays vectorise (libm's expf is a call per element): x = n ln2 + r with |r| <= ln2/2 (ln2 split in
// two for an exact reduction), e^r by Cephes' degree-7 polynomial, then 2^n applied as two powers of
// two so that results in the subnormal range are rounded once. exp(-inf) = 0, exp(+inf) = inf and NaN
// stays NaN. The same operations run in the vector body and the scalar tail (explicit fma), so a
// value does not depend on where a thread's chunk starts.
inline float ExpF(float x) {
  const float xc = std::min(std::max(x != x ? 0.0f : x, -104.0f), 88.8f);  // NaN: any finite value
  const float n = std::floor(std::fma(xc, 1.44269504088896341f, 0.5f));
  float r = std::fma(n, -0.693359375f, xc);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r + 1.0f);
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni >> 1;  // 2^n = 2^half 2^(n - half), both normal for n in [-150, 128]
  const float s1 = FloatFromBits((half + 127) << 23);
  const float s2 = FloatFromBits((ni - half + 127) << 23);
  const float y = p * s1 * s2;
  return x != x ? x : y;
}

// sum_{j < n} term(j) in FP64, as kLanes interleaved partial sums combined in a fixed order: the loop
// vectorises (a single running sum is one long chain of dependent additions), and the result depends
// on n and the terms alone, not on threads or alignment.
template <typename Term>
inline double LaneSum(int64_t n, Term term) {
  constexpr int kLanes = 8;
  double lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane[l] += term(j + l);
  }
  for (int l = 0; j < n; ++j, ++l) lane[l] += term(j);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Width of the column blocks the scatter-adds are partitioned into (one block per task).
inline int64_t ColumnBlock(int64_t dim, int threads) {
  const int64_t per_thread = (dim + threads - 1) / std::max(threads, 1);
  return std::max<int64_t>(16, (per_thread + 15) / 16 * 16);
}

// dst[idx[i], :] += (scale ? scale[i] : 1) * src[i, :] for i = 0..n-1, src [n, dim].
// Each thread owns a block of columns and walks the rows in order, so every element receives its
// terms in index order: race-free for repeated idx and identical for any thread count.
inline void ScatterAddByColumns(int threads, const float* src, const int32_t* idx,
                                const float* scale, int64_t n, int64_t dim, float* dst) {
  if (n <= 0 || dim <= 0) return;
  const int64_t block = ColumnBlock(dim, threads);
  const int64_t num_blocks = (dim + block - 1) / block;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * dim >= kMinParallelElements)
  for (int64_t b = 0; b < num_blocks; ++b) {
    const int64_t c0 = b * block;
    const int64_t c1 = std::min(dim, c0 + block);
    for (int64_t i = 0; i < n; ++i) {
      const float s = scale ? scale[i] : 1.0f;
      const float* in = src + i * dim;
      float* out = dst + static_cast<int64_t>(idx[i]) * dim;
      for (int64_t c = c0; c < c1; ++c) out[c] += s * in[c];
    }
  }
}

}  // namespace moe::kernels::cpu_internal
