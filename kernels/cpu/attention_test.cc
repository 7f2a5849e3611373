// Causal attention: blockwise forward against a naive O(T^2) FP64 reference (out and lse), backward
// by finite differences with dqk != dv and T not a multiple of the 64-wide tile, thread-count
// independence.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace moe::kernels {
namespace {

using testing::ExpectGradientMatches;
using testing::FdOptions;
using testing::ProbeLoss;
using testing::RandomVector;

struct Tensors {
  std::vector<float> q, k, v;
  Tensors(const AttentionShape& s, uint32_t seed)
      : q(RandomVector(s.batch * s.seq * s.heads * s.qk_dim, seed, -1.5f, 1.5f)),
        k(RandomVector(s.batch * s.seq * s.heads * s.qk_dim, seed + 1, -1.5f, 1.5f)),
        v(RandomVector(s.batch * s.seq * s.heads * s.v_dim, seed + 2)) {}
};

// Naive reference in FP64: out [B,T,H,dv], lse [B,H,T].
void Reference(const AttentionShape& s, const Tensors& x, std::vector<double>& out,
               std::vector<double>& lse) {
  const int64_t T = s.seq, H = s.heads, dqk = s.qk_dim, dv = s.v_dim;
  out.assign(s.batch * T * H * dv, 0.0);
  lse.assign(s.batch * H * T, 0.0);
  std::vector<double> sc(T);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        double mx = -1e300;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < dqk; ++d) {
            dot += static_cast<double>(x.q[((b * T + t) * H + h) * dqk + d]) *
                   x.k[((b * T + j) * H + h) * dqk + d];
          }
          sc[j] = s.scale * dot;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) sum += std::exp(sc[j] - mx);
        lse[(b * H + h) * T + t] = mx + std::log(sum);
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(sc[j] - mx) / sum;
          for (int64_t e = 0; e < dv; ++e) {
            out[((b * T + t) * H + h) * dv + e] += p * x.v[((b * T + j) * H + h) * dv + e];
          }
        }
      }
    }
  }
}

AttentionShape Shape(int64_t b, int64_t t, int64_t h, int64_t dqk, int64_t dv) {
  AttentionShape s;
  s.batch = b;
  s.seq = t;
  s.heads = h;
  s.qk_dim = dqk;
  s.v_dim = dv;
  s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dqk)));
  return s;
}

TEST(Attention, ForwardMatchesNaiveReference) {
  CpuBackend be(2);
  for (const AttentionShape& s :
       {Shape(2, 70, 3, 24, 16), Shape(1, 1, 2, 8, 8), Shape(1, 128, 1, 16, 16),
        Shape(2, 200, 2, 40, 32), Shape(1, 63, 1, 8, 24)}) {
    SCOPED_TRACE(::testing::Message() << "T=" << s.seq << " dqk=" << s.qk_dim << " dv=" << s.v_dim);
    Tensors x(s, 11);
    std::vector<float> out(s.batch * s.seq * s.heads * s.v_dim), lse(s.batch * s.heads * s.seq);
    be.AttentionForward(s, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data());
    std::vector<double> want_out, want_lse;
    Reference(s, x, want_out, want_lse);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want_out[i], 2e-5) << "out " << i;
    for (size_t i = 0; i < lse.size(); ++i) ASSERT_NEAR(lse[i], want_lse[i], 2e-5) << "lse " << i;
  }
}

TEST(Attention, BackwardFiniteDifferences) {
  CpuBackend be(2);
  const AttentionShape s = Shape(2, 70, 2, 24, 16);
  Tensors x(s, 21);
  const size_t n_out = s.batch * s.seq * s.heads * s.v_dim;
  std::vector<float> out(n_out), lse(s.batch * s.heads * s.seq);
  auto probe = RandomVector(n_out, 22);
  std::vector<float> dq(x.q.size()), dk(x.k.size()), dv(x.v.size());
  be.AttentionForward(s, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data());
  be.AttentionBackward(s, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data(), probe.data(),
                       dq.data(), dk.data(), dv.data());
  auto loss = [&] {
    be.AttentionForward(s, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data());
    return ProbeLoss(out.data(), probe);
  };
  FdOptions opt;
  opt.max_checks = 400;
  ExpectGradientMatches("dq", x.q, dq, loss, opt);
  ExpectGradientMatches("dk", x.k, dk, loss, opt);
  ExpectGradientMatches("dv", x.v, dv, loss, opt);

  // Every coordinate of the last query/key rows (inside the partial tile 64..69).
  const int64_t row = s.heads * s.qk_dim;
  const int64_t tail = (s.batch * s.seq - 3) * row;  // last 3 tokens of the last sequence
  std::vector<float> q_tail(x.q.begin() + tail, x.q.end()), grad_tail(dq.begin() + tail, dq.end());
  auto loss_tail = [&] {
    std::copy(q_tail.begin(), q_tail.end(), x.q.begin() + tail);
    return loss();
  };
  ExpectGradientMatches("dq tail", q_tail, grad_tail, loss_tail);
  std::copy(q_tail.begin(), q_tail.end(), x.q.begin() + tail);
}

TEST(Attention, SameResultForAnyThreadCount) {
  const AttentionShape s = Shape(1, 150, 3, 24, 16);
  Tensors x(s, 31);
  const size_t n_out = s.batch * s.seq * s.heads * s.v_dim;
  auto d_out = RandomVector(n_out, 32);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    CpuBackend be(threads);
    std::vector<float> out(n_out), lse(s.batch * s.heads * s.seq);
    std::vector<float> dq(x.q.size()), dk(x.k.size()), dv(x.v.size());
    be.AttentionForward(s, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data());
    be.AttentionBackward(s, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data(),
                         d_out.data(), dq.data(), dk.data(), dv.data());
    results.insert(results.end(), {out, lse, dq, dk, dv});
  }
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(results[i], results[i + 5]) << "tensor " << i;
}

}  // namespace
}  // namespace moe::kernels
