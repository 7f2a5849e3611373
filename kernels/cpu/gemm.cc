// Gemm and GroupedGemm on oneDNN's matmul primitive (FP32 out, FP32 accumulation, ISA chosen at run
// time: brgemm on AVX-512 machines, AMX tiles where the CPU has them).
//
// Operands are FP32, or with bf16_matmul (BF16 mode) rounded to BF16 (nearest even) into per-thread
// buffers first, as the CUDA backend's cuBLASLt path does: BF16 products run at twice the FP32 rate
// (more with AMX). In BF16 mode the weights and the stored activations already hold BF16 values, so the
// forward's products are those of FP32 up to summation order; the backward's activation gradients are
// rounded (PyTorch autocast and Megatron do the same). Where oneDNN has no BF16 matmul (below
// AVX-512: AMD Zen 2/3, older Intel; Bf16MatmulSupported), BF16-mode products run on the FP32 path with
// the operands rounded to BF16 values in FP32 words instead: a BF16 x BF16 product is exact in FP32, so
// the results are the same up to summation order, at the FP32 rate.
//
// A primitive is built once per (shape, transposes, leading dims, alpha, beta, thread count) and
// kept in a mutex-guarded cache: transposes and leading dims are the strides of the memory
// descriptors, alpha is an output scale and beta a sum post-op (absent when beta == 0, so C is only
// written, never read). Scratchpads are user-managed (one buffer per calling thread), so one
// primitive may run on several threads at once. Below AVX-512 oneDNN's FP32 matmul is gemm:jit, whose
// results depend on the thread count; there FP32 runs' products go through sgemm on tiles of C fixed by
// the shape, one thread each (SgemmInFixedTiles), so that FP32 results do not, as on AVX-512.
//
// GroupedGemm (the routed experts: one problem per local expert, row counts set by the routing, so new
// every step): a shape-specialised primitive costs ~1-2 ms to build, and exact shapes would need
// hundreds (bench_wide: ~670 builds in its first 4 steps). BF16 tiles with both operands as BF16 bits
// (the model's case in BF16 mode) are padded or chunked onto a few fixed shapes (AMX where the CPU has
// it; RunBf16TileOnFixedShapes), the rest run on any-shape primitives (PrimitiveShape::kAny). Each
// problem's C is cut into tiles that run side by side, one OpenMP thread each (a primitive executed
// inside an OpenMP parallel region runs single-threaded), largest first. Each tile of C is written by
// exactly one call and the tiling depends on the shapes alone, so the result does not depend on the
// thread count or the schedule.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "base/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace moe::kernels {
namespace {

using dnnl::memory;

// Everything a matmul primitive is specialised on.
struct GemmKey {
  bool ta, tb, bf16;
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t alpha_bits, beta_bits;
  int threads;

