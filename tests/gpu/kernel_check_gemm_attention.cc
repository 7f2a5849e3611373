// kernel_check groups "gemm", "grouped_gemm" and "attention": cuBLASLt GEMM (FP32 and BF16 modes,
// all transposes, padded leading dims, beta 0 and 0.5, k = 0), the one-launch grouped GEMM, and the
// flash attention kernel forward and backward (out, lse, dq, dk, dv). See kernel_check.h.

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

// ---------------------------------------------------------------- GEMM
// A random problem with padded leading dims (see HostGemm in kernel_check.h).
Checks::HostGemm Checks::MakeGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                                  bool bf16_math) {
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
  g.a_ref = bf16_math ? RoundedBf16(g.a) : g.a;
  g.b_ref = bf16_math ? RoundedBf16(g.b) : g.b;
  return g;
}

std::vector<float> Checks::HostGemm::Block(const std::vector<float>& c_full) const {
  std::vector<float> block;
  for (int64_t i = 0; i < m; ++i) block.insert(block.end(), c_full.begin() + i * ldc, c_full.begin() + i * ldc + n);
  return block;
}

void Checks::Gemm() {
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
          GemmProblem gp{g.m, g.n, g.k, ga.get(), g.lda, gb.get(), g.ldb, gc.get(), g.ldc};
          const Transpose xa = ta ? Transpose::kYes : Transpose::kNo;
          const Transpose xb = tb ? Transpose::kYes : Transpose::kNo;
          cpu_.Gemm(xa, xb, g.Reference(), 0.75f, beta);
          gpu_.Gemm(xa, xb, gp, 0.75f, beta);
          const std::vector<float> got_mn = g.Block(gc.Download()), ref_mn = g.Block(g.c);
          report_.Check(Fmt("gemm_%s_%s%s_beta%g_k%lld", mname, ta ? "T" : "N", tb ? "T" : "N",
                            beta, static_cast<long long>(k)),
                        got_mn, ref_mn, 1e-5);
        }
      }
    }
  }
  gpu_.set_gemm_math(GemmMath::kFp32);
}

namespace {
// GroupedGemm's irregular set: expert-like sizes, empty problems, one with k == 0 and one past 256 rows, n
// and k differing too.
constexpr int kGroupedProblems = 9;
constexpr int64_t kGroupedM[kGroupedProblems] = {37, 0, 300, 64, 1, 129, 17, 65, 200};
constexpr int64_t kGroupedN[kGroupedProblems] = {96, 96, 96, 50, 96, 96, 0, 96, 33};
constexpr int64_t kGroupedK[kGroupedProblems] = {64, 64, 64, 128, 64, 0, 64, 65, 40};
}  // namespace

void Checks::GroupedGemm() {
  // Every implementation on two sets of problems: the irregular one, and an expert-shaped one where only
  // the routed dimension differs (the rows m, or for a transposed A, a weight gradient, the summed k), as
  // the model's products have it, which is what the padded batch needs (it takes irregular sets to the
  // per-expert path).
  for (GroupedGemmImpl impl : {GroupedGemmImpl::kCublasLt, GroupedGemmImpl::kCublasGrouped,
                               GroupedGemmImpl::kCublasLtPadded, GroupedGemmImpl::kKernel}) {
    gpu_.set_grouped_gemm_impl(impl);
    for (bool experts : {false, true}) {
      for (GemmMath math : {GemmMath::kFp32, GemmMath::kBf16}) {
        gpu_.set_gemm_math(math);
        for (int t = 0; t < 4; ++t) {
          for (float beta : {0.0f, 1.0f}) GroupedGemmCase(impl, experts, t & 1, t & 2, beta);
        }
      }
    }
  }
  gpu_.set_gemm_math(GemmMath::kFp32);
  gpu_.set_grouped_gemm_impl(GroupedGemmImpl::kCublasLt);
  // Whether the cublas_grouped checks above ran cuBLAS's grouped call or, refused, the per-expert path
  // (not a failure of ours: the option then falls back; but its figures would mean the fallback's).
  std::printf("INFO  grouped_gemm_cublas_grouped: %s\n",
              gpu_.cublas_grouped_refused() ? "cuBLAS REFUSED the grouped call; the checks ran the per-expert fallback"
                                            : "ran as one cublasGemmGroupedBatchedEx call per product");
  GroupedGemmBuckets();
}

