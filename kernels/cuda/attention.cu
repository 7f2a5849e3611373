// Causal flash attention for MLA head shapes (qk_dim != v_dim), FP32 in, FP32 out, FP32 arithmetic,
// forward and backward (kernels/cpu/attention.cc is the twin; the math is docs/model.md "Backward:
// attention"):
//   layout  q, k [B,T,H,dqk]; v, out, d_out [B,T,H,dv]; lse, delta [B,H,T]
//   forward  online softmax over key tiles; out = softmax(scale q k^T) v; lse = max + log(sum)
//   backward P = exp(scale q.k - lse), dP = dO v^T, Delta_t = sum_e dO_te O_te (FP64 sum),
//            dS = scale P (dP - Delta), dq = dS K, dk = dS^T Q, dv = P^T dO
//
// Kernels (256 threads as a 16 x 16 grid; each thread owns 4 rows of a 64-row tile and, of every
// 32-column score tile, the columns tx and tx + 16):
//   AttnForward  block = 64 queries of one (batch, head); loops over 32-key tiles up to the diagonal.
//   AttnDkDv     block = 64 keys; loops over 32-query tiles from the diagonal to the end. Writes dk, dv.
//   AttnDq       block = 64 queries; loops over 32-key tiles up to the diagonal. Writes dq.
// Splitting dq from dk/dv recomputes P and dP once more (7 tile products instead of 5), but every
// output row is owned by exactly one block and summed in a fixed order: the backward is deterministic
// with no atomics, as the CPU twin is. Memory is O(T) per head (only the lse/Delta vectors).
//
// Tiles live in shared memory with rows padded to an odd number of floats, so the column-strided
// reads of the dot products are free of bank conflicts. The head dims are template bounds (DQK, DV:
// smem row length and accumulator count); the actual dims are run-time values up to those bounds,
// padded with zeros. Variants: (96,64), (128,128), (192,128), (256,256). This is a SIMT FP32 kernel:
// it does not use tensor cores (a BF16 mma/wgmma version is the next step for speed).
#include <cfloat>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kAttnThreads = 256;
constexpr int kRowTile = 64;  // rows a block owns (queries, or keys in AttnDkDv)
constexpr int kColTile = 32;  // the other side's tile in each step
constexpr int kRowsPerThread = 4;
constexpr int kColsPerThread = kColTile / 16;
constexpr int kPLd = kColTile + 1;  // probability tile row length (odd)

struct Dims {
  int64_t B, T, H, dqk, dv;
  float scale;
};

__device__ __forceinline__ float NegInf() { return -__int_as_float(0x7f800000); }

// rows [row0, row0 + nrows) of one (b, h) slice of a [B,T,H,dim] tensor into smem [nrows][LD];
// columns [dim, COLS) and rows past T are zero.
template <int COLS, int LD>
__device__ void LoadTile(const float* __restrict__ g, const Dims& s, int64_t b, int64_t h,
                         int64_t dim, int64_t row0, int nrows, float* __restrict__ tile) {
  for (int e = threadIdx.x; e < nrows * COLS; e += blockDim.x) {
    const int r = e / COLS, c = e % COLS;
    const int64_t t = row0 + r;
    float v = 0.0f;
    if (t < s.T && c < dim) v = g[((b * s.T + t) * s.H + h) * dim + c];
    tile[r * LD + c] = v;
  }
}