  auto Tie() const {
    return std::tie(ta, tb, bf16, m, n, k, lda, ldb, ldc, alpha_bits, beta_bits, threads);
  }
  bool operator<(const GemmKey& o) const { return Tie() < o.Tie(); }
};

struct GemmPrimitive {
  memory::desc a_md, b_md, c_md, scratch_md;
  dnnl::matmul prim;
};

uint32_t Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The memory descriptors of a product: A [m,k], B [k,n] in their stored orientation (the transposes
// are strides), C [m,n] FP32. With runtime values (DNNL_RUNTIME_DIM_VAL) they describe any shape.
struct Descs {
  memory::desc a, b, c;
};
Descs MakeDescs(bool ta, bool tb, bool bf16, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                int64_t ldc) {
  const memory::data_type in = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  return {memory::desc({m, k}, in, ta ? memory::dims{1, lda} : memory::dims{lda, 1}),
          memory::desc({k, n}, in, tb ? memory::dims{1, ldb} : memory::dims{ldb, 1}),
          memory::desc({m, n}, memory::data_type::f32, memory::dims{ldc, 1})};
}

// Built under the calling thread's OpenMP thread count, which the key records. A key with m < 0 is an
// any-shape primitive: every dimension and leading dimension is given at execution.
std::shared_ptr<const GemmPrimitive> Build(const GemmKey& key, float alpha, float beta) {
  const bool any = key.m < 0;
  const auto dim = [any](int64_t d) { return any ? DNNL_RUNTIME_DIM_VAL : d; };
  const Descs d = MakeDescs(key.ta, key.tb, key.bf16, dim(key.m), dim(key.n), dim(key.k), dim(key.lda),
                            dim(key.ldb), dim(key.ldc));
  auto g = std::make_shared<GemmPrimitive>();
  g->a_md = d.a;
  g->b_md = d.b;
  g->c_md = d.c;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(beta);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(g->a_md, g->b_md, g->c_md), attr,
                                        Engine());
  g->scratch_md = pd.scratchpad_desc();
  g->prim = dnnl::matmul(pd);
  return g;
}

// The cached primitive for key (built on first use). The cache is bounded: the routed experts'
// row counts vary from step to step, so it is emptied when it grows past kMaxCached entries
// (primitives in use stay alive through their shared_ptr).
std::shared_ptr<const GemmPrimitive> Get(const GemmKey& key, float alpha, float beta) {
  constexpr size_t kMaxCached = 4096;
  static std::mutex mu;
  static std::map<GemmKey, std::shared_ptr<const GemmPrimitive>> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Built outside the lock so threads building different primitives do not wait on each other; a
  // race on the same key builds it twice and keeps the first.
  std::shared_ptr<const GemmPrimitive> g = Build(key, alpha, beta);
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= kMaxCached) cache.clear();
  return cache.emplace(key, std::move(g)).first->second;
}

