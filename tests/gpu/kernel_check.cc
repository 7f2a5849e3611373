// kernel_check: the GPU device check. For every op of kernels/backend.h it draws fresh random inputs
// (seeded by --seed, printed), runs the CPU twin (kernels/cpu CpuBackend, the reference) and the CUDA
// backend on copies, poisons every written output with NaN first (so an element the kernel forgot
// shows up), and compares: one PASS/FAIL line per check with the relative L2 error, the largest
// absolute error and how many elements differ in any bit. Then (unless --no_perf) it times the
// heavy ops at small_1b training shapes (micro-batch 8 x 4096 tokens, hidden 1024, 16 heads, qk 96,
// v 64, 64 experts top-6, vocab 32768) and prints TFLOP/s or GB/s.
//
// Runs without Bazel, MPI or a network: tests/gpu/run_device_check.sh sets the library path and
// calls it. Exit status: 0 if every check passed, 1 otherwise.
//
// Tolerances (relative L2 against the CPU): ops that evaluate the same expressions in the same order
// must match to ~1e-6 (elementwise, rows, RoPE, AdamW, router weights); reductions whose order
// differs (norm statistics, softmax sums, GEMM, attention) get 1e-5 .. 1e-4; BF16 GEMM modes are fed
// BF16-valued operands, so only the accumulation order differs from the CPU's FP32 GEMM.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/buffer.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/unified_memory.h"
#include "tests/gpu/check_util.h"

namespace moe::gpucheck {
namespace {

using kernels::AttentionShape;
using kernels::Backend;
using kernels::CpuBackend;
using kernels::CudaBackend;
using kernels::GemmMath;
using kernels::GemmProblem;
using kernels::RopeView;
using kernels::RouterParams;
using kernels::ScoringFunc;
using kernels::TopkMethod;
using kernels::Transpose;
using kernels::UnifiedMemoryStats;

struct Options {
  uint64_t seed = 0;
  bool perf = true;
  std::string only;  // run only checks whose group name contains this
};

std::vector<float> RoundedBf16(std::vector<float> v) {
  for (float& x : v) x = RoundToBf16(x);
  return v;
}

class Checks {
 public:
  Checks(const Options& opt, CpuBackend& cpu, CudaBackend& gpu)
      : opt_(opt), rng_(opt.seed), cpu_(cpu), gpu_(gpu) {}

  int Run() {
    Group("elementwise", [this] { Elementwise(); });
    Group("data_movement", [this] { DataMovement(); });
    Group("unified_memory", [this] { UnifiedMemory(); });
    Group("rows", [this] { Rows(); });
    Group("rmsnorm", [this] { RmsNorm(); });
    Group("rope", [this] { Rope(); });
    Group("router", [this] { Router(); });
    Group("cross_entropy", [this] { CrossEntropy(); });
    Group("gemm", [this] { Gemm(); });
    Group("grouped_gemm", [this] { GroupedGemm(); });
    Group("attention", [this] { Attention(); });
    if (opt_.perf) Group("perf", [this] { Perf(); });
    std::printf("\n%d checks, %d failed (seed %llu)\n", report_.checks(), report_.failures(),
                static_cast<unsigned long long>(opt_.seed));
    return report_.failures() == 0 ? 0 : 1;
  }

 private:
  void Group(const char* name, const std::function<void()>& fn) {
    if (!opt_.only.empty() && std::string(name).find(opt_.only) == std::string::npos) return;
    std::printf("== %s\n", name);
    std::fflush(stdout);
    fn();
  }

  // ---------------------------------------------------------------- elementwise, reductions, AdamW
  void Elementwise() {
    {  // RoundToBf16, including exact halfway cases (ties to even) and tiny/huge magnitudes.
      const int64_t n = (1 << 20) + 3;
      std::vector<float> x = rng_.Normal(n);
      for (int64_t i = 0; i < n; i += 7) {  // halfway between two BF16 values
        uint32_t u;
        std::memcpy(&u, &x[i], 4);
        u = (u & 0xffff0000u) | 0x8000u;
        std::memcpy(&x[i], &u, 4);
      }
      for (int64_t i = 3; i < n; i += 101) x[i] *= 1e30f;
      for (int64_t i = 5; i < n; i += 103) x[i] *= 1e-35f;
      std::vector<float> ref = x;
      cpu_.RoundToBf16(ref.data(), n);
      Dev<float> d(x);
      gpu_.RoundToBf16(d.get(), n);
      report_.Check("round_to_bf16", d.Download(), ref, 0.0, "(must be bit-exact)");
    }
    {
      const int64_t n = 1000003;
      std::vector<float> a = rng_.Normal(n), y = rng_.Normal(n);
      std::vector<float> ref = y;
      cpu_.Add(a.data(), ref.data(), n);
      Dev<float> da(a), dy(y);
      gpu_.Add(da.get(), dy.get(), n);
      report_.Check("add", dy.Download(), ref, 0.0, "(must be bit-exact)");
      std::vector<float> s = a;
      cpu_.Scale(s.data(), n, -0.37f);
      gpu_.Scale(da.get(), n, -0.37f);
      report_.Check("scale", da.Download(), s, 0.0, "(must be bit-exact)");
    }
    {
      const int64_t n = 3000007;
      std::vector<float> x = rng_.Normal(n, 3.0f);
      const double ref = cpu_.SumSquares(x.data(), n);
      Dev<float> d(x);
      const double got = gpu_.SumSquares(d.get(), n);
      const double rel = std::fabs(got - ref) / ref;
      report_.Line(rel <= 1e-12, "sum_squares", Fmt("rel=%.2e (tol 1e-12) got=%.17g ref=%.17g",
                                                     rel, got, ref));
      const double zero = gpu_.SumSquares(d.get(), 0);
      report_.Line(zero == 0.0, "sum_squares_empty", Fmt("got=%g", zero));
    }
    {
      const int64_t n = 1000001;
      std::vector<float> a = rng_.Normal(n, 3.0f), c = rng_.Normal(n), dm = rng_.Normal(n);
      std::vector<float> m(n), da(n), dc(n);
      cpu_.SwigluForward(a.data(), c.data(), m.data(), n);
      cpu_.SwigluBackward(a.data(), c.data(), dm.data(), da.data(), dc.data(), n);
      Dev<float> ga(a), gc(c), gdm(dm), gm(n), gda(n), gdc(n);
      gm.Poison();
      gda.Poison();
      gdc.Poison();
      gpu_.SwigluForward(ga.get(), gc.get(), gm.get(), n);
      gpu_.SwigluBackward(ga.get(), gc.get(), gdm.get(), gda.get(), gdc.get(), n);
      report_.Check("swiglu_forward", gm.Download(), m, 1e-6);
      report_.Check("swiglu_backward_da", gda.Download(), da, 1e-6);
      report_.Check("swiglu_backward_dc", gdc.Download(), dc, 1e-6);
    }
    {
      const int64_t n = 1000003;
      std::vector<float> p = rng_.Normal(n), g = rng_.Normal(n, 1e-2f), m = rng_.Normal(n, 1e-3f);
      std::vector<float> v = rng_.Uniform(n, 0.0f, 1e-4f);
      kernels::AdamWParams hp;
      hp.lr = 3e-4f;
      hp.beta1 = 0.9f;
      hp.beta2 = 0.95f;
      hp.eps = 1e-8f;
      hp.weight_decay = 0.1f;
      hp.step = 7;
      Dev<float> gp(p), gg(g), gm(m), gv(v);
      cpu_.AdamW(hp, p.data(), g.data(), m.data(), v.data(), n);
      gpu_.AdamW(hp, gp.get(), gg.get(), gm.get(), gv.get(), n);
      report_.Check("adamw_param", gp.Download(), p, 1e-6);
      report_.Check("adamw_m", gm.Download(), m, 1e-6);
      report_.Check("adamw_v", gv.Download(), v, 1e-6);
    }
  }