// acc[i][j] = sum_{d < len} A[ty*4+i][d] * B[tx + 16 j][d]  (A, B in smem, row lengths lda, ldb).
template <int NC>
__device__ __forceinline__ void TileDot(const float* __restrict__ A, int lda,
                                        const float* __restrict__ Bm, int ldb, int len, int ty,
                                        int tx, float (&acc)[kRowsPerThread][NC]) {
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
    for (int j = 0; j < NC; ++j) acc[i][j] = 0.0f;
  const float* a0 = A + (ty * kRowsPerThread) * lda;
  const float* b0 = Bm + tx * ldb;
#pragma unroll 4
  for (int d = 0; d < len; ++d) {
    float av[kRowsPerThread], bv[NC];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) av[i] = a0[i * lda + d];
#pragma unroll
    for (int j = 0; j < NC; ++j) bv[j] = b0[(16 * j) * ldb + d];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
      for (int j = 0; j < NC; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// acc[i][jj] += sum_{c < kColTile} P[ty*4+i][c] * M[c][tx + 16 jj]  (P [64][kPLd], M [kColTile][ldm]).
template <int NJ>
__device__ __forceinline__ void TileAccumulate(const float* __restrict__ P,
                                               const float* __restrict__ M, int ldm, int ty,
                                               int tx, float (&acc)[kRowsPerThread][NJ]) {
  const float* p0 = P + (ty * kRowsPerThread) * kPLd;
#pragma unroll 4
  for (int c = 0; c < kColTile; ++c) {
    float pv[kRowsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) pv[i] = p0[i * kPLd + c];
    const float* m = M + c * ldm + tx;
#pragma unroll
    for (int jj = 0; jj < NJ; ++jj) {
      const float mv = m[16 * jj];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) acc[i][jj] = fmaf(pv[i], mv, acc[i][jj]);
    }
  }
}

// Max / sum over the 16 lanes that share a row group (lanes with equal ty are 16 consecutive lanes).
__device__ __forceinline__ float RowMax16(float v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float RowSum16(float v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <int DQK, int DV>
struct Smem {
  static constexpr int kQkLd = DQK + 1, kVLd = DV + 1;
  // Forward and AttnDq: rows tile of q (and dO), column tiles of k and v, probabilities.
  static constexpr size_t kForward =
      sizeof(float) * (kRowTile * kQkLd + kColTile * kQkLd + kColTile * kVLd + kRowTile * kPLd);
  static constexpr size_t kDq = sizeof(float) * (kRowTile * kQkLd + kRowTile * kVLd +
                                                 kColTile * kQkLd + kColTile * kVLd +
                                                 kRowTile * kPLd);
  static constexpr size_t kDkDv =
      sizeof(float) * (kRowTile * kQkLd + kRowTile * kVLd + kColTile * kQkLd + kColTile * kVLd +
                       2 * kRowTile * kPLd + 2 * kColTile);
};

template <int DQK, int DV>
__global__ void __launch_bounds__(kAttnThreads, 1)
    AttnForward(Dims s, const float* __restrict__ q, const float* __restrict__ k,
                const float* __restrict__ v, float* __restrict__ out, float* __restrict__ lse) {
  using S = Smem<DQK, DV>;
  constexpr int NJ = DV / 16;
  extern __shared__ float smem[];
  float* qs = smem;                          // [64][kQkLd]
  float* ks = qs + kRowTile * S::kQkLd;      // [32][kQkLd]
  float* vs = ks + kColTile * S::kQkLd;      // [32][kVLd]
  float* ps = vs + kColTile * S::kVLd;       // [64][kPLd]

  const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
  const int64_t num_qt = (s.T + kRowTile - 1) / kRowTile;
  const int64_t i0 = (num_qt - 1 - blockIdx.x) * kRowTile;  // longest rows first
  const int64_t bh = blockIdx.y, b = bh / s.H, h = bh % s.H;

  LoadTile<DQK, S::kQkLd>(q, s, b, h, s.dqk, i0, kRowTile, qs);
  float o[kRowsPerThread][NJ];
  float m[kRowsPerThread], l[kRowsPerThread];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    m[i] = NegInf();
    l[i] = 0.0f;
#pragma unroll
    for (int jj = 0; jj < NJ; ++jj) o[i][jj] = 0.0f;
  }

  const int64_t key_end = i0 + kRowTile < s.T ? i0 + kRowTile : s.T;
  for (int64_t j0 = 0; j0 < key_end; j0 += kColTile) {
    __syncthreads();  // the previous step is done with ks, vs, ps
    LoadTile<DQK, S::kQkLd>(k, s, b, h, s.dqk, j0, kColTile, ks);
    LoadTile<DV, S::kVLd>(v, s, b, h, s.dv, j0, kColTile, vs);
    __syncthreads();
    float sc[kRowsPerThread][kColsPerThread];
    TileDot<kColsPerThread>(qs, S::kQkLd, ks, S::kQkLd, static_cast<int>(s.dqk), ty, tx, sc);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int r = ty * kRowsPerThread + i;
      const int64_t qi = i0 + r;
      float tile_max = NegInf();
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int64_t kj = j0 + tx + 16 * j;
        const bool visible = kj <= qi && kj < s.T;
        sc[i][j] = visible ? sc[i][j] * s.scale : NegInf();
        tile_max = fmaxf(tile_max, sc[i][j]);
      }
      tile_max = RowMax16(tile_max);
      const float m_new = fmaxf(m[i], tile_max);
      // The first key tile always holds key 0, visible to every row, so m_new is finite from then
      // on; the guard only covers rows past T.
      const float corr = m_new == NegInf() ? 1.0f : expf(m[i] - m_new);
      float tile_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const float p = sc[i][j] == NegInf() ? 0.0f : expf(sc[i][j] - m_new);
        ps[r * kPLd + tx + 16 * j] = p;
        tile_sum += p;
      }
      tile_sum = RowSum16(tile_sum);
      l[i] = l[i] * corr + tile_sum;
      m[i] = m_new;
#pragma unroll
      for (int jj = 0; jj < NJ; ++jj) o[i][jj] *= corr;
    }
    __syncthreads();
    TileAccumulate<NJ>(ps, vs, S::kVLd, ty, tx, o);
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t qi = i0 + ty * kRowsPerThread + i;
    if (qi >= s.T) continue;
    const float inv = 1.0f / l[i];
    float* orow = out + ((b * s.T + qi) * s.H + h) * s.dv;
#pragma unroll
    for (int jj = 0; jj < NJ; ++jj) {
      const int e = tx + 16 * jj;
      if (e < s.dv) orow[e] = o[i][jj] * inv;
    }
    if (tx == 0) lse[bh * s.T + qi] = m[i] + logf(l[i]);
  }
}