// Whether oneDNN builds the two kinds of BF16 primitive RunGemm asks for: a fixed-shape one and an
// any-shape one with an output scale and a sum post-op. oneDNN 2.6 has no BF16 matmul below
// avx512_core, where creating one throws.
bool ProbeBf16Matmul() {
  try {
    Build(GemmKey{false, true, true, 32, 32, 32, 32, 32, 32, Bits(1.0f), Bits(0.0f), 1}, 1.0f, 0.0f);
    Build(GemmKey{true, false, true, -1, -1, -1, -1, -1, -1, Bits(0.5f), Bits(1.0f), 1}, 0.5f, 1.0f);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

// A test's answer for Bf16MatmulSupported: -1 none, else 0 or 1.
std::atomic<int> bf16_matmul_forced{-1};

// Whether oneDNN's FP32 matmul primitive here is its brgemm (AVX-512 and up), whose results do not depend
// on the thread count. Below AVX-512 it is gemm:jit, whose do: it picks its kernels and may split the
// reduction after each thread's share (gemm_test's Gemm.Fp32SameResultForAnyThreadCount).
bool Fp32MatmulThreadInvariant() {
  static const bool brgemm = [] {
    try {
      const Descs d = MakeDescs(false, true, false, 256, 256, 256, 256, 256, 256);
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(d.a, d.b, d.c), Engine());
      return std::strncmp(pd.impl_info_str(), "brg", 3) == 0;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return brgemm;
}

double Work(const GemmProblem& p) {
  if (p.m <= 0 || p.n <= 0) return 0.0;
  return static_cast<double>(p.m) * static_cast<double>(p.n) *
         static_cast<double>(std::max<int64_t>(p.k, 1));
}

// The conversions (base/bf16.h) as function objects, so ConvertRows inlines them.
struct ToBf16Bits {
  uint16_t operator()(float x) const { return moe::FloatToBf16Bits(x); }
};
struct ToBf16Value {
  float operator()(float x) const { return moe::RoundToBf16(x); }
};
struct FromBf16Bits {
  float operator()(uint16_t b) const { return moe::Bf16BitsToFloat(b); }
};

// dst [rows, cols] (dense) <- convert(each element of the rows of src, leading dimension ld). Convert is
// a function object (not a pointer) so that the inner loop is inlined and vectorised.
template <typename In, typename Out, typename Convert>
void ConvertRows(const In* src, int64_t rows, int64_t cols, int64_t ld, Out* dst) {
  const bool fork = !omp_in_parallel() && rows * cols >= cpu_internal::kMinParallelElements;
#pragma omp parallel for schedule(static) if (fork)
  for (int64_t r = 0; r < rows; ++r) {
    const In* in = src + r * ld;
    Out* out = dst + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) out[c] = Convert()(in[c]);
  }
}

// An operand as the product reads it: its data and leading dimension.
struct Operand {
  const void* data;
  int64_t ld;
};

// Operand [rows, cols] (leading dimension ld), given as FP32 (f32) or as BF16 bits (bits, when set), in
// the form the product wants: BF16 bits for the BF16 primitive (want_bits), else FP32 words, rounded to
// BF16 values when `round` (BF16 products on sgemm). Converted operands go densely into `bits_buffer`
// or `float_buffer`; the rest are read in place.
Operand PrepareOperand(const float* f32, const uint16_t* bits, int64_t rows, int64_t cols, int64_t ld,
                       bool want_bits, bool round, std::vector<uint16_t>* bits_buffer,
                       std::vector<float>* float_buffer) {
  if (want_bits) {
    if (bits != nullptr) return {bits, ld};
    bits_buffer->resize(rows * cols);
    ConvertRows<float, uint16_t, ToBf16Bits>(f32, rows, cols, ld, bits_buffer->data());
    return {bits_buffer->data(), cols};
  }
  if (bits != nullptr) {
    float_buffer->resize(rows * cols);
    ConvertRows<uint16_t, float, FromBf16Bits>(bits, rows, cols, ld, float_buffer->data());
    return {float_buffer->data(), cols};
  }
  if (!round) return {f32, ld};
  float_buffer->resize(rows * cols);
  ConvertRows<float, float, ToBf16Value>(f32, rows, cols, ld, float_buffer->data());
  return {float_buffer->data(), cols};
}

// op(A) rows [i0, i0 + rows) times op(B) columns [j0, j0 + cols): one tile of p's C.
GemmProblem Tile(Transpose ta, Transpose tb, const GemmProblem& p, int64_t i0, int64_t j0, int64_t rows,
                 int64_t cols) {
  const int64_t a_off = ta == Transpose::kYes ? i0 : i0 * p.lda;
  const int64_t b_off = tb == Transpose::kYes ? j0 * p.ldb : j0;
  GemmProblem t = p;
  t.m = rows;
  t.n = cols;
  if (t.a != nullptr) t.a += a_off;
  if (t.a_bf16 != nullptr) t.a_bf16 += a_off;
  if (t.b != nullptr) t.b += b_off;
  if (t.b_bf16 != nullptr) t.b_bf16 += b_off;
  t.c += i0 * p.ldc + j0;
  return t;
}

// C = alpha op(A) op(B) + beta C with FP32 operands (q.a, q.b) on oneDNN's sgemm, on the calling thread's
// OpenMP thread count (one inside a parallel region).
void Sgemm(Transpose ta, Transpose tb, const GemmProblem& q, float alpha, float beta) {
  const dnnl::status st = dnnl::sgemm(ta == Transpose::kYes ? 'T' : 'N', tb == Transpose::kYes ? 'T' : 'N', q.m, q.n,
                                      q.k, alpha, q.a, q.lda, q.b, q.ldb, beta, q.c, q.ldc);
  MOE_CPU_CHECK(st == dnnl::status::success, "oneDNN sgemm failed");
}

// Sgemm as tiles of C fixed by q's shape, each on one thread, `threads` side by side: every tile is
// computed the same way for any thread count.
void SgemmInFixedTiles(Transpose ta, Transpose tb, const GemmProblem& q, float alpha, float beta, int threads) {
  constexpr int64_t kTileRows = 128, kTileCols = 256;  // the fastest of 128-512 rows x 256-all columns
  const int64_t col_tiles = (q.n + kTileCols - 1) / kTileCols;
  const int64_t tiles = (q.m + kTileRows - 1) / kTileRows * col_tiles;
  const auto run = [&](int64_t t) {
    const int64_t i0 = t / col_tiles * kTileRows, j0 = t % col_tiles * kTileCols;
    Sgemm(ta, tb, Tile(ta, tb, q, i0, j0, std::min(kTileRows, q.m - i0), std::min(kTileCols, q.n - j0)), alpha,
          beta);
  };
  if (threads == 1 || tiles == 1) {
    // Outside a parallel region oneDNN would share the tile out among the calling thread's OpenMP count.
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int64_t t = 0; t < tiles; ++t) run(t);
    omp_set_num_threads(saved);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t t = 0; t < tiles; ++t) run(t);
}

[[noreturn]] void FailMatmul(const GemmProblem& p, const dnnl::error& e) {
  std::fprintf(stderr, "oneDNN matmul %lldx%lldx%lld failed: %s\n", static_cast<long long>(p.m),
               static_cast<long long>(p.n), static_cast<long long>(p.k), e.what());
  std::abort();
}

}  // namespace