  // ---------------------------------------------------------------- Copy2D, Fill, RowDot, ScaleRows
  void DataMovement() {
    struct CopyCase {
      const char* name;
      int64_t rows, cols, src_ld, dst_ld;
    };
    // Padded leading dims not a multiple of 4 (scalar path), a head slice with 16-byte accesses,
    // contiguous rows (one run), and one long row whose length is not a multiple of 4 (tail).
    const int64_t long_n = (int64_t{1} << 25) + 3;
    for (const CopyCase& c : {CopyCase{"padded", 1000, 300, 317, 301},
                              CopyCase{"head_slice_vec4", 4099, 32, 96, 64},
                              CopyCase{"contiguous_rows", 999, 1024, 1024, 1024},
                              CopyCase{"long_row", 1, long_n, long_n, long_n}}) {
      const int64_t src_ld = c.src_ld, dst_ld = c.dst_ld;
      const std::vector<float> src = rng_.Normal(c.rows * src_ld);
      Dev<float> gsrc(src);
      for (bool accumulate : {false, true}) {
        // Written: dst poisoned, padding must keep its poison. Accumulated: onto random values.
        std::vector<float> ref = accumulate ? rng_.Normal(c.rows * dst_ld)
                                            : Poisoned<float>(c.rows * dst_ld);
        Dev<float> gdst(ref);
        cpu_.Copy2D(src.data(), src_ld, ref.data(), dst_ld, c.rows, c.cols, accumulate);
        gpu_.Copy2D(gsrc.get(), src_ld, gdst.get(), dst_ld, c.rows, c.cols, accumulate);
        report_.CheckBits(Fmt("copy2d_%s%s", c.name, accumulate ? "_accumulate" : ""),
                          gdst.Download(), ref);
      }
    }
    {
      const int64_t n = 1000003;
      std::vector<float> ref = Poisoned<float>(n + 1);  // the element past the end keeps its poison
      cpu_.Fill(ref.data(), n, -2.5f);
      Dev<float> d(n + 1);
      d.Poison();
      gpu_.Fill(d.get(), n, -2.5f);
      report_.CheckBits("fill", d.Download(), ref);
    }
    struct RowCase {
      int64_t rows, dim;
    };
    // RowDot: a warp per row (dim <= 2048) in the first and last, a block per row in the middle.
    for (const RowCase& c : {RowCase{4096, 1024}, RowCase{3, 1000003}, RowCase{5000, 1}}) {
      const std::vector<float> a = rng_.Normal(c.rows * c.dim), b = rng_.Normal(c.rows * c.dim);
      std::vector<float> out(c.rows);
      cpu_.RowDot(a.data(), b.data(), c.rows, c.dim, out.data());
      Dev<float> ga(a), gb(b), gout(c.rows);
      gout.Poison();
      gpu_.RowDot(ga.get(), gb.get(), c.rows, c.dim, gout.get());
      report_.Check(Fmt("row_dot_%lldx%lld", static_cast<long long>(c.rows),
                        static_cast<long long>(c.dim)),
                    gout.Download(), out, 1e-7, "(FP64 sums: expect ~0 bits differ)");

      std::vector<float> x = rng_.Normal(c.rows * c.dim);
      const std::vector<float> scale = rng_.Uniform(c.rows, -2.0f, 2.0f);
      Dev<float> gx(x), gs(scale);
      cpu_.ScaleRows(x.data(), scale.data(), c.rows, c.dim);
      gpu_.ScaleRows(gx.get(), gs.get(), c.rows, c.dim);
      report_.CheckBits(Fmt("scale_rows_%lldx%lld", static_cast<long long>(c.rows),
                            static_cast<long long>(c.dim)),
                        gx.Download(), x);
    }
    LongCopy();
  }

  // Fill and Copy over 2^31 + 7 elements (16 GiB of device memory): indices past 2^31 must not
  // wrap. Both arrays start poisoned; the source is filled, then given random windows across index
  // 2^31 and at the end, and copied one element off 16-byte alignment, so the scalar kernel runs
  // with element indices past 2^31. Checked: the windows bit for bit, the FP64 sum of squares of
  // the source against its value (Fill reached every element) and of the destination against the
  // source's (an element left unwritten makes it NaN, one misplaced changes it).
  void LongCopy() {
    const int64_t n = (int64_t{1} << 31) + 7, window = 300;
    size_t free_bytes = 0, total_bytes = 0;
    MOE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (free_bytes < 2 * sizeof(float) * static_cast<size_t>(n) + (size_t{1} << 30)) {
      std::printf("SKIP  fill_copy_2g_elements              (needs 17 GiB free, %.1f GiB free)\n",
                  static_cast<double>(free_bytes) / (1 << 30));
      return;
    }
    Dev<float> src(n), dst(n);
    src.Poison();
    dst.Poison();
    gpu_.Fill(src.get(), n, 0.75f);
    gpu_.Synchronize();
    const int64_t windows[] = {(int64_t{1} << 31) - window / 2, n - window};
    const std::vector<float> pattern = rng_.Normal(window);
    double expected = static_cast<double>(n - 2 * window) * 0.75 * 0.75;
    for (int64_t w : windows) {
      MOE_CUDA_CHECK(cudaMemcpy(src.get() + w, pattern.data(), sizeof(float) * window,
                                cudaMemcpyHostToDevice));
      for (float v : pattern) expected += static_cast<double>(v) * v;
    }
    gpu_.Copy(src.get(), dst.get(), 1);
    gpu_.Copy(src.get() + 1, dst.get() + 1, n - 1);
    const double want = gpu_.SumSquares(src.get(), n), got = gpu_.SumSquares(dst.get(), n);
    bool windows_ok = true;
    for (int64_t w : windows) {
      std::vector<float> back(window);
      MOE_CUDA_CHECK(cudaMemcpy(back.data(), dst.get() + w, sizeof(float) * window,
                                cudaMemcpyDeviceToHost));
      windows_ok &= std::memcmp(back.data(), pattern.data(), sizeof(float) * window) == 0;
    }
    const bool fill_ok = std::fabs(want - expected) <= 1e-9 * expected;
    report_.Line(windows_ok && fill_ok && got == want, "fill_copy_2g_elements",
                 Fmt("sum_squares dst=%.17g src=%.17g expected=%.17g, windows %s", got, want,
                     expected, windows_ok ? "equal" : "DIFFER"));
  }

