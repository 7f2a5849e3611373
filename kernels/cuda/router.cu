// The MoE router, forward and backward, one warp per token (kernels/cpu/router.cc is the twin; the
// rules are docs/model.md "Router" / "Backward: router and balance loss"):
//   scores   s = sigmoid(z) or softmax(z)  (softmax: max-subtracted, exponentials summed in FP64)
//   keys     s + bias (noaux_tc with a bias), else s
//   groups   noaux_tc: group score = sum of the group's 2 best keys; group_limited_greedy: its best
//            key; keep the topk_group best groups, mask the others' keys with -inf
//   choice   top_k keys, best first
//   weights  rho s_i / (sum_sel s + 1e-20) if norm_topk_prob else rho s_i
// Every top-k is a sequence of warp arg-max reductions ordered by (value desc, index asc), so ties go
// to the lower index exactly as in the CPU's linear scan. Sums over the selected experts run on one
// lane in selection order with explicit rounding intrinsics (a multiply-add fused where GCC -mfma
// fuses the CPU twin's), so the weights match the CPU bit for bit whenever the scores do, and the
// backward to the last bit or so; scores can differ in the last bit (expf), which moves a selection
// only on a near-tie at that level.
// Shared memory per warp: scores and keys [E] floats and taken flags [E] bytes; E <= kMaxExperts.
//
// The sequence-wise balance loss (BalanceStats / BalanceLossGrad, same twin file): deterministic,
// in the CPU's FP64 order, so both match the CPU bit for bit (the only fused multiply-adds are the
// two GCC -mfma makes of the twin's expressions, written out with fma()):
//   rows   one warp per token: lane 0 sums s[t,:] in double in expert order; the lanes write
//          s'[t,e] = s[t,e] / sum (double) and a 0/1 flag for e in the plain top-K of s[t] (warp
//          arg-max rounds, ties to the lower index) into scratch [n, E] doubles + [n, E] bytes.
//   chunks one thread per (group, chunk of Backend::kBalanceChunk positions, expert): the slice's
//          tokens of that chunk in ascending order, p += s', count += flag (zeros for a chunk with no
//          token here).
//   stats  one thread per (group, expert): its chunks' sums in chunk order, as the CPU adds them (a
//          chunk with no token here adds +0, which changes nothing); a group with no token here gets
//          zeros (stats is written).
//   grad   one warp per token: lane 0 sums s and then dot = fma(coef f[g,e], s'[e], dot) in expert
//          order (s'[e] divided by the lanes beforehand); the lanes write
//          (fma(f[g,e], coef, -dot)) / sum rounded to FP32.
// Every chain of FP64 adds runs on one thread in the CPU's order; the chunks keep each chain short (a
// chunk's tokens, then a group's chunks) instead of one pass over a group's thousands of tokens.
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr float kNormEps = 1e-20f;

struct ArgMax {
  float v;
  int i;  // -1: none
};

