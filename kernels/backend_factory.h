// Picks the op backend at run time (docs/architecture.md "Backends"): the config's `device` chooses CPU
// or CUDA, while whether the CUDA backend exists in this binary was chosen at build time by Bazel
// (--config=cuda compiles kernels/cuda in; without it, asking for CUDA is a clear error, not an
// #ifdef at the call site).
//
// Pointer convention: a CPU backend takes host pointers, a CUDA backend device pointers; the caller
// owns the buffers and must allocate them where the chosen backend expects them. Creating a CUDA
// backend switches the process's memory space to CUDA unified memory (base/buffer.h,
// kernels/cuda/unified_memory.h), so every Buffer allocated afterwards is reachable by both the
// host and the GPU; Buffers allocated before keep their host memory.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace moe::kernels {

enum class Device { kCpu, kCuda };

struct BackendOptions {
  int num_threads = 0;       // CPU: OpenMP/OpenBLAS threads (0 = every core)
  int cuda_device = 0;       // CUDA: device ordinal
  bool bf16_matmul = false;  // GEMMs on BF16 operands with FP32 accumulation (BF16 mode)
  bool cudnn_attention = true;  // CUDA, BF16 mode: cuDNN's fused attention (false: the built-in kernel)
  bool cuda_device_memory = false;  // CUDA: new tensors in device memory, not managed (unified_memory.h)
  // CUDA: the routed experts' products (kernels/cuda/cuda_backend.h GroupedGemmImpl).
  enum class ExpertGemm { kCublasLtStreams, kCublasGrouped, kCublasLtPadded, kKernel };
  ExpertGemm cuda_expert_gemm = ExpertGemm::kCublasLtStreams;
};

// True when this binary holds the CUDA backend (built with --config=cuda).
bool CudaBackendCompiledIn();

// The backend for `device`. Errors: CUDA requested in a binary built without it (Unimplemented,
// naming the build flag), or the CUDA backend failed to start (no device, driver too old).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(Device device,
                                                       const BackendOptions& options);

// One device's MFU denominator (FLOP/s) and where it came from: `configured_tflops` when > 0 (the
// config's logging.peak_tflops, e.g. what tools/cpu_peak measured); else on CUDA 989 TFLOP/s
// (H100/H200 SXM BF16 dense), on the CPU oneDNN's matmul peak at the run's precision (BF16 inputs for
// `bf16` runs, FP32 on CPUs without a oneDNN BF16 matmul, where their products run as FP32) measured
// now, on the calling thread's OpenMP thread count.
struct PeakFlops {
  double flops = 0;
  std::string source;
};
PeakFlops DevicePeakFlops(Device device, double configured_tflops, bool bf16);

// The device memory the backend's tensors take, for metrics: on CUDA the unified-memory cache's
// blocks (kernels/cuda/unified_memory.h); on the CPU nothing is tracked. `peak_bytes` is the
// high-water mark since the last ResetDeviceMemoryPeak (e.g. at the start of a step).
struct DeviceMemory {
  bool tracked = false;
  double in_use_bytes = 0, peak_bytes = 0, reserved_bytes = 0;
};
DeviceMemory DeviceMemoryStats(Device device);
void ResetDeviceMemoryPeak(Device device);

}  // namespace moe::kernels