  // Buffers in CUDA unified memory (what the factory switches to): written on the host, changed by
  // GPU ops, read back on the host after Synchronize, then used by the CPU backend in place; the
  // cache hands a freed block out again.
  void UnifiedMemory() {
    const int64_t rows = 777, dim = 1000, n = rows * dim;
    const UnifiedMemoryStats before = kernels::CudaUnifiedMemoryStats();
    moe::SetMemorySpace(kernels::CudaUnifiedMemorySpace());
    moe::Buffer<float> x(n), s(rows), out(rows);
    moe::SetMemorySpace(moe::HostMemorySpace());  // the other checks keep their cudaMalloc'd arrays
    std::vector<float> ref_x = rng_.Normal(n);
    const std::vector<float> scale = rng_.Uniform(rows, -2.0f, 2.0f);
    x.AssignFromHost(ref_x.data(), n);
    s.AssignFromHost(scale.data(), rows);
    std::memset(out.data(), 0xff, sizeof(float) * rows);
    std::vector<float> ref_out(rows);
    cpu_.ScaleRows(ref_x.data(), scale.data(), rows, dim);
    cpu_.RowDot(ref_x.data(), ref_x.data(), rows, dim, ref_out.data());
    gpu_.ScaleRows(x.data(), s.data(), rows, dim);
    gpu_.RowDot(x.data(), x.data(), rows, dim, out.data());
    gpu_.Synchronize();
    report_.CheckBits("unified_scale_rows", std::vector<float>(x.begin(), x.end()), ref_x);
    report_.Check("unified_row_dot", std::vector<float>(out.begin(), out.end()), ref_out, 1e-7);
    // The CPU backend on the same memory, after the GPU's writes.
    cpu_.Scale(x.data(), n, 0.5f);
    cpu_.Scale(ref_x.data(), n, 0.5f);
    report_.CheckBits("unified_cpu_after_gpu", std::vector<float>(x.begin(), x.end()), ref_x);

    float* block = x.data();
    x.reset();
    moe::SetMemorySpace(kernels::CudaUnifiedMemorySpace());
    moe::Buffer<float> again(n);
    moe::SetMemorySpace(moe::HostMemorySpace());
    const UnifiedMemoryStats st = kernels::CudaUnifiedMemoryStats();
    report_.Line(again.data() == block, "unified_cache_reuse",
                 Fmt("freed block handed out again: %s; in use %.1f MiB, cached %.1f MiB, "
                     "reserved %.1f MiB, peak %.1f MiB, %lld CUDA allocations (%lld before)",
                     again.data() == block ? "yes" : "NO",
                     static_cast<double>(st.bytes_in_use) / (1 << 20),
                     static_cast<double>(st.bytes_cached) / (1 << 20),
                     static_cast<double>(st.bytes_reserved) / (1 << 20),
                     static_cast<double>(st.peak_bytes_in_use) / (1 << 20),
                     static_cast<long long>(st.cuda_allocations),
                     static_cast<long long>(before.cuda_allocations)));
  }

  // ---------------------------------------------------------------- embedding, gather, scatter
  void Rows() {
    for (int64_t dim : {256, 100}) {  // 16-byte path and the scalar path
      const int64_t vocab = 1000, n = 5000;
      std::vector<float> table = rng_.Normal(vocab * dim);
      std::vector<int32_t> ids = rng_.Ints(n, 0, vocab - 1);
      for (int64_t i = 0; i < n; i += 5) ids[i] = 7;  // a frequent token: long scatter runs
      std::vector<float> out(n * dim);
      cpu_.EmbeddingForward(ids.data(), n, table.data(), dim, out.data());
      Dev<float> gt(table), gout(n * dim);
      Dev<int32_t> gids(ids);
      gout.Poison();
      gpu_.EmbeddingForward(gids.get(), n, gt.get(), dim, gout.get());
      report_.Check(Fmt("embedding_forward_d%lld", static_cast<long long>(dim)), gout.Download(),
                    out, 0.0, "(must be bit-exact)");

      std::vector<float> d_out = rng_.Normal(n * dim), d_table = rng_.Normal(vocab * dim);
      Dev<float> gdo(d_out), gdt(d_table);
      cpu_.EmbeddingBackward(ids.data(), n, d_out.data(), dim, d_table.data());
      gpu_.EmbeddingBackward(gids.get(), n, gdo.get(), dim, gdt.get());
      report_.Check(Fmt("embedding_backward_d%lld", static_cast<long long>(dim)), gdt.Download(),
                    d_table, 1e-7, "(same order as the CPU: expect 0 bits differ)");
    }
    {
      const int64_t rows = 3000, dim = 192, n = 10000;
      std::vector<float> src = rng_.Normal(rows * dim);
      std::vector<int32_t> idx = rng_.Ints(n, 0, rows - 1);
      std::vector<float> dst(n * dim);
      cpu_.GatherRows(src.data(), idx.data(), n, dim, dst.data());
      Dev<float> gsrc(src), gdst(n * dim);
      Dev<int32_t> gidx(idx);
      gdst.Poison();
      gpu_.GatherRows(gsrc.get(), gidx.get(), n, dim, gdst.get());
      report_.Check("gather_rows", gdst.Download(), dst, 0.0, "(must be bit-exact)");

      // Combine-style scatter: n rows into `rows` destinations, with and without weights.
      std::vector<float> rows_in = rng_.Normal(n * dim), scale = rng_.Uniform(n, 0.0f, 2.0f);
      for (bool with_scale : {true, false}) {
        std::vector<float> acc = rng_.Normal(rows * dim);
        Dev<float> gin(rows_in), gscale(scale), gacc(acc);
        cpu_.ScatterAddRows(rows_in.data(), idx.data(), with_scale ? scale.data() : nullptr, n,
                            dim, acc.data());
        gpu_.ScatterAddRows(gin.get(), gidx.get(), with_scale ? gscale.get() : nullptr, n, dim,
                            gacc.get());
        report_.Check(with_scale ? "scatter_add_rows_scaled" : "scatter_add_rows",
                      gacc.Download(), acc, 1e-7, "(same order as the CPU: expect 0 bits differ)");
      }
    }
  }

  // ---------------------------------------------------------------- RMSNorm
  void RmsNorm() {
    const int64_t rows = 999, dim = 1024;
    const float eps = 1e-6f;
    std::vector<float> x = rng_.Normal(rows * dim, 2.0f), w = rng_.Uniform(dim, 0.5f, 1.5f);
    for (bool round : {false, true}) {
      std::vector<float> y(rows * dim), rstd(rows);
      cpu_.RmsNormForward(x.data(), w.data(), rows, dim, eps, round, y.data(), rstd.data());
      Dev<float> gx(x), gw(w), gy(rows * dim), gr(rows);
      gy.Poison();
      gr.Poison();
      gpu_.RmsNormForward(gx.get(), gw.get(), rows, dim, eps, round, gy.get(), gr.get());
      // With rounding, a last-bit difference in x*r can flip one BF16 rounding (2^-8 relative).
      report_.Check(round ? "rmsnorm_forward_bf16" : "rmsnorm_forward", gy.Download(), y,
                    round ? 1e-3 : 1e-6);
      report_.Check(round ? "rmsnorm_rstd_bf16" : "rmsnorm_rstd", gr.Download(), rstd, 1e-6);
    }
    std::vector<float> y(rows * dim), rstd(rows);
    cpu_.RmsNormForward(x.data(), w.data(), rows, dim, eps, false, y.data(), rstd.data());
    std::vector<float> dy = rng_.Normal(rows * dim), dx(rows * dim), dw = rng_.Normal(dim);
    Dev<float> gx(x), gw(w), gr(rstd), gdy(dy), gdx(rows * dim), gdw(dw);
    gdx.Poison();
    cpu_.RmsNormBackward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx.data(),
                         dw.data());
    gpu_.RmsNormBackward(gx.get(), gw.get(), gr.get(), gdy.get(), rows, dim, gdx.get(), gdw.get());
    report_.Check("rmsnorm_backward_dx", gdx.Download(), dx, 1e-5);
    report_.Check("rmsnorm_backward_dw", gdw.Download(), dw, 1e-5);
  }

