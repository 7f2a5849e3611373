// Host-side launchers of the CUDA backend's kernels: plain C++ functions on DEVICE pointers that
// enqueue work on `stream` and return at once (no synchronisation unless stated). The .cu files
// implement them; cuda_backend.cc (compiled by the host compiler) calls them. Shapes and rules are
// those of kernels/backend.h; each launcher names its CPU twin in its .cu file's header comment.
// Scratch buffers (partials, workspaces) are passed in by the caller, which owns all memory.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_check.h"

namespace moe::kernels::cuda {

// How matrix products multiply: FP32 operands on the FP32 pipes (the reference semantics), or
// operands rounded to BF16 with FP32 accumulation on the tensor cores (the BF16 training mode).
enum class GemmMath { kFp32, kBf16 };

// ---- elementwise.cu ----
void LaunchRoundToBf16(float* x, int64_t n, cudaStream_t stream);
// x[i] <- BF16(x[i]) (nearest even) and bits[i] <- its BF16 bits.
void LaunchRoundAndPackBf16(float* x, int64_t n, uint16_t* bits, cudaStream_t stream);
void LaunchAdd(const float* a, float* y, int64_t n, cudaStream_t stream);
void LaunchAddAndRoundToBf16(const float* a, float* y, int64_t n, cudaStream_t stream);
void LaunchScale(float* x, int64_t n, float s, cudaStream_t stream);
void LaunchFill(float* x, int64_t n, float value, cudaStream_t stream);
// Grid-stride over the flattened rows x cols space (64-bit indices); a contiguous copy (one row, or
// leading dims equal to cols) runs as one flat run, with 16-byte accesses when aligned.
void LaunchCopy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
                  int64_t cols, bool accumulate, cudaStream_t stream);
void LaunchSwigluForward(const float* a, const float* c, ValuesOut m, int64_t n, cudaStream_t stream);
void LaunchSwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc, int64_t n,
                          cudaStream_t stream);

// AdamW with the bias corrections 1 - beta^step precomputed on the host (as the CPU twin does).
struct AdamWArgs {
  float lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2;
  float grad_scale;  // the gradient is read as grad * grad_scale
};
void LaunchAdamW(const AdamWArgs& p, float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamWWorking& working, cudaStream_t stream);
// AdamW on many pieces in one launch, each element exactly as LaunchAdamW updates it. table [count]
// (device memory): each piece's tensors, n, weight decay (p.weight_decay is not read) and
// first_chunk, the running total of AdamWChunks over the pieces before it.
inline constexpr int64_t kAdamWChunk = 8192;  // elements per block
int64_t AdamWChunks(int64_t n);
struct AdamWPieceArgs {
  float* param;
  const float* grad;
  float* m;
  float* v;
  float* working;
  uint16_t* working_bits;
  int64_t n;
  float weight_decay;
  bool round_bf16;
  int64_t first_chunk;
};
void LaunchAdamWEach(const AdamWArgs& p, const AdamWPieceArgs* table, int64_t count, int64_t total_chunks,
                     cudaStream_t stream);

// Sum of squares in FP64: partials [SumSquaresPartials(n)] scratch, result in out[0] (device).
inline constexpr int64_t kSumChunk = 16384;  // elements per partial: fixes the summation order
int64_t SumSquaresPartials(int64_t n);
void LaunchSumSquares(const float* x, int64_t n, double* partials, double* out,
                      cudaStream_t stream);
// Many sums of squares in two launches, out[i] the same bits as LaunchSumSquares gives for piece i.
// table [count] (device memory): each piece's data, n and first_partial, the running total of
// SumSquaresPartials over the pieces before it; partials [total_partials] scratch.
struct SumSquaresPiece {
  const float* data;
  int64_t n;
  int64_t first_partial;
};
void LaunchSumSquaresEach(const SumSquaresPiece* table, int64_t count, int64_t total_partials,
                          double* partials, double* out, cudaStream_t stream);
// out[0] = sum of in[0..n) (FP64, one block, fixed order; n == 0 gives 0).
void LaunchSumDoubles(const double* in, int64_t n, double* out, cudaStream_t stream);

// C [rows, cols] with leading dim ld: C = beta * C, or zeros when beta == 0 (GEMM with k == 0).
void LaunchScaleMatrix(float* c, int64_t rows, int64_t cols, int64_t ld, float beta,
                       cudaStream_t stream);
// dst [rows, cols] BF16 (__nv_bfloat16, round to nearest even; leading dim dst_ld) from src [rows,
// cols] with leading dim ld.
void LaunchPackBf16(const float* src, int64_t rows, int64_t cols, int64_t ld, void* dst,
                    int64_t dst_ld, cudaStream_t stream);
// dst [rows, cols] FP32 (leading dim dst_ld) = each value of src [rows, cols] (leading dim ld) rounded to BF16
// (nearest even) and widened back: the value a BF16 product reads, as an FP32 word.
void LaunchRoundToBf16Into(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst, int64_t dst_ld,
                           cudaStream_t stream);
// dst [rows, cols] FP32 (leading dim dst_ld) = the BF16 values of bits [rows, cols] (leading dim ld), exactly.
void LaunchUnpackBf16(const uint16_t* bits, int64_t rows, int64_t cols, int64_t ld, float* dst, int64_t dst_ld,
                      cudaStream_t stream);

// ---- rows.cu ----
void LaunchGatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                      cudaStream_t stream);
// GatherRows from runs of consecutive source rows: table = first [blocks + 1] (the first gathered row of
// each block, first[blocks] = rows) then src_row [blocks], in device memory.
void LaunchGatherRowBlocks(const float* src, const int64_t* table, int64_t blocks, int64_t rows, int64_t dim,
                           float* dst, cudaStream_t stream);