// delta[b,h,t] = sum_e d_out[b,t,h,e] * out[b,t,h,e] in FP64; one warp per (b, t, h).
__global__ void AttnDelta(Dims s, const float* __restrict__ out, const float* __restrict__ d_out,
                          float* __restrict__ delta) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = s.B * s.T * s.H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = GlobalThread() >> 5; row < rows; row += warps) {
    const float* o = out + row * s.dv;
    const float* g = d_out + row * s.dv;
    double acc = 0.0;
    for (int64_t e = lane; e < s.dv; e += 32) acc += static_cast<double>(o[e]) * g[e];
    acc = WarpSum(acc);
    if (lane == 0) {
      const int64_t h = row % s.H, bt = row / s.H, t = bt % s.T, b = bt / s.T;
      delta[(b * s.H + h) * s.T + t] = static_cast<float>(acc);
    }
  }
}

template <int DQK, int DV>
__global__ void __launch_bounds__(kAttnThreads, 1)
    AttnDkDv(Dims s, const float* __restrict__ q, const float* __restrict__ k,
             const float* __restrict__ v, const float* __restrict__ lse,
             const float* __restrict__ delta, const float* __restrict__ d_out,
             float* __restrict__ dk, float* __restrict__ dv) {
  using S = Smem<DQK, DV>;
  constexpr int NK = DQK / 16, NV = DV / 16;
  extern __shared__ float smem[];
  float* ks = smem;                            // [64][kQkLd]  this block's keys
  float* vs = ks + kRowTile * S::kQkLd;        // [64][kVLd]
  float* qs = vs + kRowTile * S::kVLd;         // [32][kQkLd]  the current query tile
  float* gs = qs + kColTile * S::kQkLd;        // [32][kVLd]   d_out of those queries
  float* pt = gs + kColTile * S::kVLd;         // [64][kPLd]   P^T
  float* dst = pt + kRowTile * kPLd;           // [64][kPLd]   dS^T (scale folded in)
  float* lse_s = dst + kRowTile * kPLd;        // [32]
  float* delta_s = lse_s + kColTile;           // [32]

  const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kRowTile;  // early keys (most queries) first
  const int64_t bh = blockIdx.y, b = bh / s.H, h = bh % s.H;

  LoadTile<DQK, S::kQkLd>(k, s, b, h, s.dqk, j0, kRowTile, ks);
  LoadTile<DV, S::kVLd>(v, s, b, h, s.dv, j0, kRowTile, vs);
  float dk_acc[kRowsPerThread][NK], dv_acc[kRowsPerThread][NV];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
#pragma unroll
    for (int jj = 0; jj < NK; ++jj) dk_acc[i][jj] = 0.0f;
#pragma unroll
    for (int jj = 0; jj < NV; ++jj) dv_acc[i][jj] = 0.0f;
  }

  for (int64_t i0 = j0 / kColTile * kColTile; i0 < s.T; i0 += kColTile) {
    __syncthreads();
    LoadTile<DQK, S::kQkLd>(q, s, b, h, s.dqk, i0, kColTile, qs);
    LoadTile<DV, S::kVLd>(d_out, s, b, h, s.dv, i0, kColTile, gs);
    for (int r = threadIdx.x; r < kColTile; r += blockDim.x) {
      const int64_t t = i0 + r;
      lse_s[r] = t < s.T ? lse[bh * s.T + t] : 0.0f;
      delta_s[r] = t < s.T ? delta[bh * s.T + t] : 0.0f;
    }
    __syncthreads();
    float st[kRowsPerThread][kColsPerThread], dpt[kRowsPerThread][kColsPerThread];
    TileDot<kColsPerThread>(ks, S::kQkLd, qs, S::kQkLd, static_cast<int>(s.dqk), ty, tx, st);
    TileDot<kColsPerThread>(vs, S::kVLd, gs, S::kVLd, static_cast<int>(s.dv), ty, tx, dpt);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int c = ty * kRowsPerThread + i;
      const int64_t kj = j0 + c;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int r = tx + 16 * j;
        const int64_t qi = i0 + r;
        const bool visible = kj <= qi && qi < s.T && kj < s.T;
        float p = 0.0f, ds = 0.0f;
        if (visible) {
          p = expf(st[i][j] * s.scale - lse_s[r]);
          ds = s.scale * p * (dpt[i][j] - delta_s[r]);
        }
        pt[c * kPLd + r] = p;
        dst[c * kPLd + r] = ds;
      }
    }
    __syncthreads();
    TileAccumulate<NV>(pt, gs, S::kVLd, ty, tx, dv_acc);
    TileAccumulate<NK>(dst, qs, S::kQkLd, ty, tx, dk_acc);
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t kj = j0 + ty * kRowsPerThread + i;
    if (kj >= s.T) continue;
    float* dkrow = dk + ((b * s.T + kj) * s.H + h) * s.dqk;
    float* dvrow = dv + ((b * s.T + kj) * s.H + h) * s.dv;