  // ---------------------------------------------------------------- RoPE
  void Rope() {
    const int64_t max_pos = 4096, half = 16;
    std::vector<float> cs(max_pos * half), sn(max_pos * half);
    for (int64_t p = 0; p < max_pos; ++p) {
      for (int64_t i = 0; i < half; ++i) {
        const double inv_freq = std::pow(10000.0, -2.0 * i / (2.0 * half));
        cs[p * half + i] = static_cast<float>(std::cos(p * inv_freq));
        sn[p * half + i] = static_cast<float>(std::sin(p * inv_freq));
      }
    }
    Dev<float> gcos(cs), gsin(sn);
    struct Case {
      const char* name;
      int64_t tokens, heads, token_stride, head_stride, offset;
    };
    // q: [T, 16 heads, 96] with the rope part at 64; k_pe: one head inside the kv_a output [T, 288].
    for (const Case& c : {Case{"rope_q_heads", 257, 16, 16 * 96, 96, 64},
                          Case{"rope_k_shared", 300, 1, 288, 0, 256}}) {
      std::vector<float> x = rng_.Normal(c.tokens * c.token_stride);
      std::vector<int32_t> pos = rng_.Ints(c.tokens, 0, max_pos - 1);
      Dev<float> gx(x);
      Dev<int32_t> gpos(pos);
      RopeView v{x.data(), c.tokens, c.heads, c.token_stride, c.head_stride, c.offset, half,
                 pos.data(), cs.data(), sn.data()};
      RopeView gv{gx.get(), c.tokens, c.heads, c.token_stride, c.head_stride, c.offset, half,
                  gpos.get(), gcos.get(), gsin.get()};
      cpu_.RopeForward(v);
      gpu_.RopeForward(gv);
      report_.Check(Fmt("%s_forward", c.name), gx.Download(), x, 1e-6);
      cpu_.RopeBackward(v);
      gpu_.RopeBackward(gv);
      report_.Check(Fmt("%s_backward", c.name), gx.Download(), x, 1e-6);
    }
  }

  // ---------------------------------------------------------------- router
  void Router() {
    struct Case {
      const char* name;
      RouterParams p;
      bool bias;
    };
    auto make = [](int64_t e, int64_t k, int64_t g, int64_t tg, ScoringFunc f, TopkMethod m,
                   bool norm, float rho) {
      RouterParams p;
      p.num_experts = e;
      p.top_k = k;
      p.n_group = g;
      p.topk_group = tg;
      p.scoring = f;
      p.method = m;
      p.norm_topk_prob = norm;
      p.routed_scaling_factor = rho;
      return p;
    };
    const Case cases[] = {
        {"small_1b", make(64, 6, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f),
         true},
        {"v3", make(256, 8, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true, 2.5f), true},
        {"greedy_softmax", make(16, 2, 1, 1, ScoringFunc::kSoftmax, TopkMethod::kGreedy, false,
                                1.0f), false},
        {"group_greedy", make(64, 6, 8, 3, ScoringFunc::kSoftmax,
                              TopkMethod::kGroupLimitedGreedy, false, 16.0f), false},
        {"one_expert_groups", make(8, 3, 8, 4, ScoringFunc::kSigmoid, TopkMethod::kNoauxTc, true,
                                   1.0f), true},
    };
    const int64_t n = 2000;
    for (const Case& c : cases) {
      const int64_t E = c.p.num_experts, K = c.p.top_k;
      for (bool quantized : {true, false}) {
        // Quantised logits and bias make exact ties common (they must go to the lower index);
        // continuous ones test the arithmetic.
        std::vector<float> logits = rng_.Normal(n * E, 2.0f);
        std::vector<float> bias = rng_.Uniform(E, -0.1f, 0.1f);
        if (quantized) {
          for (float& z : logits) z = std::round(z * 2.0f) / 2.0f;
          for (float& b : bias) b = std::round(b * 20.0f) / 20.0f;
        }
        std::vector<float> scores(n * E), weights(n * K);
        std::vector<int32_t> sel(n * K);
        cpu_.RouterForward(c.p, logits.data(), c.bias ? bias.data() : nullptr, n, scores.data(),
                           sel.data(), weights.data());
        Dev<float> gl(logits), gb(bias), gs(n * E), gw(n * K);
        Dev<int32_t> gsel(n * K);
        gs.Poison();
        gw.Poison();
        gsel.Poison();
        gpu_.RouterForward(c.p, gl.get(), c.bias ? gb.get() : nullptr, n, gs.get(), gsel.get(),
                           gw.get());
        const std::vector<int32_t> got_sel = gsel.Download();
        const std::string tag = Fmt("router_%s%s", c.name, quantized ? "_ties" : "");
        // Selection: identical, or (continuous logits only) a swap between keys within 1e-6 of
        // each other in the CPU's own keys (a last-bit expf difference on a near-tie).
        int64_t mismatched_tokens = 0, unexplained = 0;
        for (int64_t t = 0; t < n; ++t) {
          bool same = true;
          for (int64_t r = 0; r < K; ++r) same &= got_sel[t * K + r] == sel[t * K + r];
          if (same) continue;
          ++mismatched_tokens;
          for (int64_t r = 0; r < K; ++r) {
            const int32_t g = got_sel[t * K + r], w = sel[t * K + r];
            if (g < 0 || g >= E) {
              ++unexplained;
              break;
            }
            auto key = [&](int32_t e) {
              const float s = scores[t * E + e];
              return c.bias && c.p.method == TopkMethod::kNoauxTc ? s + bias[e] : s;
            };
            if (std::fabs(key(g) - key(w)) > 1e-6f * std::max(1.0f, std::fabs(key(w)))) {
              ++unexplained;
              break;
            }
          }
        }
        const bool sel_ok = quantized ? mismatched_tokens == 0 : unexplained == 0;
        report_.Line(sel_ok, tag + "_selected",
                     Fmt("tokens with another choice: %lld of %lld (near-ties allowed: %s, "
                         "unexplained %lld)",
                         static_cast<long long>(mismatched_tokens), static_cast<long long>(n),
                         quantized ? "no" : "yes", static_cast<long long>(unexplained)));
        report_.Check(tag + "_scores", gs.Download(), scores, 1e-6);
        if (mismatched_tokens == 0) report_.Check(tag + "_weights", gw.Download(), weights, 1e-6);

        // Backward from the CPU's forward results (same selection on both sides).
        std::vector<float> d_w = rng_.Normal(n * K), extra = rng_.Normal(n * E, 0.1f);
        for (bool with_extra : {false, true}) {
          std::vector<float> dz(n * E);
          cpu_.RouterBackward(c.p, scores.data(), sel.data(), d_w.data(),
                              with_extra ? extra.data() : nullptr, n, dz.data());
          Dev<float> gsc(scores), gdw(d_w), gex(extra), gdz(n * E);
          Dev<int32_t> gsl(sel);
          gdz.Poison();
          gpu_.RouterBackward(c.p, gsc.get(), gsl.get(), gdw.get(),
                              with_extra ? gex.get() : nullptr, n, gdz.get());
          report_.Check(tag + (with_extra ? "_backward_extra" : "_backward"), gdz.Download(), dz,
                        1e-6);
        }
      }
    }
    Balance();
  }

