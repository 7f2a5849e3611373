// MeasureGemmFlops: times repeated square cblas_sgemm calls.
#include "kernels/cpu/peak_flops.h"

#include <cblas.h>

#include <chrono>
#include <vector>

namespace moe::kernels {

double MeasureGemmFlops(int64_t n, double min_seconds) {
  if (n <= 0) return 0.0;
  const size_t size = static_cast<size_t>(n * n);
  std::vector<float> a(size), b(size), c(size, 0.0f);
  for (size_t i = 0; i < size; ++i) {
    a[i] = static_cast<float>(i % 7) * 0.125f - 0.375f;
    b[i] = static_cast<float>(i % 5) * 0.25f - 0.5f;
  }
  const int dim = static_cast<int>(n);
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dim, dim, dim, 1.0f, a.data(), dim,
                b.data(), dim, 0.0f, c.data(), dim);
  };
  run();  // warm-up: thread pool start, page faults
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  int64_t calls = 0;
  double elapsed = 0.0;
  do {
    run();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  const double flops_per_call =
      2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  return flops_per_call * static_cast<double>(calls) / elapsed;
}

}  // namespace moe::kernels