// One grouped product of the set against the CPU, in the implementation and arithmetic mode set.
void Checks::GroupedGemmCase(GroupedGemmImpl impl, bool experts, bool ta, bool tb, float beta) {
  const char* iname = impl == GroupedGemmImpl::kCublasLt         ? "lt"
                      : impl == GroupedGemmImpl::kCublasGrouped  ? "cublas_grouped"
                      : impl == GroupedGemmImpl::kCublasLtPadded ? "lt_padded"
                                                                 : "kernel";
  const GemmMath math = gpu_.gemm_math();
  const char* mname = math == GemmMath::kFp32 ? "fp32" : "bf16";
  const int np = kGroupedProblems;
  std::vector<HostGemm> host;
  std::vector<std::unique_ptr<Dev<float>>> dev;
  std::vector<GemmProblem> cps, gps;
  for (int i = 0; i < np; ++i) {
    int64_t m = kGroupedM[i], n = kGroupedN[i], k = kGroupedK[i];
    if (experts) {  // only the routed dimension (m, or k for a weight gradient) takes the set's sizes
      m = ta ? 48 : kGroupedM[i];
      n = ta ? 40 : 96;
      k = ta ? kGroupedM[i] : 64;
    }
    host.push_back(MakeGemm(ta, tb, m, n, k, math == GemmMath::kBf16));
  }
  for (int i = 0; i < np; ++i) {
    HostGemm& g = host[i];
    dev.push_back(std::make_unique<Dev<float>>(g.a));
    dev.push_back(std::make_unique<Dev<float>>(g.b));
    dev.push_back(std::make_unique<Dev<float>>(g.c));
    if (beta == 0.0f) dev.back()->Poison();
    cps.push_back(g.Reference());
    gps.push_back({g.m, g.n, g.k, dev[3 * i]->get(), g.lda, dev[3 * i + 1]->get(), g.ldb,
                   dev[3 * i + 2]->get(), g.ldc});
  }
  const Transpose xa = ta ? Transpose::kYes : Transpose::kNo;
  const Transpose xb = tb ? Transpose::kYes : Transpose::kNo;
  cpu_.GroupedGemm(xa, xb, cps, 1.25f, beta);
  const int64_t padded_before = gpu_.padded_batches();
  gpu_.GroupedGemm(xa, xb, gps, 1.25f, beta);
  const char* set = experts ? "_experts" : "";
  if (impl == GroupedGemmImpl::kCublasLtPadded && experts) {  // the batch must have run, not the fallback
    report_.Line(gpu_.padded_batches() == padded_before + 1,
                 Fmt("grouped_gemm_lt_padded_%s_%s%s_beta%g_ran_as_one_batch", mname, ta ? "T" : "N",
                     tb ? "T" : "N", beta),
                 "");
  }
  std::vector<float> got_all, ref_all;
  for (int i = 0; i < np; ++i) {
    const std::vector<float> got = host[i].Block(dev[3 * i + 2]->Download()), ref = host[i].Block(host[i].c);
    got_all.insert(got_all.end(), got.begin(), got.end());
    ref_all.insert(ref_all.end(), ref.begin(), ref.end());
  }
  report_.Check(Fmt("grouped_gemm_%s_%s_%s%s_beta%g%s", iname, mname, ta ? "T" : "N",
                    tb ? "T" : "N", beta, set),
                got_all, ref_all, 1e-5);
  if (impl == GroupedGemmImpl::kCublasLt && beta == 0.0f) {
    // The products spread over side streams give the same bits as in order on one stream.
    const int lanes = gpu_.grouped_gemm_streams();
    gpu_.set_grouped_gemm_streams(1);
    for (int i = 0; i < np; ++i) dev[3 * i + 2]->Poison();
    gpu_.GroupedGemm(xa, xb, gps, 1.25f, beta);
    gpu_.set_grouped_gemm_streams(lanes);
    std::vector<float> serial;
    for (int i = 0; i < np; ++i) {
      const std::vector<float> got = host[i].Block(dev[3 * i + 2]->Download());
      serial.insert(serial.end(), got.begin(), got.end());
    }
    report_.CheckBits(Fmt("grouped_gemm_lt_%s_%s%s_%d_streams_vs_1%s", mname, ta ? "T" : "N",
                          tb ? "T" : "N", lanes, set),
                      got_all, serial);
  }
}

