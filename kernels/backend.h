// The op interface: every piece of math the model runs, declared once. Kernels work on raw, row-major
// FP32 views (in BF16 mode the model keeps BF16-representable values in them and calls RoundToBf16
// where a tensor is "stored", and keeps saved activations as 2-byte BF16 through PackBf16/UnpackBf16;
// see docs/architecture.md "Numerics"), never on configs or framework objects.
//
// Accumulation rule (as llm.c's layernorm.cuh): parameter gradients are ADDED into (`+=`), activation
// gradients are WRITTEN (`=`) unless the argument's comment says otherwise.
//
// Backends: kernels/cpu (oneDNN matmuls + OpenMP loops, the tested reference) and, with --config=cuda,
// kernels/cuda. The config's `device` picks one at run time; the model only sees this interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moe::kernels {

enum class Transpose { kNo, kYes };

// Scoring and selection variants of the router (docs/model.md "Router").
enum class ScoringFunc { kSigmoid, kSoftmax };
enum class TopkMethod { kNoauxTc, kGreedy, kGroupLimitedGreedy };

// One GEMM of a grouped launch: C[m,n] = alpha * op(A) op(B) + beta * C, leading dims in elements.
// A is a_bf16 when that is set (2-byte BF16 bits, same layout and leading dim: a saved activation kept
// as BF16), else a; likewise B. BF16 values are exact in FP32, so an operand given as bits is the same
// number as its FP32 twin in either GEMM precision; in BF16 mode it just skips the rounding pass. In BF16
// mode an operand may also be given as the BF16 rounding of an FP32 tensor (the value the product
// would round it to), converted once for several products.
struct GemmProblem {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  const uint16_t* a_bf16 = nullptr;
  const uint16_t* b_bf16 = nullptr;
};

// A read-only input of FP32 values, given as FP32 words or as BF16 bits: a saved activation kept as 2-byte
// BF16 is read in place and widened as it is read (exact), instead of unpacked into FP32 by a pass of its
// own. Converts implicitly from const float*; exactly one of the two is set.
struct ValuesIn {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
  ValuesIn(const float* p) : f32(p) {}  // NOLINT: implicit on purpose
  static ValuesIn Bits(const uint16_t* bits) {
    ValuesIn v(nullptr);
    v.bf16 = bits;
    return v;
  }
};

// Where an op writes FP32 results: FP32 words, or BF16 bits (each value rounded to nearest even as it
// is written) for a tensor whose FP32 words nobody reads, e.g. a saved activation or a gradient that
// only feeds BF16 products; that saves the separate pass that would round and pack it. Converts
// implicitly from float*; exactly one of the two is set.
struct ValuesOut {
  float* f32 = nullptr;
  uint16_t* bf16 = nullptr;
  ValuesOut(float* p) : f32(p) {}  // NOLINT: implicit on purpose
  static ValuesOut Bits(uint16_t* bits) {
    ValuesOut v(nullptr);
    v.bf16 = bits;
    return v;
  }
  // The written values, for the ops that read them next.
  ValuesIn written() const { return bf16 != nullptr ? ValuesIn::Bits(bf16) : ValuesIn(f32); }
};

// RoPE over a strided set of vectors: token i, head h, pair j at
// x[i*token_stride + h*head_stride + offset + 2j (+1)], rotated by the angle of positions[i]
// (cos/sin tables are [max_pos, half_dim] with YaRN's attention factor already folded in).
struct RopeView {
  float* x = nullptr;
  int64_t num_tokens = 0;
  int64_t num_heads = 1;
  int64_t token_stride = 0;
  int64_t head_stride = 0;
  int64_t offset = 0;
  int64_t half_dim = 0;  // dr / 2
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* cos = nullptr;          // [max_pos, half_dim]
  const float* sin = nullptr;          // [max_pos, half_dim]
};

// Causal attention for MLA head shapes: q,k [B,T,H,dqk], v [B,T,H,dv], out [B,T,H,dv] (row-major,
// contiguous). lse [B,H,T] saves each row's log-sum-exp of scaled scores for the backward.
struct AttentionShape {
  int64_t batch = 0, seq = 0, heads = 0, qk_dim = 0, v_dim = 0;
  float scale = 1.0f;
};

// Router settings (docs/model.md "Router"). Groups are n_group blocks of consecutive experts.
struct RouterParams {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  ScoringFunc scoring = ScoringFunc::kSigmoid;
  TopkMethod method = TopkMethod::kNoauxTc;
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
};

struct AdamWParams {
  float lr = 0, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0;
  float grad_scale = 1;  // the gradient is read as grad * grad_scale (gradient clipping, folded in)
  int64_t step = 1;  // 1-based, for bias correction
};

