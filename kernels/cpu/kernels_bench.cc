// Timings of the CPU backend's hot ops (GEMM, attention forward+backward, grouped expert GEMM),
// each with a FLOP/s counter to compare against the MeasureMatmulPeak peak.
//   bazel run //kernels/cpu:kernels_bench -- --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/peak_flops.h"

namespace moe::kernels {
namespace {

CpuBackend& Cpu() {
  static CpuBackend* backend = new CpuBackend();  // all cores
  return *backend;
}

std::vector<float> Filled(int64_t n, float phase) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = 0.5f * std::sin(0.37f * static_cast<float>(i) + phase);
  return v;
}

void BM_PeakGemm(benchmark::State& state) {
  Cpu();
  double flops = 0.0;
  const int64_t n = state.range(0);
  for (auto _ : state) flops = MeasureMatmulPeak(MatmulPrecision::kFp32, n, n, n, 1, 0.3);
  state.counters["GFLOP/s"] = flops * 1e-9;
}
BENCHMARK(BM_PeakGemm)->Arg(1024)->Iterations(1)->Unit(benchmark::kMillisecond);

// C[n,n] = A[n,n] B[n,n]^T (the y = x W^T of a linear layer).
void BM_Gemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto a = Filled(n * n, 0.0f), b = Filled(n * n, 1.0f);
  std::vector<float> c(n * n);
  const GemmProblem p{n, n, n, a.data(), n, b.data(), n, c.data(), n};
  for (auto _ : state) Cpu().Gemm(Transpose::kNo, Transpose::kYes, p, 1.0f, 0.0f);
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Gemm)->Arg(256)->Arg(512)->Arg(1024)->UseRealTime()->Unit(benchmark::kMillisecond);

// Causal attention, B = 1, H = 8, dqk = 96, dv = 64 (an MLA-like head), sequence length T.
void BM_AttentionFwdBwd(benchmark::State& state) {
  AttentionShape s;
  s.batch = 1;
  s.seq = state.range(0);
  s.heads = 8;
  s.qk_dim = 96;
  s.v_dim = 64;
  s.scale = 1.0f / std::sqrt(96.0f);
  const int64_t nqk = s.batch * s.seq * s.heads * s.qk_dim,
                nv = s.batch * s.seq * s.heads * s.v_dim;
  auto q = Filled(nqk, 0.0f), k = Filled(nqk, 1.0f), v = Filled(nv, 2.0f), d_out = Filled(nv, 3.0f);
  std::vector<float> out(nv), lse(s.batch * s.heads * s.seq), dq(nqk), dk(nqk), dv(nv);
  for (auto _ : state) {
    Cpu().AttentionForward(s, q.data(), k.data(), v.data(), out.data(), lse.data());
    Cpu().AttentionBackward(s, q.data(), k.data(), v.data(), out.data(), lse.data(), d_out.data(),
                            dq.data(), dk.data(), dv.data());
  }
  // Causal half of T^2 per head: forward q.k and p.v, backward q.k, dO.v, dq, dk, dv.
  const double pairs =
      0.5 * static_cast<double>(s.seq) * static_cast<double>(s.seq) * s.batch * s.heads;
  const double flops = 2.0 * pairs * (4.0 * s.qk_dim + 3.0 * s.v_dim);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttentionFwdBwd)->Arg(128)->Arg(256)->Arg(1024)->UseRealTime()->Unit(benchmark::kMillisecond);

// Expert up-projection: E experts, `tokens` (token, slot) rows spread unevenly over them, d = 512,
// Ie = 256: C_e[m_e, Ie] = X_e[m_e, d] W_e[Ie, d]^T.
void BM_GroupedGemm(benchmark::State& state) {
  const int64_t experts = state.range(0), tokens = state.range(1), d = 512, ie = 256;
  std::vector<int64_t> rows(experts);
  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) total += rows[e] = 1 + e % 4;  // uneven shares 1:2:3:4
  auto x = Filled(tokens * d, 0.0f), w = Filled(experts * ie * d, 1.0f);
  std::vector<float> c(tokens * ie);
  std::vector<GemmProblem> ps;
  int64_t row0 = 0;
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t m = e + 1 == experts ? tokens - row0 : rows[e] * tokens / total;
    ps.push_back(
        {m, ie, d, x.data() + row0 * d, d, w.data() + e * ie * d, d, c.data() + row0 * ie, ie});
    row0 += m;
  }
  for (auto _ : state) Cpu().GroupedGemm(Transpose::kNo, Transpose::kYes, ps, 1.0f, 0.0f);
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * tokens * ie * d, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GroupedGemm)
    ->Args({8, 1024})
    ->Args({32, 1024})
    ->Args({32, 4096})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace moe::kernels
