// CreateBackend: the CPU backend always; the CUDA one through CreateCudaBackend, which is defined by
// cuda_factory_on.cc or cuda_factory_off.cc depending on --config=cuda (see kernels/BUILD).
#include "kernels/backend_factory.h"

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda_factory.h"

namespace moe::kernels {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(Device device,
                                                       const BackendOptions& options) {
  if (device == Device::kCuda) return CreateCudaBackend(options);
  return std::unique_ptr<Backend>(new CpuBackend(options.num_threads));
}

}  // namespace moe::kernels