  // Sequence-wise balance loss at the small_1b shape: a slice of 8192 router scores (64 experts,
  // top-6) starting at token 1000 of the micro-batch, in sequences of 4096: groups 0 and 2 are
  // partial, group 3 holds no token here (its stats must be written as zeros). Sigmoid scores of
  // continuous logits, and of logits rounded to 0.5 (exact ties in the top-K go to the lower
  // index).
  // The kernels follow the CPU's FP64 order: stats within 1e-12 relative (expected bit-identical),
  // counts exact, the gradient within 1e-7 (expected bit-identical).
  void Balance() {
    const int64_t n = 8192, E = 64, K = 6, first = 1000, len = 4096, groups = 4;
    for (bool ties : {false, true}) {
      std::vector<float> scores = rng_.Normal(n * E, 2.0f);
      for (float& z : scores) {
        if (ties) z = std::round(z * 2.0f) / 2.0f;
        z = 1.0f / (1.0f + std::exp(-z));
      }
      const std::string tag = Fmt("balance_small_1b%s", ties ? "_ties" : "");
      std::vector<double> ref(2 * groups * E);
      cpu_.BalanceStats(scores.data(), n, E, K, first, len, groups, ref.data());
      Dev<float> gs(scores);
      Dev<double> gstats(2 * groups * E);
      gstats.Poison();
      gpu_.BalanceStats(gs.get(), n, E, K, first, len, groups, gstats.get());
      const std::vector<double> got = gstats.Download();
      double max_rel = 0;
      int64_t p_differ = 0, unwritten = 0, count_wrong = 0;
      for (int64_t i = 0; i < groups * E; ++i) {
        const double g = got[i], r = ref[i];
        if (std::isnan(g)) {
          ++unwritten;
          continue;
        }
        p_differ += std::memcmp(&g, &r, sizeof(double)) != 0;
        max_rel = std::max(max_rel, std::fabs(g - r) / std::max(std::fabs(r), 1e-300));
        const double gc = got[groups * E + i], rc = ref[groups * E + i];
        count_wrong += std::isnan(gc) || gc != rc;
      }
      report_.Line(unwritten == 0 && max_rel <= 1e-12, tag + "_stats_p",
                   Fmt("max_rel=%.2e (tol 1e-12) bits_differ=%lld/%lld unwritten=%lld", max_rel,
                       static_cast<long long>(p_differ), static_cast<long long>(groups * E),
                       static_cast<long long>(unwritten)));
      report_.Line(count_wrong == 0, tag + "_stats_count",
                   Fmt("wrong=%lld/%lld (must be exact)", static_cast<long long>(count_wrong),
                       static_cast<long long>(groups * E)));

      const std::vector<float> f = rng_.Uniform(groups * E, 0.0f, 2.0f);
      const double coef = 1e-3 * E / (K * static_cast<double>(len));
      std::vector<float> d(n * E);
      cpu_.BalanceLossGrad(scores.data(), n, E, first, len, f.data(), coef, d.data());
      Dev<float> gf(f), gd(n * E);
      gd.Poison();
      gpu_.BalanceLossGrad(gs.get(), n, E, first, len, gf.get(), coef, gd.get());
      report_.Check(tag + "_grad", gd.Download(), d, 1e-7, "(expected bit-exact)");
    }
  }

  // ---------------------------------------------------------------- cross-entropy
  void CrossEntropy() {
    for (int64_t vocab : {32768, 50}) {
      const int64_t n = vocab > 1000 ? 300 : 1000;
      std::vector<float> logits = rng_.Normal(n * vocab, 3.0f);
      std::vector<int32_t> targets = rng_.Ints(n, 0, static_cast<int32_t>(vocab - 1));
      for (int64_t i = 0; i < n; i += 9) targets[i] = -1;  // ignored rows
      const float gs = 1.0f / static_cast<float>(n);
      std::vector<float> d(n * vocab);
      const double ref = cpu_.CrossEntropy(logits.data(), targets.data(), n, vocab, gs, d.data());
      const double ref_nograd =
          cpu_.CrossEntropy(logits.data(), targets.data(), n, vocab, gs, nullptr);
      Dev<float> gl(logits), gd(n * vocab);
      Dev<int32_t> gt(targets);
      gd.Poison();
      const double got = gpu_.CrossEntropy(gl.get(), gt.get(), n, vocab, gs, gd.get());
      const double got_nograd = gpu_.CrossEntropy(gl.get(), gt.get(), n, vocab, gs, nullptr);
      const std::string v = Fmt("v%lld", static_cast<long long>(vocab));
      const double rel = std::fabs(got - ref) / std::fabs(ref);
      report_.Line(rel <= 1e-6, "cross_entropy_loss_" + v,
                   Fmt("rel=%.2e (tol 1e-6) got=%.10g ref=%.10g", rel, got, ref));
      const double rel2 = std::fabs(got_nograd - ref_nograd) / std::fabs(ref_nograd);
      report_.Line(rel2 <= 1e-6, "cross_entropy_loss_nograd_" + v, Fmt("rel=%.2e", rel2));
      report_.Check("cross_entropy_grad_" + v, gd.Download(), d, 1e-6);
      // In place: d_logits == logits.
      const double got_inplace = gpu_.CrossEntropy(gl.get(), gt.get(), n, vocab, gs, gl.get());
      const double rel3 = std::fabs(got_inplace - ref) / std::fabs(ref);
      report_.Line(rel3 <= 1e-6, "cross_entropy_loss_inplace_" + v, Fmt("rel=%.2e", rel3));
      report_.Check("cross_entropy_grad_inplace_" + v, gl.Download(), d, 1e-6);
    }
  }

  // ---------------------------------------------------------------- GEMM
  // A random problem with padded leading dims; buffers sized for op(A) [m,k], op(B) [k,n].
  struct HostGemm {
    int64_t m, n, k, lda, ldb, ldc;
    std::vector<float> a, b, c;
  };
  HostGemm MakeGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, bool bf16_values) {
    HostGemm g;
    g.m = m;
    g.n = n;
    g.k = k;
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    g.lda = a_cols + 3;
    g.ldb = b_cols + 5;
    g.ldc = n + 2;
    g.a = rng_.Normal(std::max<int64_t>(a_rows, 1) * g.lda);
    g.b = rng_.Normal(std::max<int64_t>(b_rows, 1) * g.ldb);
    g.c = rng_.Normal(std::max<int64_t>(m, 1) * g.ldc);
    if (bf16_values) {
      g.a = RoundedBf16(g.a);
      g.b = RoundedBf16(g.b);
    }
    return g;
  }