#pragma unroll
    for (int jj = 0; jj < NK; ++jj) {
      const int d = tx + 16 * jj;
      if (d < s.dqk) dkrow[d] = dk_acc[i][jj];
    }
#pragma unroll
    for (int jj = 0; jj < NV; ++jj) {
      const int e = tx + 16 * jj;
      if (e < s.dv) dvrow[e] = dv_acc[i][jj];
    }
  }
}

template <int DQK, int DV>
__global__ void __launch_bounds__(kAttnThreads, 1)
    AttnDq(Dims s, const float* __restrict__ q, const float* __restrict__ k,
           const float* __restrict__ v, const float* __restrict__ lse,
           const float* __restrict__ delta, const float* __restrict__ d_out,
           float* __restrict__ dq) {
  using S = Smem<DQK, DV>;
  constexpr int NK = DQK / 16;
  extern __shared__ float smem[];
  float* qs = smem;                            // [64][kQkLd]
  float* gs = qs + kRowTile * S::kQkLd;        // [64][kVLd]
  float* ks = gs + kRowTile * S::kVLd;         // [32][kQkLd]
  float* vs = ks + kColTile * S::kQkLd;        // [32][kVLd]
  float* dss = vs + kColTile * S::kVLd;        // [64][kPLd]  dS (scale folded in)

  const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
  const int64_t num_qt = (s.T + kRowTile - 1) / kRowTile;
  const int64_t i0 = (num_qt - 1 - blockIdx.x) * kRowTile;
  const int64_t bh = blockIdx.y, b = bh / s.H, h = bh % s.H;

  LoadTile<DQK, S::kQkLd>(q, s, b, h, s.dqk, i0, kRowTile, qs);
  LoadTile<DV, S::kVLd>(d_out, s, b, h, s.dv, i0, kRowTile, gs);
  float row_lse[kRowsPerThread], row_delta[kRowsPerThread];
  float dq_acc[kRowsPerThread][NK];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t qi = i0 + ty * kRowsPerThread + i;
    row_lse[i] = qi < s.T ? lse[bh * s.T + qi] : 0.0f;
    row_delta[i] = qi < s.T ? delta[bh * s.T + qi] : 0.0f;
#pragma unroll
    for (int jj = 0; jj < NK; ++jj) dq_acc[i][jj] = 0.0f;
  }

  const int64_t key_end = i0 + kRowTile < s.T ? i0 + kRowTile : s.T;
  for (int64_t j0 = 0; j0 < key_end; j0 += kColTile) {
    __syncthreads();
    LoadTile<DQK, S::kQkLd>(k, s, b, h, s.dqk, j0, kColTile, ks);
    LoadTile<DV, S::kVLd>(v, s, b, h, s.dv, j0, kColTile, vs);
    __syncthreads();
    float sc[kRowsPerThread][kColsPerThread], dp[kRowsPerThread][kColsPerThread];
    TileDot<kColsPerThread>(qs, S::kQkLd, ks, S::kQkLd, static_cast<int>(s.dqk), ty, tx, sc);
    TileDot<kColsPerThread>(gs, S::kVLd, vs, S::kVLd, static_cast<int>(s.dv), ty, tx, dp);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int r = ty * kRowsPerThread + i;
      const int64_t qi = i0 + r;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int c = tx + 16 * j;
        const int64_t kj = j0 + c;
        float ds = 0.0f;
        if (kj <= qi && kj < s.T && qi < s.T) {
          const float p = expf(sc[i][j] * s.scale - row_lse[i]);
          ds = s.scale * p * (dp[i][j] - row_delta[i]);
        }
        dss[r * kPLd + c] = ds;
      }
    }
    __syncthreads();
    TileAccumulate<NK>(dss, ks, S::kQkLd, ty, tx, dq_acc);
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t qi = i0 + ty * kRowsPerThread + i;
    if (qi >= s.T) continue;
    float* dqrow = dq + ((b * s.T + qi) * s.H + h) * s.dqk;