__device__ __forceinline__ bool Better(const ArgMax& a, const ArgMax& b) {
  if (a.i < 0) return false;
  if (b.i < 0) return true;
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

// Index of the largest v[i] over i in [0, n) with !taken[i], ties -> lower index; -1 if none.
// Called by all 32 lanes of a warp; every lane gets the answer.
__device__ int WarpArgMax(const float* v, const unsigned char* taken, int n, int lane) {
  ArgMax best{0.0f, -1};
  for (int i = lane; i < n; i += 32) {  // ascending: a lane keeps its lowest index on ties
    if (taken[i]) continue;
    if (best.i < 0 || v[i] > best.v) best = {v[i], i};
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    ArgMax other;
    other.v = __shfl_xor_sync(0xffffffffu, best.v, off);
    other.i = __shfl_xor_sync(0xffffffffu, best.i, off);
    if (Better(other, best)) best = other;
  }
  return best.i;
}

__global__ void RouterForwardKernel(RouterParams p, const float* __restrict__ logits,
                                    const float* __restrict__ bias, int64_t n,
                                    float* __restrict__ scores, int32_t* __restrict__ selected,
                                    float* __restrict__ weights, size_t per_warp) {
  extern __shared__ unsigned char smem[];
  const int E = static_cast<int>(p.num_experts), K = static_cast<int>(p.top_k);
  const int G = p.n_group > 1 ? static_cast<int>(p.n_group) : 1;
  const int group_size = E / G;
  const bool use_groups = p.method != TopkMethod::kGreedy && G > 1 && p.topk_group < G;
  const bool use_bias = p.method == TopkMethod::kNoauxTc && bias != nullptr;
  const float neg_inf = -__int_as_float(0x7f800000);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  unsigned char* base = smem + warp * per_warp;
  float* s = reinterpret_cast<float*>(base);
  float* key = s + E;
  float* group_score = key + E;  // [E] (G <= E)
  unsigned char* taken = reinterpret_cast<unsigned char*>(group_score + E);

  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; t < n;
       t += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* z = logits + t * E;
    // Scores.
    if (p.scoring == ScoringFunc::kSigmoid) {
      for (int i = lane; i < E; i += 32) s[i] = 1.0f / (1.0f + expf(-z[i]));
    } else {
      float mx = neg_inf;
      for (int i = lane; i < E; i += 32) mx = fmaxf(mx, z[i]);
      mx = WarpMax(mx);
      double sum = 0.0;
      for (int i = lane; i < E; i += 32) {
        const float e = expf(z[i] - mx);
        s[i] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      const float inv = static_cast<float>(1.0 / sum);
      for (int i = lane; i < E; i += 32) s[i] *= inv;
    }
    for (int i = lane; i < E; i += 32) {
      key[i] = use_bias ? s[i] + bias[i] : s[i];
      taken[i] = 0;
      scores[t * E + i] = s[i];
    }
    __syncwarp();

    if (use_groups) {
      for (int g = lane; g < G; g += 32) {
        const float* kg = key + g * group_size;
        int top = 0;  // best key of the group, lowest index on ties
        for (int i = 1; i < group_size; ++i) {
          if (kg[i] > kg[top]) top = i;
        }
        if (p.method == TopkMethod::kGroupLimitedGreedy || group_size == 1) {
          group_score[g] = kg[top];
        } else {
          int second = -1;  // best of the others
          for (int i = 0; i < group_size; ++i) {
            if (i == top) continue;
            if (second < 0 || kg[i] > kg[second]) second = i;
          }
          group_score[g] = kg[top] + kg[second];
        }
      }
      __syncwarp();
      // Keep the topk_group best groups: mark them in taken[0..G), then mask the others.
      for (int r = 0; r < p.topk_group; ++r) {
        const int g = WarpArgMax(group_score, taken, G, lane);
        __syncwarp();
        if (lane == 0) taken[g] = 1;
        __syncwarp();
      }
      for (int g = 0; g < G; ++g) {
        if (taken[g]) continue;
        for (int i = lane; i < group_size; i += 32) key[g * group_size + i] = neg_inf;
      }
      __syncwarp();
      for (int g = lane; g < G; g += 32) taken[g] = 0;
      __syncwarp();
    }

    int32_t* sel = selected + t * K;
    for (int r = 0; r < K; ++r) {
      const int best = WarpArgMax(key, taken, E, lane);
      __syncwarp();
      if (lane == 0) {
        taken[best] = 1;
        sel[r] = best;
      }
      __syncwarp();
    }
    if (lane == 0) {
      float denom = 1.0f;
      if (p.norm_topk_prob) {
        float sum = 0.0f;
        for (int r = 0; r < K; ++r) sum = __fadd_rn(sum, s[sel[r]]);
        denom = sum + kNormEps;
      }
      for (int r = 0; r < K; ++r) {
        weights[t * K + r] = __fdiv_rn(__fmul_rn(p.routed_scaling_factor, s[sel[r]]), denom);
      }
    }
    __syncwarp();
  }
}

__global__ void RouterBackwardKernel(RouterParams p, const float* __restrict__ scores,
                                     const int32_t* __restrict__ selected,
                                     const float* __restrict__ d_weights,
                                     const float* __restrict__ d_scores_extra, int64_t n,
                                     float* __restrict__ d_logits, size_t per_warp) {
  extern __shared__ unsigned char smem[];
  const int E = static_cast<int>(p.num_experts), K = static_cast<int>(p.top_k);
  const float rho = p.routed_scaling_factor;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* ds = reinterpret_cast<float*>(smem + warp * per_warp);

  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; t < n;
       t += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* s = scores + t * E;
    const int32_t* sel = selected + t * K;
    const float* dw = d_weights + t * K;
    for (int i = lane; i < E; i += 32) ds[i] = d_scores_extra ? d_scores_extra[t * E + i] : 0.0f;
    __syncwarp();
    if (lane == 0) {
      if (p.norm_topk_prob) {
        float sum = 0.0f;
        for (int r = 0; r < K; ++r) sum = __fadd_rn(sum, s[sel[r]]);
        const float denom = sum + kNormEps;
        float w_dot_dw = 0.0f;
        for (int r = 0; r < K; ++r) {
          const float w = __fdiv_rn(__fmul_rn(rho, s[sel[r]]), denom);
          w_dot_dw = __fmaf_rn(w, dw[r], w_dot_dw);
        }
        for (int r = 0; r < K; ++r) {
          ds[sel[r]] = __fadd_rn(ds[sel[r]], __fdiv_rn(__fmaf_rn(rho, dw[r], -w_dot_dw), denom));
        }
      } else {
        for (int r = 0; r < K; ++r) ds[sel[r]] = __fadd_rn(ds[sel[r]], __fmul_rn(rho, dw[r]));
      }
    }
    __syncwarp();
    float* dz = d_logits + t * E;
    if (p.scoring == ScoringFunc::kSigmoid) {
      for (int i = lane; i < E; i += 32) {
        dz[i] = __fmul_rn(__fmul_rn(ds[i], s[i]), __fsub_rn(1.0f, s[i]));
      }
    } else {
      double dot = 0.0;
      for (int i = lane; i < E; i += 32) dot += static_cast<double>(ds[i]) * s[i];
      dot = WarpSum(dot);
      const float d = static_cast<float>(dot);
      for (int i = lane; i < E; i += 32) dz[i] = __fmul_rn(s[i], __fsub_rn(ds[i], d));
    }
    __syncwarp();
  }
}