// A grouped product takes the algorithm of its row bucket's shape (CudaBackend::Plan), whatever shapes
// came before: two fresh backends that see expert products of 2900 and 3000 rows (one bucket) in
// opposite orders give the same bits, and both match the CPU.
void Checks::GroupedGemmBuckets() {
  const int64_t rows[] = {2900, 3000};
  std::vector<HostGemm> host;
  for (int64_t m : rows) host.push_back(MakeGemm(false, true, m, 512, 1024, true));
  std::vector<float> outputs[2];  // per order: both products' outputs, first problem first
  for (int order = 0; order < 2; ++order) {
    CudaBackendOptions options;
    options.gemm_math = GemmMath::kBf16;
    auto fresh = CudaBackend::Create(options);
    if (!fresh.ok()) {
      report_.Line(false, "grouped_gemm_lt_bucket_order", fresh.status().ToString());
      return;
    }
    std::vector<float> got[2];
    for (int step = 0; step < 2; ++step) {
      const int i = order == 0 ? step : 1 - step;
      const HostGemm& g = host[i];
      Dev<float> a(g.a), b(g.b), c(g.c.size());
      c.Poison();
      (*fresh)->GroupedGemm(Transpose::kNo, Transpose::kYes,
                            {{g.m, g.n, g.k, a.get(), g.lda, b.get(), g.ldb, c.get(), g.ldc}}, 1.0f, 0.0f);
      got[i] = g.Block(c.Download());
    }
    for (int i = 0; i < 2; ++i) outputs[order].insert(outputs[order].end(), got[i].begin(), got[i].end());
  }
  std::vector<float> ref;  // the CPU's FP32 product of the BF16-rounded operands
  for (HostGemm& g : host) {
    cpu_.Gemm(Transpose::kNo, Transpose::kYes, g.Reference(), 1.0f, 0.0f);
    const std::vector<float> block = g.Block(g.c);
    ref.insert(ref.end(), block.begin(), block.end());
  }
  report_.Check("grouped_gemm_lt_bucket_vs_cpu", outputs[0], ref, 1e-5);
  report_.CheckBits("grouped_gemm_lt_bucket_either_order", outputs[1], outputs[0]);
}

// ---------------------------------------------------------------- attention
void Checks::Attention() {
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
    AttentionCase(s, Fmt("attention_%s", c.name), /*cudnn=*/false);
    AttentionCase(s, Fmt("attention_%s_cudnn", c.name), /*cudnn=*/true);
  }
}

