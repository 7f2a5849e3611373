// Gemm and GroupedGemm on OpenBLAS (row-major cblas_sgemm, FP32 accumulation).
//
// GroupedGemm (the routed experts: one problem per local expert, sizes set by the routing) splits
// the work two ways: problems big enough to keep every core busy run one after another with
// OpenBLAS's own threads; the rest run side by side, one OpenMP thread each with single-threaded
// OpenBLAS, largest first. Each C is written by exactly one call, so the result does not depend on
// the schedule.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {
namespace {

CBLAS_TRANSPOSE ToCblas(Transpose t) { return t == Transpose::kYes ? CblasTrans : CblasNoTrans; }

blasint ToBlasInt(int64_t v) {
  MOE_CPU_CHECK(v >= 0 && v <= INT_MAX,
                "GEMM dimension or leading dimension out of BLAS int range");
  return static_cast<blasint>(v);
}

// C[m,n] = alpha * op(A) op(B) + beta * C; empty problems are handled here because BLAS rejects
// leading dimensions of 0 and, with k == 0, may leave NaNs of an uninitialised C in place.
void RunOne(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) {
  if (p.m <= 0 || p.n <= 0) return;
  if (p.k <= 0) {
    for (int64_t i = 0; i < p.m; ++i) {
      float* row = p.c + i * p.ldc;
      if (beta == 0.0f) {
        std::fill(row, row + p.n, 0.0f);
      } else {
        for (int64_t j = 0; j < p.n; ++j) row[j] *= beta;
      }
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, ToCblas(ta), ToCblas(tb), ToBlasInt(p.m), ToBlasInt(p.n),
              ToBlasInt(p.k), alpha, p.a, ToBlasInt(p.lda), p.b, ToBlasInt(p.ldb), beta, p.c,
              ToBlasInt(p.ldc));
}

double Work(const GemmProblem& p) {
  if (p.m <= 0 || p.n <= 0) return 0.0;
  return static_cast<double>(p.m) * static_cast<double>(p.n) *
         static_cast<double>(std::max<int64_t>(p.k, 1));
}

}  // namespace

void CpuBackend::Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) {
  ScopedOpTime timer(&op_times_["gemm"], GemmFlops(p));
  cpu_internal::UseBlasThreads(num_threads_);
  RunOne(ta, tb, p, alpha, beta);
}

void CpuBackend::GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                             float alpha, float beta) {
  double flops = 0;
  for (const GemmProblem& p : problems) flops += GemmFlops(p);
  ScopedOpTime timer(&op_times_["grouped_gemm"], flops);
  // Non-empty problems, largest first (ties by index, so the order is fixed).
  std::vector<int64_t> order;
  double total = 0.0;
  for (int64_t i = 0; i < static_cast<int64_t>(problems.size()); ++i) {
    const double w = Work(problems[i]);
    if (w > 0.0) {
      order.push_back(i);
      total += w;
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return Work(problems[x]) > Work(problems[y]); });

  // A problem holding at least 1/threads of the work runs alone on all threads.
  size_t num_big = 0;
  if (num_threads_ == 1 || order.size() == 1) {
    num_big = order.size();
  } else {
    while (num_big < order.size() && Work(problems[order[num_big]]) * num_threads_ >= total)
      ++num_big;
  }
  cpu_internal::UseBlasThreads(num_threads_);
  for (size_t i = 0; i < num_big; ++i) RunOne(ta, tb, problems[order[i]], alpha, beta);

  const int64_t rest = static_cast<int64_t>(order.size() - num_big);
  if (rest == 0) return;
  cpu_internal::UseBlasThreads(1);
#pragma omp parallel for num_threads(num_threads_) schedule(dynamic, 1)
  for (int64_t i = 0; i < rest; ++i) RunOne(ta, tb, problems[order[num_big + i]], alpha, beta);
  cpu_internal::UseBlasThreads(num_threads_);
}

}  // namespace moe::kernels