// BalanceStats, part 1: per token the row sum, s' and the top-K flags (see the header comment).
// Per warp: [0, 16) the broadcast sum, then s [E] floats, then taken [E] bytes.
__global__ void BalanceRowsKernel(const float* __restrict__ scores, int64_t n, int E, int K,
                                  double* __restrict__ s_norm, unsigned char* __restrict__ top,
                                  size_t per_warp) {
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  unsigned char* base = smem + warp * per_warp;
  double* bcast = reinterpret_cast<double*>(base);
  float* s = reinterpret_cast<float*>(base + 16);
  unsigned char* taken = reinterpret_cast<unsigned char*>(s + E);

  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; t < n;
       t += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* st = scores + t * E;
    for (int i = lane; i < E; i += 32) {
      s[i] = st[i];
      taken[i] = 0;
    }
    __syncwarp();
    if (lane == 0) {
      double sum = 0.0;
      for (int i = 0; i < E; ++i) sum += s[i];  // expert order, as the CPU
      bcast[0] = sum;
    }
    __syncwarp();
    const double sum = bcast[0];
    double* sn = s_norm + t * E;
    for (int i = lane; i < E; i += 32) sn[i] = static_cast<double>(s[i]) / sum;
    for (int r = 0; r < K; ++r) {
      const int best = WarpArgMax(s, taken, E, lane);
      __syncwarp();
      if (lane == 0) taken[best] = 1;
      __syncwarp();
    }
    unsigned char* tp = top + t * E;
    for (int i = lane; i < E; i += 32) tp[i] = taken[i];
    __syncwarp();  // before the next token overwrites s, taken and the sum
  }
}

