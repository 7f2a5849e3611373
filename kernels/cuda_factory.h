// Private to backend_factory: the functions whose definitions Bazel swaps with --config=cuda.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"

namespace moe::kernels {

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options);
DeviceMemory CudaDeviceMemory();  // untracked without the CUDA backend
void ResetCudaDeviceMemoryPeak();

}  // namespace moe::kernels
