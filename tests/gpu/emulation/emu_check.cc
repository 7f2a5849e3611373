// emu_check: the CUDA kernels' own source, run under the CPU emulation shim (include/emu.h), against
// the CPU twin (CpuBackend) on small random inputs with NaN-poisoned outputs. Checks kernel logic
// (indexing, tiling, masking, tie-breaking, reductions, coverage of every output) without a GPU; it
// says nothing about speed, shared-memory limits or the hardware's own arithmetic (expf, WMMA).
// Built and run by run_emulation.sh. Exit status 0 iff every check passed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/buffer.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/unified_memory.h"
#include "tests/gpu/emulation/emu_check.h"

using namespace moe::kernels;
namespace kc = moe::kernels::cuda;

namespace emu_check {

std::mt19937_64 gen(123);
int failures = 0;
std::vector<float> Normal(size_t n, float sd) {
  std::normal_distribution<float> d(0, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}
std::vector<float> Nan(size_t n) { return std::vector<float>(n, NAN); }

std::vector<uint16_t> ToBits(std::vector<float>* x) {
  std::vector<uint16_t> bits(x->size());
  for (size_t i = 0; i < x->size(); ++i) {
    bits[i] = moe::FloatToBf16Bits((*x)[i]);
    (*x)[i] = moe::Bf16BitsToFloat(bits[i]);
  }
  return bits;
}
void Check(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref,
           double tol) {
  double num = 0, den = 0;
  long nan = 0, diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::memcmp(&got[i], &ref[i], 4)) ++diff;
    if (std::isnan(got[i]) && !std::isnan(ref[i])) { ++nan; continue; }
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const bool ok = nan == 0 && rel <= tol;
  if (!ok) ++failures;
  std::printf("%s %-40s rel=%.2e nan=%ld bitsdiff=%ld/%zu\n", ok ? "PASS" : "FAIL", name.c_str(),
              rel, nan, diff, ref.size());
}

void CheckBits(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref) {
  long diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) diff += std::memcmp(&got[i], &ref[i], 4) != 0;
  if (diff) ++failures;
  std::printf("%s %-40s bitsdiff=%ld/%zu\n", diff ? "FAIL" : "PASS", name.c_str(), diff, ref.size());
}

}  // namespace emu_check

using namespace emu_check;

void Rows(CpuBackend& cpu) {
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  int fails = 0;
  (void)fails;
  for (int64_t dim : {12, 10}) {
    const int64_t rows = 40, n = 300;
    std::vector<float> src(rows * dim), in(n * dim), scale(n), acc(rows * dim);
    std::vector<int32_t> idx(n);
    for (auto& x : src) x = nd(g);
    for (auto& x : in) x = nd(g);
    for (auto& x : scale) x = nd(g);
    for (auto& x : acc) x = nd(g);
    for (auto& i : idx) i = g() % rows;
    for (int64_t i = 0; i < n; i += 4) idx[i] = 3;
    std::vector<float> gd(n * dim, NAN), cd(n * dim);
    cpu.GatherRows(src.data(), idx.data(), n, dim, cd.data());
    kc::LaunchGatherRows(src.data(), idx.data(), n, dim, gd.data(), nullptr);
    {
      const bool same = std::memcmp(gd.data(), cd.data(), 4 * n * dim) == 0;
      std::printf("%s gather dim=%ld\n", same ? "PASS" : "FAIL", (long)dim);
      fails += !same;
    }
    {  // the embedding lookup from a table of BF16 bits
      std::vector<uint16_t> bits(rows * dim);
      for (int64_t i = 0; i < rows * dim; ++i) bits[i] = moe::FloatToBf16Bits(src[i]);
      std::fill(gd.begin(), gd.end(), NAN);
      cpu.EmbeddingForward(idx.data(), n, nullptr, bits.data(), dim, cd.data());
      kc::LaunchGatherRowsBf16(bits.data(), idx.data(), n, dim, gd.data(), nullptr);
      const bool same = std::memcmp(gd.data(), cd.data(), 4 * n * dim) == 0;
      std::printf("%s gather_bf16 dim=%ld\n", same ? "PASS" : "FAIL", (long)dim);
      fails += !same;
    }
    {  // runs of consecutive rows (out of order, one empty), into a destination one row longer
      const std::vector<Backend::RowBlock> blocks = {{30, 10}, {0, 7}, {12, 0}, {7, 23}};
      std::vector<int64_t> table = {0, 10, 17, 17, 40, 30, 0, 12, 7};  // first [5], then src_row [4]
      auto want = Nan(41 * dim), got = Nan(41 * dim);
      cpu.GatherRowBlocks(src.data(), blocks, dim, want.data());
      kc::LaunchGatherRowBlocks(src.data(), table.data(), 4, 40, dim, got.data(), nullptr);
      const bool same = std::memcmp(got.data(), want.data(), 4 * 41 * dim) == 0;
      std::printf("%s gather_row_blocks dim=%ld\n", same ? "PASS" : "FAIL", (long)dim);
      fails += !same;
    }
    for (bool sc : {true, false}) {
      auto a = acc, b = acc;
      cpu.ScatterAddRows(in.data(), idx.data(), sc ? scale.data() : nullptr, n, dim, a.data());
      std::vector<char> ws(cuda::ScatterAddWorkspaceBytes(n));
      kc::LaunchScatterAddRows(in.data(), idx.data(), sc ? scale.data() : nullptr, n, dim, b.data(), ws.data(), ws.size(), nullptr);
      const bool same = std::memcmp(a.data(), b.data(), 4 * rows * dim) == 0;
      std::printf("%s scatter_add dim=%ld scaled=%d bit-identical=%d\n", same ? "PASS" : "FAIL", (long)dim, sc, same);
      fails += !same;
    }
  }
  failures += fails;
}