// BalanceStats, part 2: thread (g, c, e) adds chunk c of group g over the slice's tokens, in order.
// partial: [groups, chunks_per_group, E] sums of s', then the same of flags.
__global__ void BalanceChunksKernel(const double* __restrict__ s_norm, const unsigned char* __restrict__ top,
                                    int64_t n, int64_t E, int64_t first_token, int64_t group_len, int64_t groups,
                                    int64_t chunks_per_group, double* __restrict__ partial) {
  constexpr int64_t kChunk = Backend::kBalanceChunk;
  const int64_t total = groups * chunks_per_group * E;
  for (int64_t idx = GlobalThread(); idx < total; idx += GlobalStride()) {
    const int64_t e = idx % E, gc = idx / E;
    const int64_t g = gc / chunks_per_group, c = gc - g * chunks_per_group;
    const int64_t len = group_len - c * kChunk < kChunk ? group_len - c * kChunk : kChunk;
    int64_t lo = g * group_len + c * kChunk - first_token, hi = lo + len;  // the chunk's slice tokens
    lo = lo < 0 ? 0 : (lo > n ? n : lo);
    hi = hi < 0 ? 0 : (hi > n ? n : hi);
    double p = 0.0;
    int64_t count = 0;
#pragma unroll 8
    for (int64_t t = lo; t < hi; ++t) {
      p += s_norm[t * E + e];
      count += top[t * E + e];
    }
    partial[idx] = p;
    partial[total + idx] = static_cast<double>(count);
  }
}

// BalanceStats, part 3: thread (g, e) adds its group's chunk sums in chunk order.
__global__ void BalanceStatsKernel(const double* __restrict__ partial, int64_t E, int64_t groups,
                                   int64_t chunks_per_group, double* __restrict__ stats) {
  const int64_t total = groups * E, chunk_total = total * chunks_per_group;
  for (int64_t idx = GlobalThread(); idx < total; idx += GlobalStride()) {
    const int64_t g = idx / E, e = idx - g * E;
    double p = 0.0, count = 0.0;
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const int64_t at = (g * chunks_per_group + c) * E + e;
      p += partial[at];
      count += partial[chunk_total + at];
    }
    stats[idx] = p;
    stats[total + idx] = count;
  }
}

// BalanceLossGrad: one warp per token. Per warp: [0, 16) the broadcast sum and dot, then s' [E]
// doubles, then s [E] floats.
__global__ void BalanceGradKernel(const float* __restrict__ scores, int64_t n, int E,
                                  int64_t first_token, int64_t group_len,
                                  const float* __restrict__ f, double coef,
                                  float* __restrict__ d_scores, size_t per_warp) {
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  unsigned char* base = smem + warp * per_warp;
  double* bcast = reinterpret_cast<double*>(base);
  double* q = reinterpret_cast<double*>(base + 16);
  float* s = reinterpret_cast<float*>(q + E);

  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; t < n;
       t += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* st = scores + t * E;
    const float* fg = f + ((first_token + t) / group_len) * E;
    for (int i = lane; i < E; i += 32) s[i] = st[i];
    __syncwarp();
    if (lane == 0) {
      double sum = 0.0;
      for (int i = 0; i < E; ++i) sum += s[i];
      bcast[0] = sum;
    }
    __syncwarp();
    const double sum = bcast[0];
    for (int i = lane; i < E; i += 32) q[i] = static_cast<double>(s[i]) / sum;
    __syncwarp();
    if (lane == 0) {
      // The CPU's `dot += coef * f * (s / sum)`, contracted by GCC -mfma into one fma per term.
      double dot = 0.0;
      for (int i = 0; i < E; ++i) dot = fma(coef * static_cast<double>(fg[i]), q[i], dot);
      bcast[1] = dot;
    }
    __syncwarp();
    const double dot = bcast[1];
    float* out = d_scores + t * E;
    // The CPU's `(coef * f - dot) / sum`, contracted by GCC -mfma into fma(f, coef, -dot).
    for (int i = lane; i < E; i += 32) {
      out[i] = static_cast<float>(fma(static_cast<double>(fg[i]), coef, -dot) / sum);
    }
    __syncwarp();  // before the next token overwrites s, q and the broadcasts
  }
}