  void Gemm() {
    for (GemmMath math : {GemmMath::kFp32, GemmMath::kBf16}) {
      gpu_.set_gemm_math(math);
      const char* mname = math == GemmMath::kFp32 ? "fp32" : "bf16";
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        for (float beta : {0.0f, 0.5f}) {
          for (int64_t k : {300, 0}) {
            HostGemm g = MakeGemm(ta, tb, 257, 129, k, math == GemmMath::kBf16);
            Dev<float> ga(g.a), gb(g.b), gc(g.c);
            if (beta == 0.0f) gc.Poison();  // beta == 0: C must not be read
            GemmProblem cp{g.m, g.n, g.k, g.a.data(), g.lda, g.b.data(), g.ldb, g.c.data(), g.ldc};
            GemmProblem gp{g.m, g.n, g.k, ga.get(), g.lda, gb.get(), g.ldb, gc.get(), g.ldc};
            const Transpose xa = ta ? Transpose::kYes : Transpose::kNo;
            const Transpose xb = tb ? Transpose::kYes : Transpose::kNo;
            cpu_.Gemm(xa, xb, cp, 0.75f, beta);
            gpu_.Gemm(xa, xb, gp, 0.75f, beta);
            std::vector<float> got = gc.Download();
            // Compare the m x n block only (the padding columns are never touched).
            std::vector<float> got_mn, ref_mn;
            for (int64_t i = 0; i < g.m; ++i) {
              for (int64_t j = 0; j < g.n; ++j) {
                got_mn.push_back(got[i * g.ldc + j]);
                ref_mn.push_back(g.c[i * g.ldc + j]);
              }
            }
            report_.Check(Fmt("gemm_%s_%s%s_beta%g_k%lld", mname, ta ? "T" : "N", tb ? "T" : "N",
                              beta, static_cast<long long>(k)),
                          got_mn, ref_mn, 1e-5);
          }
        }
      }
    }
    gpu_.set_gemm_math(GemmMath::kFp32);
  }

  void GroupedGemm() {
    // Expert-like sizes, including empty problems, one with k == 0 and one past 256 rows.
    const int64_t ms[] = {37, 0, 300, 64, 1, 129, 17, 65, 200};
    const int64_t ns[] = {96, 96, 96, 50, 96, 96, 0, 96, 33};
    const int64_t ks[] = {64, 64, 64, 128, 64, 0, 64, 65, 40};
    const int np = 9;
    for (GemmMath math : {GemmMath::kFp32, GemmMath::kBf16}) {
      gpu_.set_gemm_math(math);
      const char* mname = math == GemmMath::kFp32 ? "fp32" : "bf16";
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        for (float beta : {0.0f, 1.0f}) {
          std::vector<HostGemm> host;
          std::vector<std::unique_ptr<Dev<float>>> dev;
          std::vector<GemmProblem> cps, gps;
          for (int i = 0; i < np; ++i) {
            host.push_back(MakeGemm(ta, tb, ms[i], ns[i], ks[i], math == GemmMath::kBf16));
          }
          for (int i = 0; i < np; ++i) {
            HostGemm& g = host[i];
            dev.push_back(std::make_unique<Dev<float>>(g.a));
            dev.push_back(std::make_unique<Dev<float>>(g.b));
            dev.push_back(std::make_unique<Dev<float>>(g.c));
            if (beta == 0.0f) dev.back()->Poison();
            cps.push_back({g.m, g.n, g.k, g.a.data(), g.lda, g.b.data(), g.ldb, g.c.data(), g.ldc});
            gps.push_back({g.m, g.n, g.k, dev[3 * i]->get(), g.lda, dev[3 * i + 1]->get(), g.ldb,
                           dev[3 * i + 2]->get(), g.ldc});
          }
          const Transpose xa = ta ? Transpose::kYes : Transpose::kNo;
          const Transpose xb = tb ? Transpose::kYes : Transpose::kNo;
          cpu_.GroupedGemm(xa, xb, cps, 1.25f, beta);
          gpu_.GroupedGemm(xa, xb, gps, 1.25f, beta);
          std::vector<float> got_all, ref_all;
          for (int i = 0; i < np; ++i) {
            const std::vector<float> got = dev[3 * i + 2]->Download();
            for (int64_t r = 0; r < host[i].m; ++r) {
              for (int64_t j = 0; j < host[i].n; ++j) {
                got_all.push_back(got[r * host[i].ldc + j]);
                ref_all.push_back(host[i].c[r * host[i].ldc + j]);
              }
            }
          }
          report_.Check(Fmt("grouped_gemm_%s_%s%s_beta%g", mname, ta ? "T" : "N", tb ? "T" : "N",
                            beta),
                        got_all, ref_all, 1e-5);
        }
      }
    }
    gpu_.set_gemm_math(GemmMath::kFp32);
  }

  // ---------------------------------------------------------------- attention
  void Attention() {
    struct Case {
      const char* name;
      int64_t b, t, h, dqk, dv;
    };
    for (const Case& c : {Case{"tiny", 2, 200, 3, 24, 16}, Case{"small_1b", 1, 256, 2, 96, 64},
                          Case{"v3_mla", 1, 300, 2, 192, 128}, Case{"wide", 1, 130, 1, 256, 256},
                          Case{"short", 1, 5, 2, 128, 128}}) {
      AttentionShape s;
      s.batch = c.b;
      s.seq = c.t;
      s.heads = c.h;
      s.qk_dim = c.dqk;
      s.v_dim = c.dv;
      s.scale = 1.0f / std::sqrt(static_cast<float>(c.dqk));
      const int64_t nqk = c.b * c.t * c.h * c.dqk, nv = c.b * c.t * c.h * c.dv;
      const int64_t nl = c.b * c.h * c.t;
      std::vector<float> q = rng_.Normal(nqk), k = rng_.Normal(nqk), v = rng_.Normal(nv);
      std::vector<float> out(nv), lse(nl);
      cpu_.AttentionForward(s, q.data(), k.data(), v.data(), out.data(), lse.data());
      Dev<float> gq(q), gk(k), gv(v), gout(nv), glse(nl);
      gout.Poison();
      glse.Poison();
      gpu_.AttentionForward(s, gq.get(), gk.get(), gv.get(), gout.get(), glse.get());
      const std::string tag = Fmt("attention_%s", c.name);
      report_.Check(tag + "_out", gout.Download(), out, 1e-5);
      report_.Check(tag + "_lse", glse.Download(), lse, 1e-5);

      std::vector<float> d_out = rng_.Normal(nv), dq(nqk), dk(nqk), dv(nv);
      cpu_.AttentionBackward(s, q.data(), k.data(), v.data(), out.data(), lse.data(),
                             d_out.data(), dq.data(), dk.data(), dv.data());
      Dev<float> gout_ref(out), glse_ref(lse), gdo(d_out), gdq(nqk), gdk(nqk), gdv(nv);
      gdq.Poison();
      gdk.Poison();
      gdv.Poison();
      gpu_.AttentionBackward(s, gq.get(), gk.get(), gv.get(), gout_ref.get(), glse_ref.get(),
                             gdo.get(), gdq.get(), gdk.get(), gdv.get());
      report_.Check(tag + "_dq", gdq.Download(), dq, 1e-4);
      report_.Check(tag + "_dk", gdk.Download(), dk, 1e-4);
      report_.Check(tag + "_dv", gdv.Download(), dv, 1e-4);
    }
  }

  // ---------------------------------------------------------------- timings
  void PerfLine(const std::string& name, double ms, double flops, double bytes) {
    std::string rate;
    if (flops > 0) rate += Fmt("%8.1f TFLOP/s", flops / ms / 1e9);
    if (bytes > 0) rate += Fmt("%8.1f GB/s", bytes / ms / 1e6);
    std::printf("PERF  %-46s %9.3f ms %s\n", name.c_str(), ms, rate.c_str());
    std::fflush(stdout);
  }

  void Perf() {
    cudaStream_t st = gpu_.stream();
    const int64_t tokens = 8 * 4096, hidden = 1024;
    // GEMMs of small_1b's layers, x [tokens, in] times W^T (W [out, in]): forward (N, T).
    struct Shape {
      const char* name;
      int64_t m, n, k;
    };
    const Shape shapes[] = {{"q_a 1024->512", tokens, 512, hidden},
                            {"q_b 512->1536", tokens, 1536, 512},
                            {"o_proj 1024->1024", tokens, hidden, hidden},
                            {"mlp_up 1024->4096", tokens, 4096, hidden},
                            {"mlp_down 4096->1024", tokens, hidden, 4096},
                            {"lm_head 1024->32768", tokens, 32768, hidden},
                            {"square 8192", 8192, 8192, 8192}};
    for (GemmMath math : {GemmMath::kBf16, GemmMath::kFp32}) {
      gpu_.set_gemm_math(math);
      for (const Shape& s : shapes) {
        Dev<float> a(s.m * s.k), b(s.n * s.k), c(s.m * s.n);
        FillRandom(a, s.m * s.k);
        FillRandom(b, s.n * s.k);
        GemmProblem p{s.m, s.n, s.k, a.get(), s.k, b.get(), s.k, c.get(), s.n};
        const double ms = TimeMs(st, 2, 10, [&] {
          gpu_.Gemm(Transpose::kNo, Transpose::kYes, p, 1.0f, 0.0f);
        });
        PerfLine(Fmt("gemm_%s %s", math == GemmMath::kBf16 ? "bf16" : "fp32", s.name), ms,
                 2.0 * s.m * s.n * s.k, 0);
      }
    }

    // Routed experts: tokens * 6 rows over 64 experts (uneven), gate+up fused 1024 -> 512, then
    // down 256 -> 1024; the same problems as a host loop of cuBLASLt calls for comparison.
    {
      const int64_t experts = 64, rows_total = tokens * 6;
      std::vector<int64_t> rows(experts);
      std::vector<float> share = rng_.Uniform(experts, 0.5f, 1.5f);
      const float sum = std::accumulate(share.begin(), share.end(), 0.0f);
      int64_t assigned = 0;
      for (int64_t e = 0; e < experts; ++e) {
        rows[e] = static_cast<int64_t>(share[e] / sum * rows_total);
        assigned += rows[e];
      }
      rows[0] += rows_total - assigned;
      for (auto [name, in, out] : {std::tuple<const char*, int64_t, int64_t>{"up 1024->512", 1024, 512},
                                   {"down 256->1024", 256, 1024}}) {
        Dev<float> x(rows_total * in), w(experts * out * in), y(rows_total * out);
        FillRandom(x, rows_total * in);
        FillRandom(w, experts * out * in);
        std::vector<GemmProblem> probs;
        int64_t off = 0;
        for (int64_t e = 0; e < experts; ++e) {
          probs.push_back({rows[e], out, in, x.get() + off * in, in, w.get() + e * out * in, in,
                           y.get() + off * out, out});
          off += rows[e];
        }
        const double flops = 2.0 * rows_total * in * out;
        for (GemmMath math : {GemmMath::kBf16, GemmMath::kFp32}) {
          gpu_.set_gemm_math(math);
          const char* mname = math == GemmMath::kBf16 ? "bf16" : "fp32";
          const double ms = TimeMs(st, 2, 10, [&] {
            gpu_.GroupedGemm(Transpose::kNo, Transpose::kYes, probs, 1.0f, 0.0f);
          });
          PerfLine(Fmt("grouped_gemm_%s 64 experts %s", mname, name), ms, flops, 0);
          const double ms_loop = TimeMs(st, 2, 10, [&] {
            for (const GemmProblem& p : probs) gpu_.Gemm(Transpose::kNo, Transpose::kYes, p, 1.0f, 0.0f);
          });
          PerfLine(Fmt("  (cublasLt loop %s, reference) %s", mname, name), ms_loop, flops, 0);
        }
      }
      gpu_.set_gemm_math(GemmMath::kFp32);
    }

    // Attention at small_1b shapes.
    {
      AttentionShape s;
      s.batch = 8;
      s.seq = 4096;
      s.heads = 16;
      s.qk_dim = 96;
      s.v_dim = 64;
      s.scale = 1.0f / std::sqrt(96.0f);
      const int64_t nqk = s.batch * s.seq * s.heads * s.qk_dim;
      const int64_t nv = s.batch * s.seq * s.heads * s.v_dim;
      const int64_t nl = s.batch * s.heads * s.seq;
      Dev<float> q(nqk), k(nqk), v(nv), out(nv), lse(nl), dout(nv), dq(nqk), dk(nqk), dv(nv);
      FillRandom(q, nqk);
      FillRandom(k, nqk);
      FillRandom(v, nv);
      FillRandom(dout, nv);
      const double pairs = static_cast<double>(s.batch) * s.heads * s.seq * (s.seq + 1) / 2.0;
      const double fwd_ms = TimeMs(st, 1, 5, [&] {
        gpu_.AttentionForward(s, q.get(), k.get(), v.get(), out.get(), lse.get());
      });
      PerfLine("attention_forward B8 T4096 H16 qk96 v64", fwd_ms,
               2.0 * pairs * (s.qk_dim + s.v_dim), 0);
      const double bwd_ms = TimeMs(st, 1, 5, [&] {
        gpu_.AttentionBackward(s, q.get(), k.get(), v.get(), out.get(), lse.get(), dout.get(),
                               dq.get(), dk.get(), dv.get());
      });
      PerfLine("attention_backward (useful flops)", bwd_ms,
               2.0 * pairs * (3.0 * s.qk_dim + 2.0 * s.v_dim), 0);
    }

    // Memory-bound ops at small_1b sizes (bytes = each input read once, each output written once).
    {
      const int64_t n = tokens * hidden;
      Dev<float> x(n), w(hidden), y(n), r(tokens), dy(n), dx(n), dw(hidden);
      FillRandom(x, n);
      FillRandom(w, hidden);
      FillRandom(dy, n);
      double ms = TimeMs(st, 2, 10, [&] {
        gpu_.RmsNormForward(x.get(), w.get(), tokens, hidden, 1e-6f, true, y.get(), r.get());
      });
      PerfLine("rmsnorm_forward [32768 x 1024]", ms, 0, 8.0 * n);
      ms = TimeMs(st, 2, 10, [&] {
        gpu_.RmsNormBackward(x.get(), w.get(), r.get(), dy.get(), tokens, hidden, dx.get(),
                             dw.get());
      });
      PerfLine("rmsnorm_backward [32768 x 1024]", ms, 0, 12.0 * n);
      ms = TimeMs(st, 2, 10, [&] { gpu_.RoundToBf16(y.get(), n); });
      PerfLine("round_to_bf16 32M", ms, 0, 8.0 * n);
      ms = TimeMs(st, 2, 10, [&] { gpu_.SwigluForward(x.get(), dy.get(), y.get(), n); });
      PerfLine("swiglu_forward 32M", ms, 0, 12.0 * n);
      Dev<float> m(n), vv(n);
      FillRandom(m, n);
      FillRandom(vv, n);
      kernels::AdamWParams hp;
      hp.lr = 1e-4f;
      ms = TimeMs(st, 2, 10, [&] { gpu_.AdamW(hp, x.get(), dy.get(), m.get(), vv.get(), n); });
      PerfLine("adamw 32M", ms, 0, 28.0 * n);
      ms = TimeMs(st, 2, 10, [&] { gpu_.Copy(x.get(), y.get(), n); });
      PerfLine("copy 32M (one row)", ms, 0, 8.0 * n);
      ms = TimeMs(st, 2, 10, [&] { gpu_.Fill(y.get(), n, 0.0f); });
      PerfLine("fill 32M", ms, 0, 4.0 * n);
      // A head split: the rope slice (offset 64, 32 wide) of 262144 q heads of 96 into a packed copy.
      const int64_t heads = 262144;
      ms = TimeMs(st, 2, 10, [&] { gpu_.Copy2D(x.get() + 64, 96, y.get(), 32, heads, 32, false); });
      PerfLine("copy2d [262144 x 32] from ld 96", ms, 0, 8.0 * heads * 32);
      ms = TimeMs(st, 2, 10, [&] { gpu_.RowDot(x.get(), dy.get(), tokens, hidden, r.get()); });
      PerfLine("row_dot [32768 x 1024]", ms, 0, 8.0 * n);
      ms = TimeMs(st, 2, 10, [&] { gpu_.ScaleRows(y.get(), r.get(), tokens, hidden); });
      PerfLine("scale_rows [32768 x 1024]", ms, 0, 8.0 * n);
    }
    {
      const int64_t n = 4096, vocab = 32768;  // one sequence's logits
      Dev<float> logits(n * vocab);
      FillRandom(logits, n * vocab);
      std::vector<int32_t> t = rng_.Ints(n, 0, vocab - 1);
      Dev<int32_t> targets(t);
      const double ms = TimeMs(st, 2, 10, [&] {
        gpu_.CrossEntropy(logits.get(), targets.get(), n, vocab, 1.0f, logits.get());
      });
      PerfLine("cross_entropy in place [4096 x 32768]", ms, 0, 8.0 * n * vocab);
    }
    {
      RouterParams p;
      p.num_experts = 64;
      p.top_k = 6;
      p.n_group = 8;
      p.topk_group = 4;
      p.routed_scaling_factor = 2.5f;
      const int64_t n = tokens;
      Dev<float> logits(n * 64), bias(64), scores(n * 64), weights(n * 6);
      Dev<int32_t> sel(n * 6);
      FillRandom(logits, n * 64);
      FillRandom(bias, 64);
      double ms = TimeMs(st, 2, 10, [&] {
        gpu_.RouterForward(p, logits.get(), bias.get(), n, scores.get(), sel.get(), weights.get());
      });
      PerfLine("router_forward 32768 tokens, 64 experts", ms, 0, 0);
      // Balance loss over the router's scores: 8 sequences of 4096, and the whole micro-batch as
      // one group (each (group, expert) sum is one sequential FP64 chain over the group's tokens).
      Dev<double> stats(2 * 8 * 64);
      Dev<float> f(8 * 64), d_scores(n * 64);
      FillRandom(f, 8 * 64);
      ms = TimeMs(st, 2, 10, [&] {
        gpu_.BalanceStats(scores.get(), n, 64, 6, 0, 4096, 8, stats.get());
      });
      PerfLine("balance_stats 32768 tokens, 64 experts, seq 4096", ms, 0, 4.0 * n * 64);
      ms = TimeMs(st, 2, 10, [&] {
        gpu_.BalanceStats(scores.get(), n, 64, 6, 0, n, 1, stats.get());
      });
      PerfLine("balance_stats 32768 tokens, 64 experts, one group", ms, 0, 4.0 * n * 64);
      ms = TimeMs(st, 2, 10, [&] {
        gpu_.BalanceLossGrad(scores.get(), n, 64, 0, 4096, f.get(), 1e-4, d_scores.get());
      });
      PerfLine("balance_grad 32768 tokens, 64 experts", ms, 0, 8.0 * n * 64);
      // Combine: each token's 6 expert outputs (rows in expert order, i.e. a shuffle of the
      // tokens) added back into its row with the gate weights.
      std::vector<int32_t> token(n * 6);
      for (int64_t i = 0; i < n * 6; ++i) token[i] = static_cast<int32_t>(i / 6);
      std::shuffle(token.begin(), token.end(), rng_.gen());
      Dev<int32_t> gtoken(token);
      Dev<float> expert_out(n * 6 * hidden), combined(n * hidden);
      FillRandom(expert_out, n * 6 * hidden);
      FillRandom(combined, n * hidden);
      ms = TimeMs(st, 2, 10, [&] {
        gpu_.ScatterAddRows(expert_out.get(), gtoken.get(), weights.get(), n * 6, hidden,
                            combined.get());
      });
      PerfLine("scatter_add_rows (combine) 196608 -> 32768 x 1024", ms, 0,
               4.0 * (n * 6 * hidden + 2.0 * n * hidden));
      ms = TimeMs(st, 2, 10, [&] {
        gpu_.GatherRows(combined.get(), gtoken.get(), n * 6, hidden, expert_out.get());
      });
      PerfLine("gather_rows (dispatch) 32768 -> 196608 x 1024", ms, 0, 8.0 * n * 6 * hidden);
    }
    gpu_.Synchronize();
  }

  // Fills a timing buffer with normals: one 4M-element random block drawn once, copied at rotating
  // offsets (timings need realistic, non-zero data, not fresh draws of every element).
  void FillRandom(Dev<float>& d, int64_t n) {
    constexpr int64_t kBlock = int64_t{1} << 22;
    if (perf_block_.empty()) perf_block_ = rng_.Normal(2 * kBlock);
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    for (int64_t off = 0, i = 0; off < n; off += kBlock, ++i) {
      const int64_t len = std::min(kBlock, n - off);
      MOE_CUDA_CHECK(cudaMemcpy(d.get() + off, perf_block_.data() + (i * 977) % kBlock,
                                sizeof(float) * len, cudaMemcpyHostToDevice));
    }
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }

  Options opt_;
  Rng rng_;
  CpuBackend& cpu_;
  CudaBackend& gpu_;
  Report report_;
  std::vector<float> perf_block_;
};

