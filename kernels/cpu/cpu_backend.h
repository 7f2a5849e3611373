// The CPU backend: oneDNN matmul for every matrix product (Gemm, GroupedGemm, the attention tiles),
// OpenMP loops for everything else. It is the reference every other backend is tested against, so each op
// is written for clarity first and determinism always: no result depends on thread scheduling
// (reductions run in a fixed order, and scatters are partitioned by destination column, never
// raced).
//
// A CpuBackend is meant to be driven by one thread at a time (the OpenMP count oneDNN follows is the
// calling thread's; calls adjust it). The
// implementation is split by op family (gemm.cc, data_movement.cc, elementwise.cc, norm.cc,
// rope.cc, attention.cc, router.cc, loss.cc, optimizer.cc); the shapes and accumulation rules are
// those of backend.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/backend.h"

namespace moe::kernels {

// Adds the wall time of its scope, one call and `flops` to an OpTime.
class ScopedOpTime {
 public:
  ScopedOpTime(OpTime* t, double flops) : t_(t), start_(std::chrono::steady_clock::now()) {
    t_->calls += 1;
    t_->flops += flops;
  }
  ~ScopedOpTime() {
    t_->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  OpTime* t_;
  std::chrono::steady_clock::time_point start_;
};

class CpuBackend final : public Backend {
 public:
  // num_threads = 0 uses every core. OpenMP loops and oneDNN use num_threads(). bf16_matmul: Gemm and
  // GroupedGemm round their operands to BF16 (BF16 mode; the attention tiles stay FP32).
  explicit CpuBackend(int num_threads = 0, bool bf16_matmul = false);

  int num_threads() const { return num_threads_; }

  // Wall time of the matrix products and attention ("gemm", "grouped_gemm", "attention_fwd",
  // "attention_bwd"), always on: how much of a step is GEMM. With EnableOpTimes(true), every other op
  // too, under the CUDA backend's names (a clock read and a map lookup per call).
  void EnableOpTimes(bool on) override { time_all_ops_ = on; }
  std::map<std::string, OpTime> OpTimes() override { return op_times_; }
  void ResetOpTimes() override { op_times_.clear(); }

  void Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) override;
  void GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                   float alpha, float beta) override;

  void CopyBf16(const uint16_t* src, uint16_t* dst, int64_t n) override;
  void Copy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
              int64_t cols, bool accumulate) override;
  void Fill(float* x, int64_t n, float value) override;
  void RowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out) override;
  void ScaleRows(float* x, const float* s, int64_t rows, int64_t dim) override;

  void RoundToBf16(float* x, int64_t n) override;
  void PackBf16(const float* x, int64_t n, uint16_t* bits) override;
  void RoundAndPackBf16(float* x, int64_t n, uint16_t* bits) override;
  void UnpackBf16(const uint16_t* bits, int64_t n, float* x) override;
  void Add(const float* a, float* y, int64_t n) override;
  void AddAndRoundToBf16(const float* a, float* y, int64_t n) override;
  void Scale(float* x, int64_t n, float s) override;
  double SumSquares(const float* x, int64_t n) override;

  void EmbeddingForward(const int32_t* ids, int64_t n, const float* table, const uint16_t* table_bf16,
                        int64_t dim, float* out) override;
  void EmbeddingBackward(const int32_t* ids, int64_t n, const float* d_out, int64_t dim,
                         float* d_table) override;

  void RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                      bool round_normalized, float* y, float* rstd) override;
  void RmsNormBackward(ValuesIn x, const float* w, const float* rstd, const float* dy,
                       int64_t rows, int64_t dim, float* dx, float* dw) override;

  void RopeForward(const RopeView& v) override;
  void RopeBackward(const RopeView& v) override;

  void SwigluForward(const float* a, const float* c, ValuesOut m, int64_t n) override;
  void SwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc,
                      int64_t n) override;

  void AttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        float* out, float* lse) override;
  void AttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v,
                         const float* out, const float* lse, const float* d_out, float* dq,
                         float* dk, float* dv) override;

  void RouterForward(const RouterParams& p, const float* logits, const float* bias, int64_t n,
                     float* scores, int32_t* selected, float* weights) override;
  void RouterBackward(const RouterParams& p, const float* scores, const int32_t* selected,
                      const float* d_weights, const float* d_scores_extra, int64_t n,
                      float* d_logits) override;

  void BalanceStats(const float* scores, int64_t n, int64_t num_experts, int64_t top_k, int64_t first_token,
                    int64_t group_len, int64_t groups, double* stats) override;
  void BalanceLossGrad(const float* scores, int64_t n, int64_t num_experts, int64_t first_token,
                       int64_t group_len, const float* f, double coef, float* d_scores) override;

  void SortByExpert(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts, int64_t capacity,
                    int32_t* counts, int32_t* row_token, int32_t* row_slot) override;

  double CrossEntropy(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                      float grad_scale, float* d_logits) override;

  void CopyFromHost(const void* src, size_t bytes, void* dst) override;
  void CopyToHost(const void* src, size_t bytes, void* dst) override;

  void GatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim,
                  float* dst) override;
  void ScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                      int64_t dim, float* dst) override;
  void GatherRowBlocks(const float* src, const std::vector<RowBlock>& blocks, int64_t dim, float* dst) override;

  void AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
             int64_t n, const AdamWWorking& working) override;

 private:
  // Times the caller's scope into op_times_[name] while every op is timed.
  std::optional<ScopedOpTime> TimeOp(const char* name) {
    if (!time_all_ops_) return std::nullopt;
    return std::optional<ScopedOpTime>(std::in_place, &op_times_[name], 0.0);
  }

  std::map<std::string, OpTime> op_times_;
  bool time_all_ops_ = false;
  int num_threads_;
  bool bf16_matmul_;
};

}  // namespace moe::kernels