size_t Round16(size_t bytes) { return (bytes + 15) / 16 * 16; }
size_t BalanceRowsSmemPerWarp(int64_t E) {
  return Round16(16 + static_cast<size_t>(E) * (sizeof(float) + 1));
}
size_t BalanceGradSmemPerWarp(int64_t E) {
  return Round16(16 + static_cast<size_t>(E) * (sizeof(double) + sizeof(float)));
}

unsigned RouterBlocks(int64_t n) {
  const int64_t blocks = CeilDiv(n, kWarpsPerBlock);
  return static_cast<unsigned>(blocks < kMaxBlocks * 4 ? blocks : kMaxBlocks * 4);
}

void CheckRouter(const RouterParams& p) {
  MOE_CUDA_REQUIRE(p.num_experts > 0 && p.top_k > 0 && p.top_k <= p.num_experts,
                   "router needs 0 < top_k <= num_experts");
  MOE_CUDA_REQUIRE(p.num_experts <= kMaxExperts, "router: num_experts above kMaxExperts");
  const int64_t G = p.n_group > 1 ? p.n_group : 1;
  MOE_CUDA_REQUIRE(p.num_experts % G == 0, "num_experts must be a multiple of n_group");
  if (p.method != TopkMethod::kGreedy && G > 1 && p.topk_group < G) {
    MOE_CUDA_REQUIRE(p.topk_group > 0 && p.topk_group * (p.num_experts / G) >= p.top_k,
                     "kept groups must hold at least top_k experts");
  }
}

}  // namespace

size_t RouterSmemPerWarp(int64_t num_experts) {
  // scores, keys, group scores (floats), taken flags (bytes); rounded to 16 bytes.
  const size_t bytes = static_cast<size_t>(num_experts) * (3 * sizeof(float) + 1);
  return (bytes + 15) / 16 * 16;
}

