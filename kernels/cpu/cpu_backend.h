// The CPU backend: OpenBLAS for matrix products, OpenMP loops for everything else. It is the
// reference every other backend is tested against, so each op is written for clarity first and
// determinism always: no result depends on thread scheduling (reductions run in a fixed order, and
// scatters are partitioned by destination column, never raced).
//
// A CpuBackend is meant to be driven by one thread at a time (OpenBLAS's thread count is process
// state that calls adjust). The implementation is split by op family (gemm.cc, elementwise.cc,
// norm.cc, rope.cc, attention.cc, router.cc, loss.cc, optimizer.cc); the shapes and accumulation
// rules are those of backend.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace moe::kernels {

// Adds the wall time of its scope to a counter.
class ScopedSeconds {
 public:
  explicit ScopedSeconds(double* total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~ScopedSeconds() {
    *total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  double* total_;
  std::chrono::steady_clock::time_point start_;
};

class CpuBackend final : public Backend {
 public:
  // num_threads = 0 uses every core. OpenMP loops and OpenBLAS both use num_threads().
  explicit CpuBackend(int num_threads = 0);

  int num_threads() const { return num_threads_; }

  // Wall time spent in the matrix-product ops since construction (or the last reset), for
  // benchmarks: how much of a step is GEMM.
  struct OpSeconds {
    double gemm = 0, grouped_gemm = 0, attention = 0;
  };
  const OpSeconds& op_seconds() const { return op_seconds_; }
  void ResetOpSeconds() { op_seconds_ = {}; }

  void Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) override;
  void GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                   float alpha, float beta) override;

  void RoundToBf16(float* x, int64_t n) override;
  void Add(const float* a, float* y, int64_t n) override;
  void Scale(float* x, int64_t n, float s) override;
  double SumSquares(const float* x, int64_t n) override;

  void EmbeddingForward(const int32_t* ids, int64_t n, const float* table, int64_t dim,
                        float* out) override;
  void EmbeddingBackward(const int32_t* ids, int64_t n, const float* d_out, int64_t dim,
                         float* d_table) override;

  void RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                      bool round_normalized, float* y, float* rstd) override;
  void RmsNormBackward(const float* x, const float* w, const float* rstd, const float* dy,
                       int64_t rows, int64_t dim, float* dx, float* dw) override;

  void RopeForward(const RopeView& v) override;
  void RopeBackward(const RopeView& v) override;

  void SwigluForward(const float* a, const float* c, float* m, int64_t n) override;
  void SwigluBackward(const float* a, const float* c, const float* dm, float* da, float* dc,
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

  double CrossEntropy(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                      float grad_scale, float* d_logits) override;

  void GatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim,
                  float* dst) override;
  void ScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                      int64_t dim, float* dst) override;

  void AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
             int64_t n) override;

 private:
  OpSeconds op_seconds_;
  int num_threads_;
};

}  // namespace moe::kernels