// The same from a table of BF16 bits, unpacked to FP32.
void LaunchGatherRowsBf16(const uint16_t* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                          cudaStream_t stream);
// One warp (short rows) or block (long rows) per row, FP64 with a fixed reduction tree.
void LaunchRowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out, cudaStream_t stream);
void LaunchScaleRows(float* x, const float* s, int64_t rows, int64_t dim, cudaStream_t stream);
// Deterministic scatter-add (sort by destination, then add in source order); needs
// ScatterAddWorkspaceBytes(n) bytes of device workspace.
size_t ScatterAddWorkspaceBytes(int64_t n);
void LaunchScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                          int64_t dim, float* dst, void* workspace, size_t workspace_bytes,
                          cudaStream_t stream);
// MoE dispatch order (kernels/backend.h SortByExpert) of `total` = n·K assignments; needs
// SortByExpertWorkspaceBytes(total, E) bytes of device workspace.
size_t SortByExpertWorkspaceBytes(int64_t total, int64_t num_experts);
void LaunchSortByExpert(const int32_t* selected, int64_t total, int64_t k, int64_t num_experts, int64_t capacity,
                        int32_t* counts, int32_t* row_token, int32_t* row_slot, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream);

// ---- norm.cu ----
inline constexpr int64_t kDwChunk = Backend::kRmsNormDwChunk;  // rows per dw partial: fixes the summation order
int64_t RmsNormDwChunks(int64_t rows);   // partial needs RmsNormDwChunks(rows) * dim floats
void LaunchRmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                          bool round_normalized, float* y, float* rstd, cudaStream_t stream);
void LaunchRmsNormBackward(ValuesIn x, const float* w, const float* rstd, const float* dy,
                           int64_t rows, int64_t dim, float* dx, float* dw, float* partial,
                           cudaStream_t stream);

// ---- rope.cu ----
void LaunchRope(const RopeView& v, bool backward, cudaStream_t stream);

// ---- router.cu ----
inline constexpr int64_t kMaxExperts = 4096;
size_t RouterSmemPerWarp(int64_t num_experts);
void LaunchRouterForward(const RouterParams& p, const float* logits, const float* bias, int64_t n,
                         float* scores, int32_t* selected, float* weights, cudaStream_t stream);
void LaunchRouterBackward(const RouterParams& p, const float* scores, const int32_t* selected,
                          const float* d_weights, const float* d_scores_extra, int64_t n,
                          float* d_logits, cudaStream_t stream);
// The sequence-wise balance loss (kernels/backend.h BalanceStats / BalanceLossGrad), in the CPU
// twin's FP64 order. BalanceStats needs BalanceStatsScratchBytes(n, E, group_len, groups) bytes of
// device scratch (8-byte aligned; may be null when n == 0): s' [n, E] doubles, top-K flags [n, E] bytes,
// then the per-chunk sums.
size_t BalanceStatsScratchBytes(int64_t n, int64_t num_experts, int64_t group_len, int64_t groups);
void LaunchBalanceStats(const float* scores, int64_t n, int64_t num_experts, int64_t top_k,
                        int64_t first_token, int64_t group_len, int64_t groups, double* stats,
                        void* scratch, size_t scratch_bytes, cudaStream_t stream);
void LaunchBalanceLossGrad(const float* scores, int64_t n, int64_t num_experts,
                           int64_t first_token, int64_t group_len, const float* f, double coef,
                           float* d_scores, cudaStream_t stream);

// ---- loss.cu ----
// row_loss [n] scratch; total[0] = sum of row losses (device); *bad_target set to 1 (device) if a
// target is >= vocab (the caller zeroes it first and checks it after synchronising).
void LaunchCrossEntropy(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                        float grad_scale, float* d_logits, double* row_loss, double* total,
                        int* bad_target, cudaStream_t stream);

// ---- attention.cu ----
void LaunchAttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v,
                            float* out, float* lse, cudaStream_t stream);
// delta [B*H*T] floats of scratch.
void LaunchAttentionBackward(const AttentionShape& s, const float* q, const float* k,
                             const float* v, const float* out, const float* lse,
                             const float* d_out, float* delta, float* dq, float* dk, float* dv,
                             cudaStream_t stream);

// ---- grouped_gemm.cu ----
inline constexpr int kMaxGroupedProblems = 256;  // problems per launch (kernel-parameter table)
// One launch per kMaxGroupedProblems non-empty problems; see grouped_gemm.cu.
void LaunchGroupedGemm(bool ta, bool tb, const GemmProblem* problems, int64_t count, float alpha,
                       float beta, GemmMath math, cudaStream_t stream);

// A padded batch's block: a [rows, cols] matrix at data (BF16 bits or FP32 words), leading dim ld.
struct PaddedBlock {
  const void* data;
  int64_t rows, cols, ld;
};
// dst = count dense [rows, cols] matrices (BF16 when dst_bf16, rounded to nearest even; else FP32), the
// i-th holding block i (blocks: a device table) in its top-left corner and zeros elsewhere.
void LaunchPadBlocks(const PaddedBlock* blocks, int64_t count, bool src_bf16, int64_t rows, int64_t cols, void* dst,
                     bool dst_bf16, cudaStream_t stream);
// Block i (FP32, written) = the top-left [rows_i, cols_i] of padded matrix i ([rows, cols] dense) + beta * block i.
void LaunchUnpadBlocks(const float* padded, const PaddedBlock* blocks, int64_t count, int64_t rows, int64_t cols,
                       float beta, cudaStream_t stream);

}  // namespace moe::kernels::cuda
