// Causal softmax attention in query bands, FP32 throughout. Layout: q, k [B,T,H,dqk]; v, out, d_out
// [B,T,H,dv]; lse [B,H,T]. A band is kBand consecutive queries with every key they may see (keys
// 0 .. the band's last query): its scores are formed whole, so the softmax is exact in one pass (no
// online rescaling) and each band costs one product per factor instead of one per 64x64 tile, which
// the small tiles' per-call cost made the bottleneck. Memory is O(kBand T) per thread. Backward
// (docs/model.md "Backward: attention") recomputes each band's probabilities from the saved lse:
//   P = exp(scale q.k - lse),  dP = dO v^T,  Delta_t = sum_e dO_te O_te,
//   dS = P (dP - Delta),  dq = scale dS K,  dk = scale dS^T Q,  dv = P^T dO.
// Band products are single-threaded oneDNN matmuls (cpu_internal::RunGemm inside the OpenMP region,
// any-shape primitives: a band's key count grows with its position) straight on the strided [B,T,H,d]
// rows; the parallelism is over tasks (forward: batch x head x band; backward: batch x head). Each
// task owns whole output rows and accumulates in a fixed order, so results do not depend on the
// schedule.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {
namespace {

constexpr int64_t kBand = 64;  // queries per band

// Row-major C[m,n] = alpha op(A) op(B) + beta C (the leading dimensions are H * d).
void Sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cpu_internal::RunGemm(ta ? Transpose::kYes : Transpose::kNo, tb ? Transpose::kYes : Transpose::kNo,
                        GemmProblem{m, n, k, a, lda, b, ldb, c, ldc}, alpha, beta, /*bf16=*/false,
                        cpu_internal::PrimitiveShape::kAny);
}

// Pointers to row t of one (batch, head) slice of the [B,T,H,dim] tensors.
struct HeadSlice {
  int64_t base, stride;  // element offset of row 0; elements between rows (H * dim)
  int64_t Row(int64_t t) const { return base + t * stride; }
};

HeadSlice Slice(const AttentionShape& s, int64_t b, int64_t h, int64_t dim) {
  return {(b * s.seq * s.heads + h) * dim, s.heads * dim};
}

// A band's scores sc [nq, nk] (query i0 + i sees keys 0 .. i0 + i) -> probabilities in place, the
// masked keys zeroed, and each row's log-sum-exp in lse[i].
MOE_CPU_SIMD_CLONES void SoftmaxBand(float* sc, int64_t nq, int64_t nk, int64_t i0, float* lse) {
  for (int64_t i = 0; i < nq; ++i) {
    float* row = sc + i * nk;
    const int64_t nvis = i0 + i + 1;
    float mx = row[0];
    for (int64_t j = 1; j < nvis; ++j) mx = std::max(mx, row[j]);
    for (int64_t j = 0; j < nvis; ++j) row[j] = cpu_internal::ExpF(row[j] - mx);  // vectorised
    float sum = 0.0f;
    for (int64_t j = 0; j < nvis; ++j) sum += row[j];
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < nvis; ++j) row[j] *= inv;
    std::fill(row + nvis, row + nk, 0.0f);
    lse[i] = mx + std::log(sum);
  }
}

// A band's recomputed scores p and dP = dO v^T in ds, both [nq, nk] -> P = exp(p - lse) in p and
// dS * scale = scale P (dP - Delta) in ds, masked keys zeroed.
MOE_CPU_SIMD_CLONES void ScoreGradsBand(float* p, float* ds, int64_t nq, int64_t nk, int64_t i0, const float* lse,
                                        const float* delta, float scale) {
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t nvis = i0 + i + 1;
    const float l = lse[i], dl = delta[i];
    float* pr = p + i * nk;
    float* dr = ds + i * nk;
    for (int64_t j = 0; j < nvis; ++j) {
      pr[j] = cpu_internal::ExpF(pr[j] - l);
      dr[j] = scale * pr[j] * (dr[j] - dl);
    }
    std::fill(pr + nvis, pr + nk, 0.0f);
    std::fill(dr + nvis, dr + nk, 0.0f);
  }
}

}  // namespace