// Optional outputs of AdamW, written in the same pass as the update: the new weights' working copy as
// FP32 words (values: rounded to BF16 when round_bf16) and/or as BF16 bits (bits: only with round_bf16;
// BF16 mode's matrices keep only these). Null: not written.
struct AdamWWorking {
  float* values = nullptr;
  uint16_t* bits = nullptr;
  bool round_bf16 = false;
};

// Time spent in one op (by name: "gemm", "grouped_gemm", "attention_fwd", ...) and the FLOPs it did
// (matrix products and attention only: 2 per multiply-add; causal attention counts the half it does).
struct OpTime {
  double seconds = 0;
  int64_t calls = 0;
  double flops = 0;
};
// Entries named "... (host)" are host time spent inside ops (building a cuBLASLt plan, say), not
// device time: they overlap the other entries and are not added to them.
inline bool IsHostOpTime(const std::string& name) {
  static const std::string kSuffix = " (host)";
  return name.size() >= kSuffix.size() && name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
}

// FLOPs by the model-FLOPs convention (2 per multiply-add; causal attention does the T(T+1)/2 score
// entries it needs; its backward counts twice the forward, as in Megatron's and PaLM's MFU).
inline double GemmFlops(const GemmProblem& p) {
  return 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
}
inline double AttentionForwardFlops(const AttentionShape& s) {
  const double pairs = static_cast<double>(s.seq) * static_cast<double>(s.seq + 1) / 2;
  return 2.0 * static_cast<double>(s.batch * s.heads) * pairs * static_cast<double>(s.qk_dim + s.v_dim);
}
inline double AttentionBackwardFlops(const AttentionShape& s) { return 2.0 * AttentionForwardFlops(s); }

class Backend {
 public:
  virtual ~Backend() = default;

  // ---- Where the time goes (benchmarks and the trainer's step breakdown). ----
  // Op times since the last ResetOpTimes(), by op name; reading them synchronises. The CPU backend
  // always times its matrix products and attention (wall time per call); the CUDA backend times every
  // op with stream events while EnableOpTimes(true) is on (off by default: the events cost a little).
  virtual void EnableOpTimes(bool /*on*/) {}
  virtual std::map<std::string, OpTime> OpTimes() { return {}; }
  virtual void ResetOpTimes() {}

