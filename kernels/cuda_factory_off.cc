// CreateCudaBackend in a binary built without --config=cuda: a clear error instead of a GPU.
#include "absl/status/status.h"
#include "kernels/cuda_factory.h"

namespace moe::kernels {

bool CudaBackendCompiledIn() { return false; }

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions&) {
  return absl::UnimplementedError(
      "device CUDA requested, but this binary was built without the CUDA backend (rebuild with "
      "bazel build --config=cuda)");
}

DeviceMemory CudaDeviceMemory() { return {}; }

void ResetCudaDeviceMemoryPeak() {}

}  // namespace moe::kernels
