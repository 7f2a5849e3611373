// kernel_check group "perf" (skipped with --no_perf): timings of the heavy ops at small_1b training
// shapes (micro-batch 8 x 4096 tokens, hidden 1024, 16 heads, qk 96, v 64, 64 experts top-6, vocab
// 32768), printed as PERF lines with TFLOP/s or GB/s. See kernel_check.h.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <tuple>

#include "base/bf16.h"
#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

// ---------------------------------------------------------------- timings
void Checks::PerfLine(const std::string& name, double ms, double flops, double bytes) {
  std::string rate;
  if (flops > 0) rate += Fmt("%8.1f TFLOP/s", flops / ms / 1e9);
  if (bytes > 0) rate += Fmt("%8.1f GB/s", bytes / ms / 1e6);
  std::printf("PERF  %-46s %9.3f ms %s\n", name.c_str(), ms, rate.c_str());
  std::fflush(stdout);
}

void Checks::Perf() {
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
        // cuBLASLt per expert on 1, 2, 4 and 8 streams, then cuBLAS's grouped call (-1), then one padded
        // cuBLASLt batch (-2), then the built-in kernel (0).
        const int default_streams = gpu_.grouped_gemm_streams();
        for (int variant : {1, 2, 4, 8, -1, -2, 0}) {
          const GroupedGemmImpl impl = variant > 0     ? GroupedGemmImpl::kCublasLt
                                       : variant == -1 ? GroupedGemmImpl::kCublasGrouped
                                       : variant == -2 ? GroupedGemmImpl::kCublasLtPadded
                                                       : GroupedGemmImpl::kKernel;
          gpu_.set_grouped_gemm_impl(impl);
          if (variant > 0) gpu_.set_grouped_gemm_streams(variant);
          const double ms = TimeMs(st, 2, 10, [&] {
            gpu_.GroupedGemm(Transpose::kNo, Transpose::kYes, probs, 1.0f, 0.0f);
          });
          const std::string iname = variant > 0     ? Fmt("lt%d", variant)
                                    : variant == -1 ? std::string(gpu_.cublas_grouped_refused()
                                                                      ? "cublas_grouped_REFUSED_ran_lt"
                                                                      : "cublas_grouped")
                                    : variant == -2 ? "lt_padded"
                                                    : std::string("kernel");
          PerfLine(Fmt("grouped_gemm_%s_%s 64 experts %s", iname.c_str(), mname, name), ms, flops, 0);
        }
        gpu_.set_grouped_gemm_streams(default_streams);
      }
    }
    gpu_.set_grouped_gemm_impl(GroupedGemmImpl::kCublasLt);
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
    // The built-in FP32 kernel, then cuDNN (BF16 mode; its times include packing the operands to
    // BF16 and widening the results, as in a training step).
    for (const bool cudnn : {false, true}) {
      gpu_.set_gemm_math(cudnn ? GemmMath::kBf16 : GemmMath::kFp32);
      if (const absl::Status status = gpu_.CudnnAttentionStatus(s); cudnn && !status.ok()) {
        std::printf("PERF  attention cudnn: %s\n", std::string(status.message()).c_str());
        break;
      }
      const char* impl = cudnn ? "cudnn" : "kernel";
      const double fwd_ms = TimeMs(st, 1, 5, [&] {
        gpu_.AttentionForward(s, q.get(), k.get(), v.get(), out.get(), lse.get());
      });
      PerfLine(Fmt("attention_forward %s B8 T4096 H16 qk96 v64", impl), fwd_ms,
               2.0 * pairs * (s.qk_dim + s.v_dim), 0);
      const double bwd_ms = TimeMs(st, 1, 5, [&] {
        gpu_.AttentionBackward(s, q.get(), k.get(), v.get(), out.get(), lse.get(), dout.get(),
                               dq.get(), dk.get(), dv.get());
      });
      PerfLine(Fmt("attention_backward %s (useful flops)", impl), bwd_ms,
               2.0 * pairs * (3.0 * s.qk_dim + 2.0 * s.v_dim), 0);
      if (cudnn) std::printf("PERF  attention cudnn %s\n", gpu_.CudnnAttentionEngines(s).c_str());
    }
    gpu_.set_gemm_math(GemmMath::kFp32);
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
    ms = TimeMs(st, 2, 10, [&] { gpu_.AdamW(hp, x.get(), dy.get(), m.get(), vv.get(), n, {}); });
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
    // The dispatch order of the router's selection (what the host built before).
    Dev<int32_t> counts(64), row_token(n * 6), row_slot(n * 6);
    ms = TimeMs(st, 2, 10, [&] {
      gpu_.SortByExpert(sel.get(), n, 6, 64, -1, counts.get(), row_token.get(), row_slot.get());
    });
    PerfLine("sort_by_expert 32768 tokens, top-6 of 64", ms, 0, 0);
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
    Dev<float> expert_out(n * 6 * hidden), combined(n * hidden), combined_rows(n * 6 * hidden);
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
    // The EP regroup of the same rows: 8 source ranks x 8 local experts, runs in transposed order.
    std::vector<Backend::RowBlock> runs;
    for (int64_t j = 0; j < 8; ++j) {
      for (int64_t r = 0; r < 8; ++r) runs.push_back({(r * 8 + j) * (n * 6 / 64), n * 6 / 64});
    }
    ms = TimeMs(st, 2, 10, [&] { gpu_.GatherRowBlocks(expert_out.get(), runs, hidden, combined_rows.get()); });
    PerfLine("gather_row_blocks (EP regroup) 196608 x 1024, 64 runs", ms, 0, 8.0 * n * 6 * hidden);
  }
  gpu_.Synchronize();
}

// Fills a timing buffer with normals: one 4M-element random block drawn once, copied at rotating
// offsets (timings need realistic, non-zero data, not fresh draws of every element).
void Checks::FillRandom(Dev<float>& d, int64_t n) {
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

}  // namespace moe::gpucheck