namespace cpu_internal {

bool Bf16MatmulSupported() {
  const int forced = bf16_matmul_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return forced == 1;
  static const bool supported = ProbeBf16Matmul();
  return supported;
}

void SetBf16MatmulSupportedForTesting(std::optional<bool> supported) {
  bf16_matmul_forced.store(supported.has_value() ? int{*supported} : -1, std::memory_order_relaxed);
}

// C[m,n] = alpha * op(A) op(B) + beta * C on the calling thread's OpenMP thread count (1 inside a
// parallel region). Empty problems are handled here (no primitive): m or n == 0 does nothing,
// k == 0 sets C = beta * C, or zeros with beta == 0 (an uninitialised C may hold NaNs).
void RunGemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta, bool bf16,
             PrimitiveShape shape) {
  if (p.m <= 0 || p.n <= 0) return;
  if (p.k <= 0) {
    for (int64_t i = 0; i < p.m; ++i) {
      float* row = p.c + i * p.ldc;
      if (beta == 0.0f) {
        std::fill(row, row + p.n, 0.0f);
      } else {
        for (int64_t j = 0; j < p.n; ++j) row[j] *= beta;
      }
    }
    return;
  }
  // Very small products go through oneDNN's BLAS-like sgemm: nothing to build, while a primitive
  // costs ~0.2 ms to create and the routed experts' row counts change every step. The rest use a
  // cached matmul primitive (brgemm). The path depends on the shape alone, so a product is always
  // computed the same way (reproducible results). The bound is low on purpose: moving brown_small's
  // attention tiles and expert products to sgemm (bound 2^18 or 2^21) moved its BF16 run 2.2% away
  // from FP32 at step 45-47, past tests:bf16_vs_fp32_test's 2%.
  constexpr double kPrimitiveMinWork = double{1 << 15};  // m * n * k
  const bool at = ta == Transpose::kYes, bt = tb == Transpose::kYes;
  const bool small = static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k) < kPrimitiveMinWork;
  // Operands in their stored orientation: for BF16 products, BF16 bits for the BF16 matmul primitive or
  // BF16 values in FP32 words for sgemm and for CPUs without that primitive (the same numbers),
  // converted into per-thread buffers unless the caller passed BF16 bits the primitive can read in place.
  thread_local std::vector<float> a_float, b_float;
  thread_local std::vector<uint16_t> a16, b16;
  const int64_t a_rows = at ? p.k : p.m, a_cols = at ? p.m : p.k;
  const int64_t b_rows = bt ? p.n : p.k, b_cols = bt ? p.k : p.n;
  const bool want_bits = bf16 && !small && Bf16MatmulSupported();
  const Operand a_op = PrepareOperand(p.a, p.a_bf16, a_rows, a_cols, p.lda, want_bits, bf16, &a16, &a_float);
  const Operand b_op = PrepareOperand(p.b, p.b_bf16, b_rows, b_cols, p.ldb, want_bits, bf16, &b16, &b_float);
  const void* a = a_op.data;
  const void* b = b_op.data;
  const int64_t lda = a_op.ld, ldb = b_op.ld;
  // The operands as FP32 words, for the sgemm paths below (which want_bits never takes).
  const GemmProblem prepared{p.m, p.n, p.k, static_cast<const float*>(a), lda, static_cast<const float*>(b), ldb,
                             p.c, p.ldc};
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Where oneDNN's FP32 matmul gives results that depend on the thread count (gemm:jit, below AVX-512),
  // FP32 runs' products go through fixed tiles, so that they do not, as with brgemm. That costs ~13% of
  // bench_wide's FP32 GEMM time on 2 AVX2 cores, so BF16 products (thread-count dependent on AVX-512
  // too) keep oneDNN's own threading.
  if (!bf16 && shape == PrimitiveShape::kFixed && !Fp32MatmulThreadInvariant()) {
    return SgemmInFixedTiles(ta, tb, prepared, alpha, beta, threads);
  }
  // FP32 products of any shape (attention's bands, FP32 expert tiles) go through sgemm too: the same
  // jit kernels as an any-shape matmul primitive, without its per-call memory objects, which cost
  // ~15% of attention's time on its small products.
  if (small || (!want_bits && shape == PrimitiveShape::kAny)) return Sgemm(ta, tb, prepared, alpha, beta);
  thread_local dnnl::stream stream(Engine());
  if (shape == PrimitiveShape::kAny) {
    thread_local std::vector<char> any_scratch;
    const GemmKey key{at, bt, want_bits, -1, -1, -1, -1, -1, -1, Bits(alpha), Bits(beta), threads};
    try {
      const std::shared_ptr<const GemmPrimitive> g = Get(key, alpha, beta);
      if (any_scratch.size() < g->scratch_md.get_size()) any_scratch.resize(g->scratch_md.get_size());
      const Descs d = MakeDescs(at, bt, want_bits, p.m, p.n, p.k, lda, ldb, p.ldc);
      dnnl::engine& engine = Engine();
      g->prim.execute(stream, {{DNNL_ARG_SRC, memory(d.a, engine, const_cast<void*>(a))},
                               {DNNL_ARG_WEIGHTS, memory(d.b, engine, const_cast<void*>(b))},
                               {DNNL_ARG_DST, memory(d.c, engine, p.c)},
                               {DNNL_ARG_SCRATCHPAD, memory(g->scratch_md, engine, any_scratch.data())}});
      stream.wait();
    } catch (const dnnl::error& e) {
      FailMatmul(p, e);
    }
    return;
  }
  const GemmKey key{at, bt, want_bits, p.m, p.n, p.k, lda, ldb, p.ldc, Bits(alpha), Bits(beta), threads};
  thread_local std::vector<char> scratch;
  try {
    // Each thread keeps its last few primitives with their memory objects, so the attention's many
    // small tile products skip the shared cache's lock and only swap data pointers.
    struct Bound {
      GemmKey key;
      std::shared_ptr<const GemmPrimitive> g;
      memory a, b, c, s;
    };
    constexpr size_t kRecent = 8;
    thread_local std::vector<Bound> recent;
    thread_local size_t next_slot = 0;
    Bound* bound = nullptr;
    for (Bound& r : recent) {
      if (!(r.key < key) && !(key < r.key)) bound = &r;
    }
    if (bound == nullptr || scratch.size() < bound->g->scratch_md.get_size()) {
      std::shared_ptr<const GemmPrimitive> g = Get(key, alpha, beta);
      if (scratch.size() < g->scratch_md.get_size()) {
        scratch.resize(g->scratch_md.get_size());
        recent.clear();  // their scratchpad memories point at the old buffer
      }
      dnnl::engine& engine = Engine();
      Bound fresh{key, g, memory(g->a_md, engine, nullptr), memory(g->b_md, engine, nullptr),
                  memory(g->c_md, engine, nullptr), memory(g->scratch_md, engine, scratch.data())};
      if (recent.size() < kRecent) {
        recent.push_back(std::move(fresh));
        bound = &recent.back();
      } else {
        bound = &recent[next_slot];
        *bound = std::move(fresh);
        next_slot = (next_slot + 1) % kRecent;
      }
    }
    bound->a.set_data_handle(const_cast<void*>(a));
    bound->b.set_data_handle(const_cast<void*>(b));
    bound->c.set_data_handle(p.c);
    bound->g->prim.execute(stream, {{DNNL_ARG_SRC, bound->a},
                                    {DNNL_ARG_WEIGHTS, bound->b},
                                    {DNNL_ARG_DST, bound->c},
                                    {DNNL_ARG_SCRATCHPAD, bound->s}});
    stream.wait();
  } catch (const dnnl::error& e) {
    FailMatmul(p, e);
  }
}

}  // namespace cpu_internal