void LaunchRouterForward(const RouterParams& p, const float* logits, const float* bias, int64_t n,
                         float* scores, int32_t* selected, float* weights, cudaStream_t stream) {
  CheckRouter(p);
  if (n <= 0) return;
  const size_t smem = kWarpsPerBlock * RouterSmemPerWarp(p.num_experts);
  AllowDynamicSmem(RouterForwardKernel, smem);
  RouterForwardKernel<<<RouterBlocks(n), kWarpsPerBlock * 32, smem, stream>>>(
      p, logits, bias, n, scores, selected, weights, RouterSmemPerWarp(p.num_experts));
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchRouterBackward(const RouterParams& p, const float* scores, const int32_t* selected,
                          const float* d_weights, const float* d_scores_extra, int64_t n,
                          float* d_logits, cudaStream_t stream) {
  CheckRouter(p);
  if (n <= 0) return;
  const size_t smem = kWarpsPerBlock * RouterSmemPerWarp(p.num_experts);
  AllowDynamicSmem(RouterBackwardKernel, smem);
  RouterBackwardKernel<<<RouterBlocks(n), kWarpsPerBlock * 32, smem, stream>>>(
      p, scores, selected, d_weights, d_scores_extra, n, d_logits, RouterSmemPerWarp(p.num_experts));
  MOE_CUDA_CHECK_LAUNCH();
}

namespace {
int64_t BalanceChunksPerGroup(int64_t group_len) { return CeilDiv(group_len, Backend::kBalanceChunk); }
// s' [n, E] doubles, then top-K flags [n, E] bytes padded to 8, then the chunk sums [2, groups, chunks, E].
size_t BalanceFlagsBytes(int64_t n, int64_t num_experts) {
  return static_cast<size_t>(CeilDiv(n * num_experts, 8) * 8);
}
}  // namespace

size_t BalanceStatsScratchBytes(int64_t n, int64_t num_experts, int64_t group_len, int64_t groups) {
  if (n <= 0 || num_experts <= 0 || group_len <= 0 || groups <= 0) return 0;
  const int64_t chunk_sums = 2 * groups * BalanceChunksPerGroup(group_len) * num_experts;
  return static_cast<size_t>(n * num_experts) * sizeof(double) + BalanceFlagsBytes(n, num_experts) +
         static_cast<size_t>(chunk_sums) * sizeof(double);
}

void LaunchBalanceStats(const float* scores, int64_t n, int64_t num_experts, int64_t top_k,
                        int64_t first_token, int64_t group_len, int64_t groups, double* stats,
                        void* scratch, size_t scratch_bytes, cudaStream_t stream) {
  MOE_CUDA_REQUIRE(num_experts > 0 && num_experts <= kMaxExperts,
                   "balance stats: num_experts out of range");
  MOE_CUDA_REQUIRE(top_k > 0 && top_k <= num_experts,
                   "balance stats needs 0 < top_k <= num_experts");
  MOE_CUDA_REQUIRE(group_len > 0 && first_token >= 0 && groups >= 0 && n >= 0,
                   "balance stats: bad token range or groups");
  MOE_CUDA_REQUIRE(n == 0 || (first_token + n - 1) / group_len < groups,
                   "balance stats: token beyond the last group");
  if (groups == 0) return;
  if (n == 0) {  // no token here: every group's stats are zeros
    MOE_CUDA_CHECK(cudaMemsetAsync(stats, 0, sizeof(double) * 2 * groups * num_experts, stream));
    return;
  }
  MOE_CUDA_REQUIRE(scratch != nullptr &&
                       scratch_bytes >= BalanceStatsScratchBytes(n, num_experts, group_len, groups),
                   "balance stats: scratch too small");
  double* s_norm = static_cast<double*>(scratch);
  unsigned char* top = reinterpret_cast<unsigned char*>(s_norm + n * num_experts);
  double* partial = reinterpret_cast<double*>(top + BalanceFlagsBytes(n, num_experts));
  const int64_t chunks = BalanceChunksPerGroup(group_len);
  const size_t per_warp = BalanceRowsSmemPerWarp(num_experts);
  const size_t smem = kWarpsPerBlock * per_warp;
  AllowDynamicSmem(BalanceRowsKernel, smem);
  BalanceRowsKernel<<<RouterBlocks(n), kWarpsPerBlock * 32, smem, stream>>>(
      scores, n, static_cast<int>(num_experts), static_cast<int>(top_k), s_norm, top, per_warp);
  MOE_CUDA_CHECK_LAUNCH();
  // Few threads, each a short sequential loop: small blocks spread them over the SMs.
  constexpr int kStatsThreads = 64;
  BalanceChunksKernel<<<GridFor(groups * chunks * num_experts, kStatsThreads), kStatsThreads, 0, stream>>>(
      s_norm, top, n, num_experts, first_token, group_len, groups, chunks, partial);
  MOE_CUDA_CHECK_LAUNCH();
  BalanceStatsKernel<<<GridFor(groups * num_experts, kStatsThreads), kStatsThreads, 0, stream>>>(
      partial, num_experts, groups, chunks, stats);
  MOE_CUDA_CHECK_LAUNCH();
}

void LaunchBalanceLossGrad(const float* scores, int64_t n, int64_t num_experts,
                           int64_t first_token, int64_t group_len, const float* f, double coef,
                           float* d_scores, cudaStream_t stream) {
  MOE_CUDA_REQUIRE(num_experts > 0 && num_experts <= kMaxExperts,
                   "balance loss grad: num_experts out of range");
  MOE_CUDA_REQUIRE(group_len > 0 && first_token >= 0, "balance loss grad: bad token range");
  if (n <= 0) return;
  const size_t per_warp = BalanceGradSmemPerWarp(num_experts);
  const size_t smem = kWarpsPerBlock * per_warp;
  AllowDynamicSmem(BalanceGradKernel, smem);
  BalanceGradKernel<<<RouterBlocks(n), kWarpsPerBlock * 32, smem, stream>>>(
      scores, n, static_cast<int>(num_experts), first_token, group_len, f, coef, d_scores,
      per_warp);
  MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace moe::kernels::cuda