// One shape against the CPU: the built-in FP32 kernel (FP32 mode), or cuDNN's fused attention (BF16
// mode), whose operands q, k, v (and o, d_o for the backward) are rounded to BF16 first, on both
// sides, so the differences left are cuDNN's own roundings (the probabilities and outputs in BF16,
// ~2^-9 relative each; an H200 with cuDNN 9.19 measured ~2e-3 relative L2 on every output but lse,
// 1e-7 there). cuDNN must also repeat itself bit for bit (its deterministic backward).
void Checks::AttentionCase(const AttentionShape& s, const std::string& tag, bool cudnn) {
  gpu_.set_gemm_math(cudnn ? GemmMath::kBf16 : GemmMath::kFp32);
  gpu_.set_attention_impl(cudnn ? kernels::AttentionImpl::kCudnn : kernels::AttentionImpl::kKernel);
  if (cudnn) {
    const absl::Status status = gpu_.CudnnAttentionStatus(s);
    report_.Line(status.ok(), tag + "_available",
                 status.ok() ? gpu_.CudnnAttentionEngines(s) : std::string(status.message()));
    if (!status.ok()) return;
  }
  const double tol_out = cudnn ? 5e-3 : 1e-5, tol_lse = cudnn ? 1e-4 : 1e-5, tol_grad = cudnn ? 1e-2 : 1e-4;
  const std::string what = cudnn ? "(BF16 operands)" : "";
  auto operand = [&](int64_t n) { return cudnn ? RoundedBf16(rng_.Normal(n)) : rng_.Normal(n); };
  const int64_t nqk = s.batch * s.seq * s.heads * s.qk_dim, nv = s.batch * s.seq * s.heads * s.v_dim;
  const int64_t nl = s.batch * s.heads * s.seq;
  std::vector<float> q = operand(nqk), k = operand(nqk), v = operand(nv);
  std::vector<float> out(nv), lse(nl);
  cpu_.AttentionForward(s, q.data(), k.data(), v.data(), out.data(), lse.data());
  Dev<float> gq(q), gk(k), gv(v), gout(nv), glse(nl);
  gout.Poison();
  glse.Poison();
  gpu_.AttentionForward(s, gq.get(), gk.get(), gv.get(), gout.get(), glse.get());
  const std::vector<float> got_out = gout.Download();
  report_.Check(tag + "_out", got_out, out, tol_out, what);
  report_.Check(tag + "_lse", glse.Download(), lse, tol_lse, what);
  if (cudnn) {
    gpu_.AttentionForward(s, gq.get(), gk.get(), gv.get(), gout.get(), glse.get());
    report_.CheckBits(tag + "_fwd_repeat", gout.Download(), got_out);
    out = RoundedBf16(out);
  }

  const std::vector<float> d_out = operand(nv);
  std::vector<float> dq(nqk), dk(nqk), dv(nv);
  cpu_.AttentionBackward(s, q.data(), k.data(), v.data(), out.data(), lse.data(), d_out.data(),
                         dq.data(), dk.data(), dv.data());
  Dev<float> gout_ref(out), glse_ref(lse), gdo(d_out), gdq(nqk), gdk(nqk), gdv(nv);
  auto backward = [&] {
    gdq.Poison();
    gdk.Poison();
    gdv.Poison();
    gpu_.AttentionBackward(s, gq.get(), gk.get(), gv.get(), gout_ref.get(), glse_ref.get(), gdo.get(),
                           gdq.get(), gdk.get(), gdv.get());
    std::vector<float> all = gdq.Download();
    for (const std::vector<float>& part : {gdk.Download(), gdv.Download()}) {
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;  // dq, dk, dv
  };
  const std::vector<float> grads = backward();
  auto part = [&](int64_t begin, int64_t n) {
    return std::vector<float>(grads.begin() + begin, grads.begin() + begin + n);
  };
  report_.Check(tag + "_dq", part(0, nqk), dq, tol_grad, what);
  report_.Check(tag + "_dk", part(nqk, nqk), dk, tol_grad, what);
  report_.Check(tag + "_dv", part(2 * nqk, nv), dv, tol_grad, what);
  if (cudnn) report_.CheckBits(tag + "_bwd_repeat", backward(), grads);
  gpu_.set_gemm_math(GemmMath::kFp32);
  gpu_.set_attention_impl(kernels::AttentionImpl::kCudnn);
}

}  // namespace moe::gpucheck