void CpuBackend::Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) {
  ScopedOpTime timer(&op_times_["gemm"], GemmFlops(p));
  cpu_internal::UseOmpThreads(num_threads_);
  cpu_internal::RunGemm(ta, tb, p, alpha, beta, bf16_matmul_);
}

namespace {

// A BF16 tile whose operands are both BF16 bits, on fixed-shape primitives (AMX brgemm where the CPU has
// it; ~1.2-1.5x oneDNN's any-shape BF16 gemm on these tiles, single-threaded) while keeping the number
// of distinct shapes small, so the primitives are built once and then reused every step:
//  - no transposed A (products over the feature dimension: forward, dX): M (a band of routed rows) is
//    padded to a multiple of 16 by staging A's rows, zero-filled, and C in
//    per-thread buffers; K and N are fixed by the weights.
//  - transposed A (weight gradients, a reduction over the expert's rows): K is that row count, cut
//    into chunks of kChunk accumulated in order (beta, then 1), the last one padded to a multiple of
//    32 by staging both operands' rows, zero-filled; M and N are fixed by the weights.
// Zero rows add nothing, so padding changes no value; the chunking fixes the summation order by
// the shape alone.
void RunBf16TileOnFixedShapes(Transpose ta, Transpose tb, const GemmProblem& t, float alpha, float beta) {
  constexpr int64_t kRowQuantum = 16, kChunk = 256, kChunkQuantum = 32;
  auto run_fixed = [&](const GemmProblem& q, float b) {
    cpu_internal::RunGemm(ta, tb, q, alpha, b, /*bf16=*/true, cpu_internal::PrimitiveShape::kFixed);
  };
  thread_local std::vector<uint16_t> a_stage, b_stage;
  thread_local std::vector<float> c_stage;
  // rows x cols of BF16 bits (leading dimension ld) into a dense zero-padded [padded_rows, padded_cols]:
  // each row copied and its padding columns zeroed, then the padding rows zeroed (each byte written
  // once).
  auto stage = [](const uint16_t* src, int64_t rows, int64_t cols, int64_t ld, int64_t padded_rows,
                  int64_t padded_cols, std::vector<uint16_t>* dst) {
    if (static_cast<int64_t>(dst->size()) < padded_rows * padded_cols) dst->resize(padded_rows * padded_cols);
    uint16_t* out = dst->data();
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(out + r * padded_cols, src + r * ld, cols * sizeof(uint16_t));
      std::fill(out + r * padded_cols + cols, out + (r + 1) * padded_cols, uint16_t{0});
    }
    std::fill(out + rows * padded_cols, out + padded_rows * padded_cols, uint16_t{0});
    return out;
  };
  if (ta == Transpose::kNo) {
    const int64_t m_pad = cpu_internal::RoundUp(t.m, kRowQuantum);
    if (m_pad == t.m || t.k <= 0) return run_fixed(t, beta);
    GemmProblem q = t;
    q.m = m_pad;
    q.a = nullptr;
    q.a_bf16 = stage(t.a_bf16, t.m, t.k, t.lda, m_pad, t.k, &a_stage);
    q.lda = t.k;
    c_stage.resize(m_pad * t.n);
    q.c = c_stage.data();
    q.ldc = t.n;
    run_fixed(q, 0.0f);
    for (int64_t i = 0; i < t.m; ++i) {
      float* c = t.c + i * t.ldc;
      const float* r = c_stage.data() + i * t.n;
      if (beta == 0.0f) {
        std::memcpy(c, r, t.n * sizeof(float));
      } else {
        for (int64_t j = 0; j < t.n; ++j) c[j] = r[j] + beta * c[j];
      }
    }
    return;
  }
  if (t.k <= 0) return run_fixed(t, beta);
  const bool b_transposed = tb == Transpose::kYes;
  for (int64_t k0 = 0; k0 < t.k; k0 += kChunk) {
    const int64_t kc = std::min(kChunk, t.k - k0);
    const int64_t k_pad = cpu_internal::RoundUp(kc, kChunkQuantum);
    GemmProblem q = t;
    q.k = kc;
    q.a = nullptr;
    q.a_bf16 = t.a_bf16 + k0 * t.lda;  // A stored [K, lda]
    q.b = nullptr;
    q.b_bf16 = b_transposed ? t.b_bf16 + k0 : t.b_bf16 + k0 * t.ldb;
    if (k_pad != kc) {
      q.k = k_pad;
      q.a_bf16 = stage(q.a_bf16, kc, t.m, t.lda, k_pad, t.m, &a_stage);
      q.lda = t.m;
      q.b_bf16 = b_transposed ? stage(q.b_bf16, t.n, kc, t.ldb, t.n, k_pad, &b_stage)   // [N, K]
                              : stage(q.b_bf16, kc, t.n, t.ldb, k_pad, t.n, &b_stage);  // [K, N]
      q.ldb = b_transposed ? k_pad : t.n;
    }
    run_fixed(q, k0 == 0 ? beta : 1.0f);
  }
}

}  // namespace

