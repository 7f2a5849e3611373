// CreateBackend: the CPU backend always; the CUDA one through CreateCudaBackend, which is defined by
// cuda_factory_on.cc or cuda_factory_off.cc depending on --config=cuda (see kernels/BUILD).
#include "kernels/backend_factory.h"

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/peak_flops.h"
#include "kernels/cuda_factory.h"

namespace moe::kernels {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(Device device,
                                                       const BackendOptions& options) {
  if (device == Device::kCuda) return CreateCudaBackend(options);
  return std::unique_ptr<Backend>(new CpuBackend(options.num_threads, options.bf16_matmul));
}

DeviceMemory DeviceMemoryStats(Device device) {
  return device == Device::kCuda ? CudaDeviceMemory() : DeviceMemory{};
}

void ResetDeviceMemoryPeak(Device device) {
  if (device == Device::kCuda) ResetCudaDeviceMemoryPeak();
}

PeakFlops DevicePeakFlops(Device device, double configured_tflops, bool bf16) {
  if (configured_tflops > 0) return {configured_tflops * 1e12, "logging.peak_tflops"};
  if (device == Device::kCuda) return {989e12, "H100/H200 BF16 dense peak per GPU"};
  if (bf16) {
    const bool as_fp32 = EffectiveMatmulPrecision(MatmulPrecision::kBf16) == MatmulPrecision::kFp32;
    return {MeasureMatmulPeak(MatmulPrecision::kBf16),
            as_fp32 ? "CPU FP32 matmul peak (oneDNN 1024x512x1536: BF16 products run as FP32 on this CPU, which "
                      "oneDNN has no BF16 matmul for) measured at start-up; tools/cpu_peak records it"
                    : "CPU BF16 matmul peak (oneDNN 1024x512x1536) measured at start-up; tools/cpu_peak records it"};
  }
  return {MeasureMatmulPeak(MatmulPrecision::kFp32),
          "CPU FP32 matmul peak (oneDNN 1024x512x1536) measured at start-up; tools/cpu_peak records it"};
}

}  // namespace moe::kernels
