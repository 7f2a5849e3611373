// Causal softmax attention, blockwise with online softmax (flash-attention style), FP32 throughout.
// Layout: q, k [B,T,H,dqk]; v, out, d_out [B,T,H,dv]; lse [B,H,T]. Memory is O(T) per head: only
// 64x64 score tiles are ever formed. Backward (docs/model.md "Backward: attention") recomputes each
// probability tile from the saved lse:  P = exp(scale q.k - lse),  dP = dO v^T,  Delta_t = sum_e dO_te O_te,
//   dS = P (dP - Delta),  dq = scale dS K,  dk = scale dS^T Q,  dv = P^T dO.
// Tile products are single-threaded oneDNN matmuls (cpu_internal::RunGemm inside the OpenMP region)
// straight on the strided [B,T,H,d] rows; the parallelism is over tasks (forward: batch x head x query tile; backward: batch x head). Each task
// owns whole output rows and accumulates in a fixed order, so results do not depend on the
// schedule.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {
namespace {

constexpr int64_t kBlock = 64;  // query and key tile size

// Row-major C[m,n] = alpha op(A) op(B) + beta C (sizes here are tile-sized, far below INT_MAX; the
// leading dimensions are H * d).
void Sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cpu_internal::RunGemm(ta ? Transpose::kYes : Transpose::kNo, tb ? Transpose::kYes : Transpose::kNo,
                        GemmProblem{m, n, k, a, lda, b, ldb, c, ldc}, alpha, beta);
}

// Number of keys of tile j0 (size nk) visible to query t under the causal mask.
inline int64_t Visible(int64_t t, int64_t j0, int64_t nk) {
  return std::clamp<int64_t>(t - j0 + 1, 0, nk);
}

// Pointers to row t of one (batch, head) slice of the [B,T,H,dim] tensors.
struct HeadSlice {
  int64_t base, stride;  // element offset of row 0; elements between rows (H * dim)
  int64_t Row(int64_t t) const { return base + t * stride; }
};

HeadSlice Slice(const AttentionShape& s, int64_t b, int64_t h, int64_t dim) {
  return {(b * s.seq * s.heads + h) * dim, s.heads * dim};
}

}  // namespace