void CpuBackend::AttentionForward(const AttentionShape& s, const float* q, const float* k,
                                  const float* v, float* out, float* lse) {
  ScopedOpTime timer(&op_times_["attention_fwd"], AttentionForwardFlops(s));
  const int64_t T = s.seq, dqk = s.qk_dim, dv = s.v_dim;
  MOE_CPU_CHECK(T >= 0 && dqk > 0 && dv > 0, "attention shape");
  const int64_t num_bands = (T + kBand - 1) / kBand;
  const int64_t num_tasks = s.batch * s.heads * num_bands;

#pragma omp parallel num_threads(num_threads_)
  {
    std::vector<float> sc(kBand * T);
    // Within a head, later bands (more keys) are handed out first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < num_tasks; ++task) {
      const int64_t bh = task / num_bands;
      const int64_t i0 = (num_bands - 1 - task % num_bands) * kBand;
      const int64_t nq = std::min(kBand, T - i0), nk = i0 + nq;  // keys 0 .. the band's last query
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const HeadSlice qs = Slice(s, b, h, dqk), vs = Slice(s, b, h, dv);
      // sc = scale q k^T  [nq, nk]
      Sgemm(false, true, nq, nk, dqk, s.scale, q + qs.Row(i0), qs.stride, k + qs.Row(0), qs.stride,
            0.0f, sc.data(), nk);
      SoftmaxBand(sc.data(), nq, nk, i0, lse + bh * T + i0);
      // out = P v  [nq, dv]
      Sgemm(false, false, nq, dv, nk, 1.0f, sc.data(), nk, v + vs.Row(0), vs.stride, 0.0f,
            out + vs.Row(i0), vs.stride);
    }
  }
}

void CpuBackend::AttentionBackward(const AttentionShape& s, const float* q, const float* k,
                                   const float* v, const float* out, const float* lse,
                                   const float* d_out, float* dq, float* dk, float* dv) {
  ScopedOpTime timer(&op_times_["attention_bwd"], AttentionBackwardFlops(s));
  const int64_t T = s.seq, dqk = s.qk_dim, dvd = s.v_dim;
  MOE_CPU_CHECK(T >= 0 && dqk > 0 && dvd > 0, "attention shape");
  const int64_t num_heads = s.batch * s.heads;

#pragma omp parallel num_threads(num_threads_)
  {
    std::vector<float> p(kBand * T), ds(kBand * T), delta(T);
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < num_heads; ++bh) {
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const HeadSlice qs = Slice(s, b, h, dqk), vs = Slice(s, b, h, dvd);
      const float* lse_h = lse + bh * T;

      for (int64_t t = 0; t < T; ++t) {
        std::fill_n(dk + qs.Row(t), dqk, 0.0f);
        std::fill_n(dv + vs.Row(t), dvd, 0.0f);
        const float* o = out + vs.Row(t);
        const float* g = d_out + vs.Row(t);
        delta[t] = static_cast<float>(
            cpu_internal::LaneSum(dvd, [o, g](int64_t e) { return static_cast<double>(o[e]) * g[e]; }));
      }

      for (int64_t i0 = 0; i0 < T; i0 += kBand) {
        const int64_t nq = std::min(kBand, T - i0), nk = i0 + nq;
        // p = scale q k^T (the forward's exact call), then P = exp(p - lse).
        Sgemm(false, true, nq, nk, dqk, s.scale, q + qs.Row(i0), qs.stride, k + qs.Row(0), qs.stride,
              0.0f, p.data(), nk);
        // ds = dO v^T, then dS * scale = scale P (dP - Delta).
        Sgemm(false, true, nq, nk, dvd, 1.0f, d_out + vs.Row(i0), vs.stride, v + vs.Row(0), vs.stride,
              0.0f, ds.data(), nk);
        ScoreGradsBand(p.data(), ds.data(), nq, nk, i0, lse_h + i0, delta.data() + i0, s.scale);
        // dq = dS K (the band's rows, written once);  dk += dS^T Q;  dv += P^T dO.
        Sgemm(false, false, nq, dqk, nk, 1.0f, ds.data(), nk, k + qs.Row(0), qs.stride, 0.0f,
              dq + qs.Row(i0), qs.stride);
        Sgemm(true, false, nk, dqk, nq, 1.0f, ds.data(), nk, q + qs.Row(i0), qs.stride, 1.0f,
              dk + qs.Row(0), qs.stride);
        Sgemm(true, false, nk, dvd, nq, 1.0f, p.data(), nk, d_out + vs.Row(i0), vs.stride, 1.0f,
              dv + vs.Row(0), vs.stride);
      }
    }
  }
}

}  // namespace moe::kernels