  // ---- Matrix products (FP32 accumulation). ----
  // C[m,n] = alpha * op(A) op(B) + beta * C.
  virtual void Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) = 0;
  // All problems share ta/tb/alpha/beta; problems with m, n or k == 0 are skipped (k == 0 with
  // beta == 0 zero-fills C). Used for the routed experts: one call for all local experts.
  virtual void GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                           float alpha, float beta) = 0;

  // ---- Ordering and data movement. ----
  // Ops may run asynchronously (the CUDA backend enqueues them on its stream). Host code reads or
  // writes a buffer an op has touched only after Synchronize(), which waits for every op so far
  // (a no-op on the CPU), or through the two copies below, which need no Synchronize().
  virtual void Synchronize() {}
  // dst (a buffer the ops use) = bytes from host memory src, in op order: ops before it still see the
  // old contents, ops after it the new; src may be reused as soon as it returns.
  virtual void CopyFromHost(const void* src, size_t bytes, void* dst) = 0;
  // dst (host memory) = bytes of src (a buffer the ops use) once every op before it has run; waits
  // for that (and nothing the host enqueues later).
  virtual void CopyToHost(const void* src, size_t bytes, void* dst) = 0;
  // dst[r·dst_ld + c] = src[r·src_ld + c] (+= when accumulate) for r < rows, c < cols. The two
  // regions must not overlap. Splits and concatenations of heads and latents use it.
  virtual void Copy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
                      int64_t cols, bool accumulate) = 0;
  void Copy(const float* src, float* dst, int64_t n) { Copy2D(src, n, dst, n, 1, n, false); }
  // dst = src: n BF16 values as bits (BF16 working weights on their way from a gather buffer).
  virtual void CopyBf16(const uint16_t* src, uint16_t* dst, int64_t n) = 0;
  virtual void Fill(float* x, int64_t n, float value) = 0;
  // out[r] = Σ_j a[r,j]·b[r,j] over rows of [rows, dim] (FP64 accumulation, rounded to FP32).
  virtual void RowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out) = 0;
  // x[r,:] *= s[r].
  virtual void ScaleRows(float* x, const float* s, int64_t rows, int64_t dim) = 0;

  // ---- Elementwise and small ops. ----
  virtual void RoundToBf16(float* x, int64_t n) = 0;               // in place, nearest-even
  // bits[i] = the BF16 bits of x[i] (nearest-even): 2-byte storage of BF16 activations.
  virtual void PackBf16(const float* x, int64_t n, uint16_t* bits) = 0;
  // RoundToBf16(x) and PackBf16 of the result in one pass: a value kept as 2-byte BF16 that the caller
  // goes on using in FP32 words (a saved activation, a working weight).
  virtual void RoundAndPackBf16(float* x, int64_t n, uint16_t* bits) = 0;
  // x[i] = the BF16 value of bits[i], exactly.
  virtual void UnpackBf16(const uint16_t* bits, int64_t n, float* x) = 0;
  virtual void Add(const float* a, float* y, int64_t n) = 0;        // y += a
  // y = RoundToBf16(y + a): a residual add whose sum is stored as BF16 (one pass instead of two).
  virtual void AddAndRoundToBf16(const float* a, float* y, int64_t n) = 0;
  virtual void Scale(float* x, int64_t n, float s) = 0;             // x *= s
  virtual double SumSquares(const float* x, int64_t n) = 0;         // FP64 accumulation
  // out[i] = SumSquares(pieces[i]) bit for bit, in one round trip: on a GPU, SumSquares waits for its
  // result, and a one-rank gradient norm reads thousands of parameter pieces.
  struct Piece {
    const float* data;
    int64_t n;
  };
  virtual void SumSquaresEach(const std::vector<Piece>& pieces, double* out) {
    for (size_t i = 0; i < pieces.size(); ++i) out[i] = SumSquares(pieces[i].data, pieces[i].n);
  }

  // ---- Embedding: out[i,:] = table[ids[i],:]; backward scatter-adds into d_table (+=). The table is
  // table_bf16 when that is set (BF16 bits: BF16 mode's working copy), else table. ----
  virtual void EmbeddingForward(const int32_t* ids, int64_t n, const float* table, const uint16_t* table_bf16,
                                int64_t dim, float* out) = 0;
  virtual void EmbeddingBackward(const int32_t* ids, int64_t n, const float* d_out, int64_t dim,
                                 float* d_table) = 0;

  // ---- RMSNorm over rows of x [rows, dim]: y = w * (x * rstd). rstd [rows] is saved.
  // round_normalized: round x*rstd to BF16 before the weight multiply (HF's BF16 behaviour,
  // docs/model.md "RMSNorm").
  virtual void RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                              bool round_normalized, float* y, float* rstd) = 0;
  // dx = (written), dw += . dw sums the rows in chunks of kRmsNormDwChunk, each chunk in row order,
  // then the chunks in order: a fixed order that both backends parallelise.
  static constexpr int64_t kRmsNormDwChunk = 64;
  virtual void RmsNormBackward(ValuesIn x, const float* w, const float* rstd, const float* dy,
                               int64_t rows, int64_t dim, float* dx, float* dw) = 0;

  // ---- RoPE, interleaved pairs (docs/model.md "RoPE on interleaved pairs"), in place. Backward is the
  // transposed rotation. ----
  virtual void RopeForward(const RopeView& v) = 0;
  virtual void RopeBackward(const RopeView& v) = 0;

  // ---- SwiGLU: m = silu(a) * c over n elements; backward writes da, dc. ----
  virtual void SwigluForward(const float* a, const float* c, ValuesOut m, int64_t n) = 0;
  // da and dc in the same form (both words or both bits).
  virtual void SwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc,
                              int64_t n) = 0;

  // ---- Causal attention, blockwise with online softmax: O(T) memory per head. ----
  virtual void AttentionForward(const AttentionShape& s, const float* q, const float* k,
                                const float* v, float* out, float* lse) = 0;
  // dq, dk, dv are written.
  virtual void AttentionBackward(const AttentionShape& s, const float* q, const float* k,
                                 const float* v, const float* out, const float* lse,
                                 const float* d_out, float* dq, float* dk, float* dv) = 0;

  // ---- Router (docs/model.md "Router"): logits [n, E] -> scores [n, E] (sigmoid or softmax, saved),
  // selected experts [n, K] (ascending score order not guaranteed; ties -> lower index) and weights
  // [n, K]. `bias` [E] (may be null) only affects selection (noaux_tc).
  virtual void RouterForward(const RouterParams& p, const float* logits, const float* bias, int64_t n,
                             float* scores, int32_t* selected, float* weights) = 0;
  // d_weights [n, K] -> d_logits [n, E] (written). Accumulates d_scores_extra [n, E] (may be null),
  // e.g. from the balance loss, before the scoring-function Jacobian.
  virtual void RouterBackward(const RouterParams& p, const float* scores, const int32_t* selected,
                              const float* d_weights, const float* d_scores_extra, int64_t n,
                              float* d_logits) = 0;

  // ---- Sequence-wise balance loss (docs/model.md "Sequence-wise balance loss", "Backward: router and
  // balance loss") over the router scores s [n, E] of n consecutive tokens, the first being token
  // `first_token` of the micro-batch, in groups of `group_len` tokens (a sequence, or the whole
  // micro-batch); s'[t] = s[t] / Σ_e s[t,e].
  // stats [2, groups, E] (FP64, written): [0][g][e] Σ_t s'[t,e] and [1][g][e] how many of the group's
  // tokens here have e in the plain top-K of s[t] (no bias, ties to the lower index); groups no token
  // here belongs to get zeros. Σ_t runs in a fixed order that allows a parallel sum: each group's
  // tokens in chunks of kBalanceChunk consecutive positions (aligned to the group's start), each chunk
  // summed in token order, then the chunks in order.
  static constexpr int64_t kBalanceChunk = 64;
  virtual void BalanceStats(const float* scores, int64_t n, int64_t num_experts, int64_t top_k,
                            int64_t first_token, int64_t group_len, int64_t groups, double* stats) = 0;
  // d_scores [n, E] (written) of coef · Σ_t Σ_e f[g(t),e] s'[t,e] with f [groups, E] constant:
  // (coef·f[g,e] − Σ_e' coef·f[g,e'] s'[t,e']) / Σ_e' s[t,e'] (FP64 inside).
  virtual void BalanceLossGrad(const float* scores, int64_t n, int64_t num_experts, int64_t first_token,
                               int64_t group_len, const float* f, double coef, float* d_scores) = 0;

  // ---- MoE dispatch order (Megatron's token permutation). The n·K assignments of selected [n, K]
  // (slot i = token·K + k, experts in [0, E)) sorted by expert, stably (slot order within an expert);
  // with capacity >= 0 each expert keeps only its first `capacity` assignments (GShard-style; -1:
  // all). Writes counts [E] (each expert's assignments before the cut) and row_token / row_slot [R]
  // (R = Σ_e min(counts[e], capacity); callers size them n·K and nothing past R is written): sorted row
  // r is slot row_slot[r] of token row_token[r]. The host copies `counts` out (CopyToHost: they size
  // the exchange and the grouped GEMM); the rows stay where the ops run.
  virtual void SortByExpert(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts, int64_t capacity,
                            int32_t* counts, int32_t* row_token, int32_t* row_slot) = 0;

  // ---- Softmax cross-entropy over rows of logits [n, V]. Returns the SUM of per-row losses (FP64);
  // if d_logits is non-null writes (softmax - onehot) * grad_scale; d_logits may alias logits (the
  // model computes the gradient in place). Rows with target < 0 are ignored.
  virtual double CrossEntropy(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                              float grad_scale, float* d_logits) = 0;

  // ---- Row gather/scatter for MoE dispatch. dst[i,:] = src[idx[i],:];
  // ScatterAddRows: dst[idx[i],:] += scale[i] * src[i,:] (scale may be null = 1).
  virtual void GatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim,
                          float* dst) = 0;
  virtual void ScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                              int64_t dim, float* dst) = 0;
  // A gather whose index is runs of consecutive source rows, given as the runs: block b fills the next
  // `rows` rows of dst (dst is tiled by the blocks in order) from src rows [src_row, src_row + rows).
  // The EP dispatcher's regrouping of received rows by local expert; the blocks come from the host,
  // so no index array is written there.
  struct RowBlock {
    int64_t src_row;
    int64_t rows;
  };
  virtual void GatherRowBlocks(const float* src, const std::vector<RowBlock>& blocks, int64_t dim, float* dst) = 0;

  // ---- AdamW on FP32 masters and moments (docs/model.md "Optimizer step"), in place; the gradient
  // scaled by p.grad_scale (clipping); the working copy written too where `working` says. ----
  virtual void AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
                     int64_t n, const AdamWWorking& working) = 0;
  // AdamW on many pieces with p's settings, each with its own weight decay and working outputs: what
  // AdamW does to each piece in turn (the default), in fewer launches where a backend can.
  struct AdamWPiece {
    float* param;
    const float* grad;
    float* m;
    float* v;
    int64_t n;
    float weight_decay;
    AdamWWorking working;
  };
  virtual void AdamWEach(const AdamWParams& p, const std::vector<AdamWPiece>& pieces) {
    for (const AdamWPiece& x : pieces) {
      AdamWParams q = p;
      q.weight_decay = x.weight_decay;
      AdamW(q, x.param, x.grad, x.m, x.v, x.n, x.working);
    }
  }
};

}  // namespace moe::kernels