Options Parse(int argc, char** argv) {
  Options o;
  o.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--seed=", 0) == 0) {
      o.seed = std::strtoull(a.c_str() + 7, nullptr, 10);
    } else if (a == "--no_perf") {
      o.perf = false;
    } else if (a.rfind("--only=", 0) == 0) {
      o.only = a.substr(7);
    } else {
      std::fprintf(stderr, "usage: %s [--seed=N] [--no_perf] [--only=GROUP]\n", argv[0]);
      std::exit(2);
    }
  }
  return o;
}

}  // namespace
}  // namespace moe::gpucheck

int main(int argc, char** argv) {
  using namespace moe::gpucheck;
  const Options opt = Parse(argc, argv);
  moe::kernels::CudaBackendOptions bo;
  auto gpu = moe::kernels::CudaBackend::Create(bo);
  if (!gpu.ok()) {
    std::fprintf(stderr, "kernel_check: %s\n", gpu.status().ToString().c_str());
    return 2;
  }
  cudaDeviceProp prop;
  MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("device: %s, %d SMs, %.1f GiB, cc %d.%d; driver %d, runtime %d, cuBLASLt %zu; "
              "seed %llu\n",
              prop.name, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor, driver,
              runtime, cublasLtGetVersion(), static_cast<unsigned long long>(opt.seed));
  moe::kernels::CpuBackend cpu;
  Checks checks(opt, cpu, **gpu);
  return checks.Run();
}
