// Softmax cross-entropy over rows of logits [n, V] (docs/model.md "Batch layout and cross-entropy",
// "Backward: cross-entropy and MTP"): per row the max-subtracted log-sum-exp in FP32 with the
// exponentials summed in FP64; loss_t = lse_t - logit_t[target_t].
// Returns the sum over rows with target >= 0 (rows summed in order, so independent of threads).
// d_logits (optional) = (softmax - onehot) * grad_scale, zero rows for ignored targets; it may
// alias logits (each row reads its target logit before overwriting the row).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace moe::kernels {

double CpuBackend::CrossEntropy(const float* logits, const int32_t* targets, int64_t n,
                                int64_t vocab, float grad_scale, float* d_logits) {
  const auto op_timer = TimeOp("cross_entropy");
  std::vector<double> row_loss(n, 0.0);
#pragma omp parallel for num_threads(num_threads_) \
    schedule(static) if (n * vocab >= cpu_internal::kMinParallelElements)
  for (int64_t t = 0; t < n; ++t) {
    const float* z = logits + t * vocab;
    float* dz = d_logits ? d_logits + t * vocab : nullptr;
    const int32_t y = targets[t];
    if (y < 0) {
      if (dz) std::fill_n(dz, vocab, 0.0f);
      continue;
    }
    MOE_CPU_CHECK(y < vocab, "cross-entropy target out of vocabulary range");
    const float z_target = z[y];  // read before d_logits (which may alias logits) is written
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
    double sum = 0.0;
    if (dz) {
      for (int64_t j = 0; j < vocab; ++j) {
        dz[j] = std::exp(z[j] - mx);
        sum += dz[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < vocab; ++j) dz[j] = dz[j] * inv * grad_scale;
      dz[y] -= grad_scale;
    } else {
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(z[j] - mx);
    }
    const float lse = mx + static_cast<float>(std::log(sum));
    row_loss[t] = static_cast<double>(lse - z_target);
  }
  double total = 0.0;
  for (double l : row_loss) total += l;
  return total;
}

}  // namespace moe::kernels
