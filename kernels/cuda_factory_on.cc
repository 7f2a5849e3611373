// CreateCudaBackend in a binary built with --config=cuda: the real CudaBackend, after which new
// Buffers live in CUDA memory: unified (host and kernels reach the same tensors) or, with
// options.cuda_device_memory, device memory only.
#include <utility>

#include "base/buffer.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/unified_memory.h"
#include "kernels/cuda_factory.h"

namespace moe::kernels {

bool CudaBackendCompiledIn() { return true; }

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options) {
  CudaBackendOptions cuda_options;
  cuda_options.device = options.cuda_device;
  cuda_options.gemm_math = options.bf16_matmul ? GemmMath::kBf16 : GemmMath::kFp32;
  cuda_options.attention = options.cudnn_attention ? AttentionImpl::kCudnn : AttentionImpl::kKernel;
  switch (options.cuda_expert_gemm) {
    case BackendOptions::ExpertGemm::kCublasLtStreams: cuda_options.grouped_gemm = GroupedGemmImpl::kCublasLt; break;
    case BackendOptions::ExpertGemm::kCublasGrouped: cuda_options.grouped_gemm = GroupedGemmImpl::kCublasGrouped; break;
    case BackendOptions::ExpertGemm::kCublasLtPadded: cuda_options.grouped_gemm = GroupedGemmImpl::kCublasLtPadded; break;
    case BackendOptions::ExpertGemm::kKernel: cuda_options.grouped_gemm = GroupedGemmImpl::kKernel; break;
  }
  auto backend = CudaBackend::Create(cuda_options);
  if (!backend.ok()) return backend.status();
  SetCudaMemoryDeviceOnly(options.cuda_device_memory);
  moe::SetMemorySpace(CudaUnifiedMemorySpace());
  return std::unique_ptr<Backend>(std::move(*backend));
}

DeviceMemory CudaDeviceMemory() {
  const UnifiedMemoryStats s = CudaUnifiedMemoryStats();
  return {true, static_cast<double>(s.bytes_in_use), static_cast<double>(s.peak_bytes_in_use),
          static_cast<double>(s.bytes_reserved)};
}

void ResetCudaDeviceMemoryPeak() { ResetCudaUnifiedMemoryPeak(); }

}  // namespace moe::kernels