#pragma unroll
    for (int jj = 0; jj < NK; ++jj) {
      const int d = tx + 16 * jj;
      if (d < s.dqk) dqrow[d] = dq_acc[i][jj];
    }
  }
}

Dims ToDims(const AttentionShape& a) {
  return {a.batch, a.seq, a.heads, a.qk_dim, a.v_dim, a.scale};
}

dim3 TileGrid(const Dims& s) {
  MOE_CUDA_REQUIRE(s.B * s.H <= 65535, "attention: batch * heads above 65535 (grid.y)");
  return dim3(static_cast<unsigned>((s.T + kRowTile - 1) / kRowTile),
              static_cast<unsigned>(s.B * s.H));
}

template <int DQK, int DV>
void Forward(const Dims& s, const float* q, const float* k, const float* v, float* out, float* lse,
             cudaStream_t stream) {
  const size_t bytes = Smem<DQK, DV>::kForward;
  AllowDynamicSmem(AttnForward<DQK, DV>, bytes);
  AttnForward<DQK, DV><<<TileGrid(s), kAttnThreads, bytes, stream>>>(s, q, k, v, out, lse);
  MOE_CUDA_CHECK_LAUNCH();
}

template <int DQK, int DV>
void Backward(const Dims& s, const float* q, const float* k, const float* v, const float* lse,
              const float* delta, const float* d_out, float* dq, float* dk, float* dv,
              cudaStream_t stream) {
  const size_t kv_bytes = Smem<DQK, DV>::kDkDv;
  AllowDynamicSmem(AttnDkDv<DQK, DV>, kv_bytes);
  AttnDkDv<DQK, DV><<<TileGrid(s), kAttnThreads, kv_bytes, stream>>>(s, q, k, v, lse, delta, d_out,
                                                                     dk, dv);
  MOE_CUDA_CHECK_LAUNCH();
  const size_t q_bytes = Smem<DQK, DV>::kDq;
  AllowDynamicSmem(AttnDq<DQK, DV>, q_bytes);
  AttnDq<DQK, DV><<<TileGrid(s), kAttnThreads, q_bytes, stream>>>(s, q, k, v, lse, delta, d_out,
                                                                  dq);
  MOE_CUDA_CHECK_LAUNCH();
}