void CpuBackend::GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                             float alpha, float beta) {
  double flops = 0;
  for (const GemmProblem& p : problems) flops += GemmFlops(p);
  ScopedOpTime timer(&op_times_["grouped_gemm"], flops);
  // Every problem's C cut into tiles fixed by the shape alone (so the result does not depend on the
  // thread count or the schedule): bands of routed rows of C when A is not transposed, the whole
  // problem when it is (a weight gradient: its rows and columns are the weight's). BF16 bands are twice
  // as tall as FP32 ones: bench_wide's expert products took ~5-10% less time with 256 rows than with 128
  // on AMX (and more with 512, fewer tiles to share), while FP32 sgemm tiles were ~8% slower at 256. On
  // CPUs without a oneDNN BF16 matmul, BF16 tiles run as FP32 ones do (sgemm, on the rounded operands).
  // Tiles span whole rows so that every operand of a tile stays dense, which oneDNN's brgemm (the AMX
  // path) needs (a strided tile falls back to its slower gemm). The tiles run side by side, one
  // OpenMP thread each, largest first (ties in problem order).
  const bool bf16_primitive = bf16_matmul_ && cpu_internal::Bf16MatmulSupported();
  const int64_t tile_rows = bf16_primitive ? 256 : 128;
  std::vector<GemmProblem> tiles;
  for (const GemmProblem& p : problems) {
    if (p.m <= 0 || p.n <= 0) continue;
    const int64_t band = ta == Transpose::kYes ? p.m : tile_rows;
    for (int64_t i0 = 0; i0 < p.m; i0 += band) tiles.push_back(Tile(ta, tb, p, i0, 0, std::min(band, p.m - i0), p.n));
  }
  std::stable_sort(tiles.begin(), tiles.end(),
                   [](const GemmProblem& x, const GemmProblem& y) { return Work(x) > Work(y); });
  cpu_internal::UseOmpThreads(num_threads_);
  const int64_t num_tiles = static_cast<int64_t>(tiles.size());
#pragma omp parallel for num_threads(num_threads_) schedule(dynamic, 1)
  for (int64_t i = 0; i < num_tiles; ++i) {
    const GemmProblem& t = tiles[i];
    if (bf16_primitive && t.a_bf16 != nullptr && t.b_bf16 != nullptr) {
      RunBf16TileOnFixedShapes(ta, tb, t, alpha, beta);
    } else {
      cpu_internal::RunGemm(ta, tb, t, alpha, beta, bf16_matmul_, cpu_internal::PrimitiveShape::kAny);
    }
  }
}

}  // namespace moe::kernels