void CpuBackend::AttentionForward(const AttentionShape& s, const float* q, const float* k,
                                  const float* v, float* out, float* lse) {
  ScopedOpTime timer(&op_times_["attention_fwd"], AttentionForwardFlops(s));
  const int64_t T = s.seq, dqk = s.qk_dim, dv = s.v_dim;
  MOE_CPU_CHECK(T >= 0 && dqk > 0 && dv > 0, "attention shape");
  const int64_t num_qt = (T + kBlock - 1) / kBlock;
  const int64_t num_tasks = s.batch * s.heads * num_qt;
  const float neg_inf = -std::numeric_limits<float>::infinity();

  {  // tile products run single-threaded inside the parallel region
#pragma omp parallel num_threads(num_threads_)
    {
      std::vector<float> sc(kBlock * kBlock), mx(kBlock), sum(kBlock);
      // Within a head, later query tiles (more keys) are handed out first.
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < num_tasks; ++task) {
        const int64_t bh = task / num_qt;
        const int64_t i0 = (num_qt - 1 - task % num_qt) * kBlock;
        const int64_t nq = std::min(kBlock, T - i0);
        const int64_t b = bh / s.heads, h = bh % s.heads;
        const HeadSlice qs = Slice(s, b, h, dqk), vs = Slice(s, b, h, dv);
        float* o = out + vs.Row(i0);  // [nq, dv] with row stride vs.stride, used as the accumulator
        for (int64_t i = 0; i < nq; ++i) std::fill_n(o + i * vs.stride, dv, 0.0f);
        std::fill(mx.begin(), mx.end(), neg_inf);
        std::fill(sum.begin(), sum.end(), 0.0f);

        for (int64_t j0 = 0; j0 < i0 + nq; j0 += kBlock) {
          const int64_t nk = std::min(kBlock, T - j0);
          // sc = scale q k^T  [nq, nk]
          Sgemm(false, true, nq, nk, dqk, s.scale, q + qs.Row(i0), qs.stride, k + qs.Row(j0),
                qs.stride, 0.0f, sc.data(), kBlock);
          for (int64_t i = 0; i < nq; ++i) {
            float* row = sc.data() + i * kBlock;
            const int64_t nvis = Visible(i0 + i, j0, nk);
            float tile_max = neg_inf;
            for (int64_t j = 0; j < nvis; ++j) tile_max = std::max(tile_max, row[j]);
            const float m_new = std::max(mx[i], tile_max);
            const float corr = cpu_internal::ExpF(mx[i] - m_new);  // 0 on the first tile, 1 if the max holds
            for (int64_t j = 0; j < nvis; ++j) row[j] = cpu_internal::ExpF(row[j] - m_new);
            float tile_sum = 0.0f;
            for (int64_t j = 0; j < nvis; ++j) tile_sum += row[j];
            std::fill(row + nvis, row + nk, 0.0f);
            if (corr != 1.0f) {
              float* oi = o + i * vs.stride;
              for (int64_t e = 0; e < dv; ++e) oi[e] *= corr;
            }
            sum[i] = sum[i] * corr + tile_sum;
            mx[i] = m_new;
          }
          // o += P v  [nq, dv]
          Sgemm(false, false, nq, dv, nk, 1.0f, sc.data(), kBlock, v + vs.Row(j0), vs.stride, 1.0f,
                o, vs.stride);
        }

        for (int64_t i = 0; i < nq; ++i) {
          const float inv = 1.0f / sum[i];
          float* oi = o + i * vs.stride;
          for (int64_t e = 0; e < dv; ++e) oi[e] *= inv;
          lse[bh * T + i0 + i] = mx[i] + std::log(sum[i]);
        }
      }
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

  {  // tile products run single-threaded inside the parallel region
#pragma omp parallel num_threads(num_threads_)
    {
      std::vector<float> p(kBlock * kBlock), ds(kBlock * kBlock), delta(T);
#pragma omp for schedule(dynamic, 1)
      for (int64_t bh = 0; bh < num_heads; ++bh) {
        const int64_t b = bh / s.heads, h = bh % s.heads;
        const HeadSlice qs = Slice(s, b, h, dqk), vs = Slice(s, b, h, dvd);
        const float* lse_h = lse + bh * T;

        for (int64_t t = 0; t < T; ++t) {
          std::fill_n(dq + qs.Row(t), dqk, 0.0f);
          std::fill_n(dk + qs.Row(t), dqk, 0.0f);
          std::fill_n(dv + vs.Row(t), dvd, 0.0f);
          const float* o = out + vs.Row(t);
          const float* g = d_out + vs.Row(t);
          double acc = 0.0;
          for (int64_t e = 0; e < dvd; ++e) acc += static_cast<double>(o[e]) * g[e];
          delta[t] = static_cast<float>(acc);
        }

        for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
          const int64_t nq = std::min(kBlock, T - i0);
          for (int64_t j0 = 0; j0 < i0 + nq; j0 += kBlock) {
            const int64_t nk = std::min(kBlock, T - j0);
            // p = scale q k^T (the forward's exact call), then P = exp(p - lse).
            Sgemm(false, true, nq, nk, dqk, s.scale, q + qs.Row(i0), qs.stride, k + qs.Row(j0),
                  qs.stride, 0.0f, p.data(), kBlock);
            // ds = dO v^T, then dS * scale = scale P (dP - Delta).
            Sgemm(false, true, nq, nk, dvd, 1.0f, d_out + vs.Row(i0), vs.stride, v + vs.Row(j0),
                  vs.stride, 0.0f, ds.data(), kBlock);
            for (int64_t i = 0; i < nq; ++i) {
              const int64_t nvis = Visible(i0 + i, j0, nk);
              const float l = lse_h[i0 + i], dl = delta[i0 + i];
              float* pr = p.data() + i * kBlock;
              float* dr = ds.data() + i * kBlock;
              for (int64_t j = 0; j < nvis; ++j) {
                pr[j] = cpu_internal::ExpF(pr[j] - l);
                dr[j] = s.scale * pr[j] * (dr[j] - dl);
              }
              std::fill(pr + nvis, pr + nk, 0.0f);
              std::fill(dr + nvis, dr + nk, 0.0f);
            }
            // dq += dS K;  dk += dS^T Q;  dv += P^T dO.
            Sgemm(false, false, nq, dqk, nk, 1.0f, ds.data(), kBlock, k + qs.Row(j0), qs.stride,
                  1.0f, dq + qs.Row(i0), qs.stride);
            Sgemm(true, false, nk, dqk, nq, 1.0f, ds.data(), kBlock, q + qs.Row(i0), qs.stride,
                  1.0f, dk + qs.Row(j0), qs.stride);
            Sgemm(true, false, nk, dvd, nq, 1.0f, p.data(), kBlock, d_out + vs.Row(i0), vs.stride,
                  1.0f, dv + vs.Row(j0), vs.stride);
          }
        }
      }
    }
  }
}

}  // namespace moe::kernels