// The smallest variant that holds both head dims; -1 if none.
int Variant(int64_t dqk, int64_t dv) {
  if (dqk <= 96 && dv <= 64) return 0;
  if (dqk <= 128 && dv <= 128) return 1;
  if (dqk <= 192 && dv <= 128) return 2;
  if (dqk <= 256 && dv <= 256) return 3;
  return -1;
}

bool Empty(const AttentionShape& a) { return a.batch <= 0 || a.seq <= 0 || a.heads <= 0; }

}  // namespace

void LaunchAttentionForward(const AttentionShape& a, const float* q, const float* k, const float* v,
                            float* out, float* lse, cudaStream_t stream) {
  MOE_CUDA_REQUIRE(a.qk_dim > 0 && a.v_dim > 0, "attention head dims must be positive");
  if (Empty(a)) return;
  const Dims s = ToDims(a);
  switch (Variant(a.qk_dim, a.v_dim)) {
    case 0: return Forward<96, 64>(s, q, k, v, out, lse, stream);
    case 1: return Forward<128, 128>(s, q, k, v, out, lse, stream);
    case 2: return Forward<192, 128>(s, q, k, v, out, lse, stream);
    case 3: return Forward<256, 256>(s, q, k, v, out, lse, stream);
    default: MOE_CUDA_REQUIRE(false, "attention: qk_dim and v_dim must be <= 256");
  }
}

void LaunchAttentionBackward(const AttentionShape& a, const float* q, const float* k,
                             const float* v, const float* out, const float* lse,
                             const float* d_out, float* delta, float* dq, float* dk, float* dv,
                             cudaStream_t stream) {
  MOE_CUDA_REQUIRE(a.qk_dim > 0 && a.v_dim > 0, "attention head dims must be positive");
  if (Empty(a)) return;
  const Dims s = ToDims(a);
  const int64_t rows = s.B * s.T * s.H;
  AttnDelta<<<GridFor(rows * 32), kThreads, 0, stream>>>(s, out, d_out, delta);
  MOE_CUDA_CHECK_LAUNCH();
  switch (Variant(a.qk_dim, a.v_dim)) {
    case 0: return Backward<96, 64>(s, q, k, v, lse, delta, d_out, dq, dk, dv, stream);
    case 1: return Backward<128, 128>(s, q, k, v, lse, delta, d_out, dq, dk, dv, stream);
    case 2: return Backward<192, 128>(s, q, k, v, lse, delta, d_out, dq, dk, dv, stream);
    case 3: return Backward<256, 256>(s, q, k, v, lse, delta, d_out, dq, dk, dv, stream);
    default: MOE_CUDA_REQUIRE(false, "attention: qk_dim and v_dim must be <= 256");
  }
}

}  // namespace moe::kernels::cuda
