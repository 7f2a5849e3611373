// Fused softmax cross-entropy over rows of logits [n, V] (kernels/cpu/loss.cc is the twin):
//   lse_t = max_t + log(sum_j exp(z_tj - max_t))   (exponentials summed in FP64)
//   loss_t = lse_t - z_t[target_t];   d_logits = (softmax - onehot) * grad_scale, zero rows for
//   ignored targets (target < 0).
// One block per row, three passes over the row (max; exp and sum, writing the exponentials into
// d_logits; scale). d_logits may alias logits: the target logit is read into a register and every
// element is read (max pass) before any thread writes (barrier between), and in the later passes each
// element is read and written by the same thread. Row losses go to an FP64 array that is summed by
// one block in a fixed order. A target >= V sets *bad_target (the host aborts after the sync).
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/kernels.h"

namespace moe::kernels::cuda {
namespace {

constexpr int kCeThreads = 512;

__global__ void CrossEntropyKernel(const float* logits, const int32_t* __restrict__ targets,
                                   int64_t n, int64_t vocab, float grad_scale, float* d_logits,
                                   double* __restrict__ row_loss, int* __restrict__ bad_target) {
  __shared__ double dscratch[32];
  __shared__ float fscratch[32];
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const float* z = logits + t * vocab;
    float* dz = d_logits != nullptr ? d_logits + t * vocab : nullptr;
    const int32_t y = targets[t];
    if (y < 0 || y >= vocab) {
      if (y >= vocab && threadIdx.x == 0) *bad_target = 1;
      if (dz != nullptr) {
        for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) dz[j] = 0.0f;
      }
      if (threadIdx.x == 0) row_loss[t] = 0.0;
      continue;
    }
    const float z_target = z[y];
    float mx = -__int_as_float(0x7f800000);
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, z[j]);
    mx = BlockMax(mx, fscratch);  // ends with a barrier: every read above precedes any write below
    double sum = 0.0;
    if (dz != nullptr) {
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float e = expf(z[j] - mx);
        dz[j] = e;
        sum += e;
      }
    } else {
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(z[j] - mx);
    }
    sum = BlockSum(sum, dscratch);
    if (dz != nullptr) {
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) dz[j] = dz[j] * inv * grad_scale;
      __syncthreads();  // the owner of column y has scaled it
      if (threadIdx.x == 0) dz[y] -= grad_scale;
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      const float lse = mx + static_cast<float>(log(sum));
      row_loss[t] = static_cast<double>(lse - z_target);
    }
  }
}

}  // namespace

void LaunchCrossEntropy(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                        float grad_scale, float* d_logits, double* row_loss, double* total,
                        int* bad_target, cudaStream_t stream) {
  if (n > 0) {
    MOE_CUDA_REQUIRE(vocab > 0, "CrossEntropy: vocab must be positive");
    const unsigned blocks = static_cast<unsigned>(n < kMaxBlocks * 8 ? n : kMaxBlocks * 8);
    CrossEntropyKernel<<<blocks, kCeThreads, 0, stream>>>(logits, targets, n, vocab, grad_scale,
                                                          d_logits, row_loss, bad_target);
    MOE_CUDA_CHECK_LAUNCH();
  }
  LaunchSumDoubles(row_loss, n, total, stream);
}

}  // namespace moe::kernels::cuda