// ok[e] = 1 when the walk reaches flat index e as (e / cols, e % cols). Launched with a grid far
// smaller than the space, so the incremental advance wraps (the ops' own launches give each
// emulated thread about one element).
void WalkKernel(int64_t rows, int64_t cols, std::vector<int>* ok) {
  int64_t e = kc::GlobalThread();
  for (kc::GridWalk2D w(rows, cols); w.valid(); w.next(), e += kc::GlobalStride()) {
    (*ok)[e] = w.r == e / cols && w.c == e % cols;
  }
}

void DataMovement(CpuBackend& cpu) {
  struct W { int64_t rows, cols; };
  for (W w : {W{7, 50}, W{3, 500}, W{1000, 1}, W{5, 192}}) {  // 192 threads: stride below, above, equal
    std::vector<int> ok(w.rows * w.cols, 0);
    EmuLaunch(WalkKernel, dim3(3), dim3(64), 0, nullptr, w.rows, w.cols, &ok);
    long bad = 0;
    for (int v : ok) bad += v != 1;
    std::printf("%s grid_walk_2d rows=%ld cols=%ld wrong=%ld\n", bad ? "FAIL" : "PASS",
                (long)w.rows, (long)w.cols, bad);
    failures += bad != 0;
  }
  // Copy2D: padded leading dims (scalar path), 16-byte path, misaligned pointers, one contiguous
  // run with a tail (n % 4 != 0), contiguous rows (ld == cols); written (padding must stay NaN)
  // and accumulated.
  struct C { const char* name; int64_t rows, cols, src_ld, dst_ld, src_off, dst_off; };
  for (C c : {C{"padded", 13, 7, 9, 11, 0, 0}, C{"vec4", 9, 12, 16, 20, 0, 0},
              C{"misaligned", 9, 12, 16, 20, 1, 0}, C{"flat_tail", 1, 1027, 1027, 1027, 0, 0},
              C{"flat_rows", 6, 50, 50, 50, 0, 0}, C{"flat_misaligned", 1, 1000, 1000, 1000, 3, 1}}) {
    const auto src = Normal(c.src_off + c.rows * c.src_ld);
    const auto base = Normal(c.dst_off + c.rows * c.dst_ld);
    for (bool acc : {false, true}) {
      auto ref = acc ? base : Nan(base.size()), got = ref;
      cpu.Copy2D(src.data() + c.src_off, c.src_ld, ref.data() + c.dst_off, c.dst_ld, c.rows, c.cols, acc);
      kc::LaunchCopy2D(src.data() + c.src_off, c.src_ld, got.data() + c.dst_off, c.dst_ld, c.rows, c.cols, acc, nullptr);
      CheckBits(std::string("copy2d_") + c.name + (acc ? "_acc" : ""), got, ref);
    }
  }
  {
    const int64_t n = 5003;
    auto ref = Nan(n + 1), got = Nan(n + 1);  // the last element must stay NaN
    cpu.Fill(ref.data(), n, -1.75f);
    kc::LaunchFill(got.data(), n, -1.75f, nullptr);
    CheckBits("fill", got, ref);
  }
  for (int64_t dim : {300, 1, 3000}) {  // RowDot: warp per row, warp, block per row
    const int64_t rows = dim == 3000 ? 3 : 37;
    auto a = Normal(rows * dim), b = Normal(rows * dim, 2);
    std::vector<float> ref(rows);
    auto got = Nan(rows);
    cpu.RowDot(a.data(), b.data(), rows, dim, ref.data());
    kc::LaunchRowDot(a.data(), b.data(), rows, dim, got.data(), nullptr);
    Check("row_dot_d" + std::to_string(dim), got, ref, 1e-7);
    auto bb = b;
    const std::vector<uint16_t> b16 = ToBits(&bb);  // b as BF16 bits (a saved activation)
    cpu.RowDot(a.data(), bb.data(), rows, dim, ref.data());
    auto got_b = Nan(rows);
    kc::LaunchRowDot(a.data(), moe::kernels::ValuesIn::Bits(b16.data()), rows, dim, got_b.data(), nullptr);
    Check("row_dot_bits_d" + std::to_string(dim), got_b, ref, 1e-7);
    auto x = Normal(rows * dim), s = Normal(rows), gx = x;
    cpu.ScaleRows(x.data(), s.data(), rows, dim);
    kc::LaunchScaleRows(gx.data(), s.data(), rows, dim, nullptr);
    CheckBits("scale_rows_d" + std::to_string(dim), gx, x);
  }
}

