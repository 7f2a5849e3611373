#include "trainer/backend_options.h"

namespace moe::trainer {

kernels::BackendOptions BackendOptionsFor(const config::TrainConfig& cfg) {
  kernels::BackendOptions o;
  o.bf16_matmul = cfg.precision() == config::BF16;
  o.cudnn_attention = cfg.cuda().attention() == config::CudaConfig::CUDNN;
  o.cuda_device_memory = cfg.cuda().memory() == config::CudaConfig::DEVICE;
  using ExpertGemm = kernels::BackendOptions::ExpertGemm;
  switch (cfg.cuda().grouped_gemm()) {
    case config::CudaConfig::CUBLAS_GROUPED: o.cuda_expert_gemm = ExpertGemm::kCublasGrouped; break;
    case config::CudaConfig::GROUPED_KERNEL: o.cuda_expert_gemm = ExpertGemm::kKernel; break;
    case config::CudaConfig::CUBLASLT_PADDED: o.cuda_expert_gemm = ExpertGemm::kCublasLtPadded; break;
    default: o.cuda_expert_gemm = ExpertGemm::kCublasLtStreams; break;
  }
  return o;
}

}  // namespace moe::trainer