// The unified memory space's cache (kernels/cuda/unified_memory.cc) over the shim's managed memory:
// host writes, a kernel on the same Buffer, reuse of freed blocks, slabs for small classes, stats,
// and the release-and-retry path when cudaMallocManaged fails.
void UnifiedMemory() {
  int fails = 0;
  auto expect = [&](bool cond, const char* what) {
    if (!cond) std::printf("  unified memory: %s\n", what);
    fails += !cond;
  };
  auto stats = [] { return CudaUnifiedMemoryStats(); };
  constexpr size_t MiB = size_t{1} << 20;
  moe::SetMemorySpace(CudaUnifiedMemorySpace());
  const UnifiedMemoryStats s0 = stats();
  {
    moe::Buffer<float> x(1000);  // 4000 bytes: the 4 KiB class, carved from a new 2 MiB slab
    for (int i = 0; i < 1000; ++i) x[i] = 0.5f * i;
    kc::LaunchScale(x.data(), 1000, 2.0f, nullptr);
    bool same = true;
    for (int i = 0; i < 1000; ++i) same &= x[i] == float(i);
    expect(same, "kernel result read back on the host");
    UnifiedMemoryStats s = stats();
    expect(s.bytes_in_use - s0.bytes_in_use == 4096, "in use: one 4 KiB block");
    expect(s.bytes_reserved - s0.bytes_reserved == 2 * MiB, "reserved: one slab");
    expect(s.bytes_cached - s0.bytes_cached == 2 * MiB - 4096, "cached: the rest of the slab");
    expect(s.cuda_allocations - s0.cuda_allocations == 1, "one CUDA allocation");
    moe::Buffer<float> y(1000);  // same class: the slab's next block, no CUDA call
    expect(y.data() == x.data() + 1024, "second block follows the first");
    float* first = x.data();
    x.reset();
    moe::Buffer<float> z(900);
    expect(z.data() == first, "freed block reused");
    moe::Buffer<float> big(3 * MiB / 4 + 5);  // just over 3 MiB: the 4 MiB class, its own allocation
    float* big_p = big.data();
    big = moe::Buffer<float>(MiB - 7);  // the old one is freed; a new 4 MiB class block is needed
    expect(big.data() != big_p, "a live block is not handed out twice");
    moe::Buffer<float> again(MiB);
    expect(again.data() == big_p, "freed large block reused");
    s = stats();
    expect(s.cuda_allocations - s0.cuda_allocations == 3, "three CUDA allocations in all");
    expect(s.peak_bytes_in_use - s0.bytes_in_use == 2 * 4096 + 8 * MiB, "peak");
    expect(s.bytes_in_use + s.bytes_cached == s.bytes_reserved, "in use + cached = reserved");
  }
  {
    const UnifiedMemoryStats s1 = stats();
    expect(s1.bytes_in_use == s0.bytes_in_use, "everything returned");
    moe::Buffer<float> huge(2 * MiB);  // 8 MiB
    huge.reset();
    g_emu_managed_limit = g_emu_managed_bytes + 4 * MiB;  // a full GPU: 4 MiB left
    moe::Buffer<float> mid(3 * MiB / 2);  // 6 MiB: fails, releases the cached large blocks, retries
    const UnifiedMemoryStats s2 = stats();
    expect(mid.data() != nullptr, "retry after release succeeds");
    expect(s2.bytes_cached < s1.bytes_cached, "cached large blocks released");
    expect(s2.bytes_in_use + s2.bytes_cached == s2.bytes_reserved, "in use + cached = reserved");
    bool threw = false;
    try {
      moe::Buffer<float> too_big(64 * MiB);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    expect(threw, "allocation beyond capacity throws bad_alloc");
    g_emu_managed_limit = SIZE_MAX;
  }
  {
    // The cap: CUDA would oversubscribe (no managed limit), but past the device's memory less the
    // margin (2 GiB here) an allocation fails, after releasing the cache.
    // Size classes no earlier check used: 10, 12 and 256 MiB.
    const size_t kMargin = size_t{2} << 30;
    moe::Buffer<float> cached(5 * MiB / 2);  // 10 MiB, then freed into the cache
    cached.reset();
    const UnifiedMemoryStats s1 = stats();
    g_emu_device_total = s1.bytes_reserved + kMargin + 4 * MiB;  // 4 MiB left under the cap
    expect(CudaUnifiedMemoryCapacity() == s1.bytes_reserved + 4 * MiB, "capacity = total - margin");
    moe::Buffer<float> mid(3 * MiB);  // 12 MiB: over the cap until the cached 10 MiB goes back
    const UnifiedMemoryStats s2 = stats();
    expect(mid.data() != nullptr, "fits after the cache is released");
    expect(s2.bytes_reserved <= CudaUnifiedMemoryCapacity(), "reserved within the cap");
    bool threw = false;
    try {
      moe::Buffer<float> too_big(64 * MiB);  // 256 MiB more: past the cap, though CUDA would give it
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    expect(threw, "allocation past the cap throws bad_alloc");
    g_emu_device_total = size_t{80} << 30;
  }
  moe::SetMemorySpace(moe::HostMemorySpace());
  std::printf("%s unified_memory_cache\n", fails ? "FAIL" : "PASS");
  failures += fails;
}

// The balance-loss statistics and gradient (router.cu) against the CPU twin: a slice of 37 tokens
// starting at token 5 of the micro-batch, in groups of 16 (a partial group at both ends, a 4th group
// with no token here that must get zeros), outputs poisoned; continuous scores and scores on a
// coarse grid (exact ties in the top-K must go to the lower index). Both are expected bit-identical.
// The last case: 300 tokens from token 70 in groups of 200, so groups span several chunks of
// Backend::kBalanceChunk positions, partial at both ends.
void Balance(CpuBackend& cpu) {
  struct B { int64_t E, K; bool ties; int64_t n = 37, first = 5, len = 16; };
  for (B c : {B{8, 2, false}, B{64, 6, false}, B{8, 2, true}, B{64, 6, true}, B{256, 8, false},
              B{64, 6, false, 300, 70, 200}}) {
    const int64_t n = c.n, first = c.first, len = c.len, groups = 4, E = c.E, K = c.K;
    std::uniform_real_distribution<float> u(0.01f, 1.0f);
    std::vector<float> s(n * E);
    for (auto& x : s) x = c.ties ? std::ceil(u(gen) * 4) / 4 : u(gen);
    const std::string tag = "balance_E" + std::to_string(E) + "_K" + std::to_string(K) + (c.ties ? "_ties" : "") +
                            (len > moe::kernels::Backend::kBalanceChunk ? "_chunked" : "");
    std::vector<double> ref(2 * groups * E, NAN), got(2 * groups * E, NAN);
    cpu.BalanceStats(s.data(), n, E, K, first, len, groups, ref.data());
    std::vector<double> scratch(kc::BalanceStatsScratchBytes(n, E, len, groups) / sizeof(double) + 1);
    kc::LaunchBalanceStats(s.data(), n, E, K, first, len, groups, got.data(), scratch.data(),
                           scratch.size() * sizeof(double), nullptr);
    long diff = 0, zeros = 0;
    double max_abs = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      diff += std::memcmp(&got[i], &ref[i], 8) != 0;
      if (!std::isnan(got[i])) max_abs = std::max(max_abs, std::fabs(got[i] - ref[i]));
    }
    for (int64_t e = 0; e < E; ++e) zeros += got[3 * E + e] == 0.0 && got[(groups + 3) * E + e] == 0.0;
    const bool ok = diff == 0 && zeros == E;
    failures += !ok;
    std::printf("%s %-40s bitsdiff=%ld/%zu max_abs=%.2e empty_group_zeros=%ld/%ld\n", ok ? "PASS" : "FAIL",
                (tag + "_stats").c_str(), diff, ref.size(), max_abs, zeros, (long)E);
    std::vector<float> f(groups * E);
    for (auto& x : f) x = 2 * u(gen);
    const double coef = 0.37;
    auto dref = Nan(n * E), dgot = Nan(n * E);
    cpu.BalanceLossGrad(s.data(), n, E, first, len, f.data(), coef, dref.data());
    kc::LaunchBalanceLossGrad(s.data(), n, E, first, len, f.data(), coef, dgot.data(), nullptr);
    CheckBits(tag + "_grad", dgot, dref);
  }
  {  // No token here: every group's stats are zeros (written over the poison), no scratch needed.
    std::vector<double> got(2 * 2 * 8, NAN);
    kc::LaunchBalanceStats(nullptr, 0, 8, 2, 0, 16, 2, got.data(), nullptr, 0, nullptr);
    long bad = 0;
    for (double x : got) bad += x != 0.0;
    failures += bad != 0;
    std::printf("%s balance_stats_empty_slice                nonzero=%ld/%zu\n", bad ? "FAIL" : "PASS", bad,
                got.size());
  }
}

int main() {
  CpuBackend cpu(1);
  cudaStream_t st = nullptr;
  Rows(cpu);
  DataMovement(cpu);
  UnifiedMemory();
  // ---- attention
  struct A { int64_t b, t, h, dqk, dv; };
  for (A c : {A{1, 70, 2, 24, 16}, A{2, 33, 1, 96, 64}, A{1, 100, 1, 192, 128}, A{1, 65, 1, 256, 256}, A{1, 5, 2, 128, 128}}) {
    AttentionShape s;
    s.batch = c.b; s.seq = c.t; s.heads = c.h; s.qk_dim = c.dqk; s.v_dim = c.dv;
    s.scale = 1.0f / std::sqrt(float(c.dqk));
    const size_t nqk = c.b * c.t * c.h * c.dqk, nv = c.b * c.t * c.h * c.dv, nl = c.b * c.h * c.t;
    auto q = Normal(nqk), k = Normal(nqk), v = Normal(nv);
    std::vector<float> out(nv), lse(nl);
    cpu.AttentionForward(s, q.data(), k.data(), v.data(), out.data(), lse.data());
    auto gout = Nan(nv), glse = Nan(nl);
    kc::LaunchAttentionForward(s, q.data(), k.data(), v.data(), gout.data(), glse.data(), st);
    const std::string tag = "attn_" + std::to_string(c.t) + "_" + std::to_string(c.dqk);
    Check(tag + "_out", gout, out, 1e-5);
    Check(tag + "_lse", glse, lse, 1e-5);
    auto dout = Normal(nv);
    std::vector<float> dq(nqk), dk(nqk), dv(nv), delta(nl);
    cpu.AttentionBackward(s, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(), dv.data());
    auto gdq = Nan(nqk), gdk = Nan(nqk), gdv = Nan(nv);
    kc::LaunchAttentionBackward(s, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), delta.data(), gdq.data(), gdk.data(), gdv.data(), st);
    Check(tag + "_dq", gdq, dq, 1e-4);
    Check(tag + "_dk", gdk, dk, 1e-4);
    Check(tag + "_dv", gdv, dv, 1e-4);
  }
  // ---- router
  auto make = [](int64_t e, int64_t k, int64_t g, int64_t tg, ScoringFunc f, TopkMethod m, bool norm, float rho) {
    RouterParams p; p.num_experts = e; p.top_k = k; p.n_group = g; p.topk_group = tg; p.scoring = f; p.method = m;
    p.norm_topk_prob = norm; p.routed_scaling_factor = rho; return p;
  };
  struct R { const char* name; RouterParams p; bool bias; };
  for (R c : {R{"small1b", make(64, 6, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f), true},
              R{"v3", make(256, 8, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f), true},
              R{"greedy", make(16, 2, 1, 1, ScoringFunc::kSoftmax, TopkMethod::kGreedy, false, 1.0f), false},
              R{"glg", make(64, 6, 8, 3, ScoringFunc::kSoftmax, TopkMethod::kGroupLimitedGreedy, false, 16.0f), false},
              R{"onegroup", make(8, 3, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 1.0f), true}}) {
    const int64_t n = 37, E = c.p.num_experts, K = c.p.top_k;
    for (bool quant : {true, false}) {
      auto z = Normal(n * E, 2.0f), bias = Normal(E, 0.05f);
      if (quant) { for (auto& x : z) x = std::round(x * 2) / 2; for (auto& b : bias) b = std::round(b * 20) / 20; }
      std::vector<float> s(n * E), w(n * K); std::vector<int32_t> sel(n * K);
      cpu.RouterForward(c.p, z.data(), c.bias ? bias.data() : nullptr, n, s.data(), sel.data(), w.data());
      auto gs = Nan(n * E), gw = Nan(n * K); std::vector<int32_t> gsel(n * K, -1);
      kc::LaunchRouterForward(c.p, z.data(), c.bias ? bias.data() : nullptr, n, gs.data(), gsel.data(), gw.data(), st);
      long mism = 0;
      for (int64_t i = 0; i < n * K; ++i) mism += gsel[i] != sel[i];
      std::string tag = std::string("router_") + c.name + (quant ? "_q" : "");
      std::printf("%s %-40s mismatched=%ld\n", mism ? "FAIL" : "PASS", (tag + "_sel").c_str(), mism);
      if (mism) ++failures;
      Check(tag + "_scores", gs, s, 1e-6);
      Check(tag + "_weights", gw, w, 1e-6);
      auto dw = Normal(n * K), extra = Normal(n * E);
      for (bool ex : {false, true}) {
        std::vector<float> dz(n * E);
        cpu.RouterBackward(c.p, s.data(), sel.data(), dw.data(), ex ? extra.data() : nullptr, n, dz.data());
        auto gdz = Nan(n * E);
        kc::LaunchRouterBackward(c.p, s.data(), sel.data(), dw.data(), ex ? extra.data() : nullptr, n, gdz.data(), st);
        Check(tag + (ex ? "_bwd_extra" : "_bwd"), gdz, dz, 1e-6);
      }
    }
  }
  // ---- dispatch order: counts and rows identical to the CPU's; nothing written past the kept rows
  struct D { int64_t n, k, e, capacity; };
  for (D c : {D{37, 6, 64, -1}, D{37, 6, 64, 3}, D{20, 8, 256, -1}, D{50, 2, 8, 9}, D{0, 2, 8, -1}}) {
    const int64_t total = c.n * c.k;
    std::vector<int32_t> sel(total);
    std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(c.e - 2)), hot(0, 2);
    for (int64_t i = 0; i < total; ++i) sel[i] = i % 3 == 0 ? hot(gen) : any(gen);
    std::vector<int32_t> counts(c.e), token(total, -1), slot(total, -1);
    std::vector<int32_t> gcounts(c.e, -1), gtoken(total, -1), gslot(total, -1);
    cpu.SortByExpert(sel.data(), c.n, c.k, c.e, c.capacity, counts.data(), token.data(), slot.data());
    std::vector<char> ws(kc::SortByExpertWorkspaceBytes(total, c.e));
    kc::LaunchSortByExpert(sel.data(), total, c.k, c.e, c.capacity, gcounts.data(), gtoken.data(), gslot.data(), ws.data(), ws.size(), st);
    const bool same = gcounts == counts && gtoken == token && gslot == slot;
    std::printf("%s sort_by_expert n=%ld k=%ld experts=%ld capacity=%ld identical=%d\n", same ? "PASS" : "FAIL", (long)c.n, (long)c.k, (long)c.e, (long)c.capacity, same);
    failures += !same;
  }
  // ---- rmsnorm
  {
    const int64_t rows = 130, dim = 300;
    auto x = Normal(rows * dim, 2), w = Normal(dim), dy = Normal(rows * dim);
    for (bool round : {false, true}) {
      std::vector<float> y(rows * dim), r(rows);
      cpu.RmsNormForward(x.data(), w.data(), rows, dim, 1e-6f, round, y.data(), r.data());
      auto gy = Nan(rows * dim), gr = Nan(rows);
      kc::LaunchRmsNormForward(x.data(), w.data(), rows, dim, 1e-6f, round, gy.data(), gr.data(), st);
      Check(round ? "rms_fwd_round" : "rms_fwd", gy, y, round ? 1e-3 : 1e-6);
      Check("rms_rstd", gr, r, 1e-6);
    }
    std::vector<float> y(rows * dim), r(rows);
    cpu.RmsNormForward(x.data(), w.data(), rows, dim, 1e-6f, false, y.data(), r.data());
    auto dwc = Normal(dim), dwg = dwc;
    std::vector<float> dx(rows * dim), partial(kc::RmsNormDwChunks(rows) * dim);
    cpu.RmsNormBackward(x.data(), w.data(), r.data(), dy.data(), rows, dim, dx.data(), dwc.data());
    auto gdx = Nan(rows * dim);
    kc::LaunchRmsNormBackward(x.data(), w.data(), r.data(), dy.data(), rows, dim, gdx.data(), dwg.data(), partial.data(), st);
    Check("rms_dx", gdx, dx, 1e-5);
    Check("rms_dw", dwg, dwc, 1e-5);
    // x as BF16 bits (a saved activation), against the CPU on the same values as FP32 words.
    auto xb = x;
    const std::vector<uint16_t> x16 = ToBits(&xb);
    cpu.RmsNormForward(xb.data(), w.data(), rows, dim, 1e-6f, false, y.data(), r.data());
    auto dwc_b = Normal(dim), dwg_b = dwc_b;
    cpu.RmsNormBackward(xb.data(), w.data(), r.data(), dy.data(), rows, dim, dx.data(), dwc_b.data());
    auto gdx_b = Nan(rows * dim);
    kc::LaunchRmsNormBackward(moe::kernels::ValuesIn::Bits(x16.data()), w.data(), r.data(), dy.data(), rows, dim,
                              gdx_b.data(), dwg_b.data(), partial.data(), st);
    Check("rms_dx_bits", gdx_b, dx, 1e-5);
    Check("rms_dw_bits", dwg_b, dwc_b, 1e-5);
  }
  // ---- cross-entropy
  for (int64_t vocab : {1000, 50}) {
    const int64_t n = 21;
    auto z = Normal(n * vocab, 3);
    std::vector<int32_t> t(n);
    for (int64_t i = 0; i < n; ++i) t[i] = i % 5 == 0 ? -1 : int32_t(gen() % vocab);
    std::vector<float> d(n * vocab);
    const double ref = cpu.CrossEntropy(z.data(), t.data(), n, vocab, 0.1f, d.data());
    auto gd = Nan(n * vocab);
    std::vector<double> rl(n); double total = -1; int bad = 0;
    kc::LaunchCrossEntropy(z.data(), t.data(), n, vocab, 0.1f, gd.data(), rl.data(), &total, &bad, st);
    std::printf("%s ce_loss_%ld got=%.12g ref=%.12g bad=%d\n", std::fabs(total - ref) <= 1e-6 * std::fabs(ref) ? "PASS" : "FAIL", (long)vocab, total, ref, bad);
    Check("ce_grad", gd, d, 1e-6);
    auto zz = z;
    kc::LaunchCrossEntropy(zz.data(), t.data(), n, vocab, 0.1f, zz.data(), rl.data(), &total, &bad, st);
    Check("ce_grad_inplace", zz, d, 1e-6);
    std::printf("%s ce_loss_inplace got=%.12g\n", std::fabs(total - ref) <= 1e-6 * std::fabs(ref) ? "PASS" : "FAIL", total);
  }
  // ---- rope
  {
    const int64_t T = 19, H = 3, half = 4, maxp = 50;
    auto cs = Normal(maxp * half), sn = Normal(maxp * half);
    std::vector<int32_t> pos(T);
    for (auto& p : pos) p = gen() % maxp;
    auto x = Normal(T * H * 12), gx = x;
    RopeView v{x.data(), T, H, H * 12, 12, 4, half, pos.data(), cs.data(), sn.data()};
    RopeView g = v; g.x = gx.data();
    cpu.RopeForward(v); kc::LaunchRope(g, false, st);
    Check("rope_fwd", gx, x, 1e-6);
    cpu.RopeBackward(v); kc::LaunchRope(g, true, st);
    Check("rope_bwd", gx, x, 1e-6);
  }
  Elementwise(cpu);
  // ---- grouped gemm
  for (cuda::GemmMath math : {cuda::GemmMath::kFp32, cuda::GemmMath::kBf16}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 1.0f}) {
        const int64_t ms[] = {37, 0, 130, 1, 65, 17}, ns[] = {70, 20, 33, 64, 0, 5}, ks[] = {40, 10, 65, 0, 9, 100};
        std::vector<std::vector<float>> A, B, C, G;
        std::vector<GemmProblem> cp, gp;
        for (int i = 0; i < 6; ++i) {
          int64_t m = ms[i], n = ns[i], k = ks[i];
          int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
          A.push_back(Normal(std::max<int64_t>(ar, 1) * (ac + 2)));
          B.push_back(Normal(std::max<int64_t>(br, 1) * (bc + 1)));
          if (math == cuda::GemmMath::kBf16) {
            for (auto& x : A.back()) x = moe::RoundToBf16(x);
            for (auto& x : B.back()) x = moe::RoundToBf16(x);
          }
          C.push_back(Normal(std::max<int64_t>(m, 1) * (n + 3)));
          G.push_back(beta == 0 ? Nan(C.back().size()) : C.back());
        }
        for (int i = 0; i < 6; ++i) {
          int64_t ac = ta ? ms[i] : ks[i], bc = tb ? ks[i] : ns[i];
          cp.push_back({ms[i], ns[i], ks[i], A[i].data(), ac + 2, B[i].data(), bc + 1, C[i].data(), ns[i] + 3});
          gp.push_back({ms[i], ns[i], ks[i], A[i].data(), ac + 2, B[i].data(), bc + 1, G[i].data(), ns[i] + 3});
        }
        cpu.GroupedGemm(ta ? Transpose::kYes : Transpose::kNo, tb ? Transpose::kYes : Transpose::kNo, cp, 1.5f, beta);
        kc::LaunchGroupedGemm(ta, tb, gp.data(), 6, 1.5f, beta, math, st);
        std::vector<float> got, ref;
        for (int i = 0; i < 6; ++i) for (int64_t r = 0; r < ms[i]; ++r) for (int64_t j = 0; j < ns[i]; ++j) {
          got.push_back(G[i][r * (ns[i] + 3) + j]); ref.push_back(C[i][r * (ns[i] + 3) + j]);
        }
        char name[64];
        std::snprintf(name, sizeof name, "grouped_%s_%d%d_b%g", math == cuda::GemmMath::kFp32 ? "fp32" : "bf16", ta, tb, beta);
        Check(name, got, ref, 1e-5);
      }
    }
  }
  // ---- balance loss (last: its random draws leave the other checks' inputs as they were)
  Balance(cpu);
  std::printf("failures: %d\n", failures);
  return failures != 0;
}
