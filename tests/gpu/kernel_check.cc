// kernel_check: the GPU device check. For every op of kernels/backend.h it draws fresh random inputs
// (seeded by --seed, printed), runs the CPU twin (kernels/cpu CpuBackend, the reference) and the CUDA
// backend on copies, poisons every written output with NaN first (so an element the kernel forgot
// shows up), and compares: one PASS/FAIL line per check with the relative L2 error, the largest
// absolute error and how many elements differ in any bit. Then (unless --no_perf) it times the
// heavy ops at small_1b training shapes (micro-batch 8 x 4096 tokens, hidden 1024, 16 heads, qk 96,
// v 64, 64 experts top-6, vocab 32768) and prints TFLOP/s or GB/s.
//
// Runs without Bazel, MPI or a network: tests/gpu/run_device_check.sh sets the library path and
// calls it. Exit status: 0 if every check passed, 1 otherwise.
//
// The checks live in kernel_check_<family>.cc (see kernel_check.h); this file holds main, the flags
// and the group list, in the order the groups run.
//
// Tolerances (relative L2 against the CPU): ops that evaluate the same expressions in the same order
// must match to ~1e-6 (elementwise, rows, RoPE, AdamW, router weights); reductions whose order
// differs (norm statistics, softmax sums, GEMM, attention) get 1e-5 .. 1e-4; BF16 GEMM modes are fed
// BF16-valued operands, so only the accumulation order differs from the CPU's FP32 GEMM.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/gpu/check_util.h"
#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

int Checks::Run() {
  Group("elementwise", [this] { Elementwise(); });
  Group("data_movement", [this] { DataMovement(); });
  Group("unified_memory", [this] { UnifiedMemory(); });
  Group("rows", [this] { Rows(); });
  Group("rmsnorm", [this] { RmsNorm(); });
  Group("rope", [this] { Rope(); });
  Group("router", [this] { Router(); });
  Group("cross_entropy", [this] { CrossEntropy(); });
  Group("gemm", [this] { Gemm(); });
  Group("grouped_gemm", [this] { GroupedGemm(); });
  Group("attention", [this] { Attention(); });
  if (opt_.perf) Group("perf", [this] { Perf(); });
  std::printf("\n%d checks, %d failed (seed %llu)\n", report_.checks(), report_.failures(),
              static_cast<unsigned long long>(opt_.seed));
  return report_.failures() == 0 ? 0 : 1;
}

void Checks::Group(const char* name, const std::function<void()>& fn) {
  if (!opt_.only.empty() && std::string(name).find(opt_.only) == std::string::npos) return;
  std::printf("== %s\n", name);
  std::fflush(stdout);
  fn();
}

namespace {

Options Parse(int argc, char** argv) {
  Options o;
  o.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--seed=", 0) == 0) {
      o.seed = std::strtoull(a.c_str() + 7, nullptr, 10);
    } else if (a == "--no_perf") {
      o.perf = false;
    } else if (a.rfind("--only=", 0) == 0) {
      o.only = a.substr(7);
    } else {
      std::fprintf(stderr, "usage: %s [--seed=N] [--no_perf] [--only=GROUP]\n", argv[0]);
      std::exit(2);
    }
  }
  return o;
}

}  // namespace
}  // namespace moe::gpucheck

int main(int argc, char** argv) {
  using namespace moe::gpucheck;
  const Options opt = Parse(argc, argv);
  moe::kernels::CudaBackendOptions bo;
  auto gpu = moe::kernels::CudaBackend::Create(bo);
  if (!gpu.ok()) {
    std::fprintf(stderr, "kernel_check: %s\n", gpu.status().ToString().c_str());
    return 2;
  }
  cudaDeviceProp prop;
  MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("device: %s, %d SMs, %.1f GiB, cc %d.%d; driver %d, runtime %d, cuBLASLt %zu; "
              "seed %llu\n",
              prop.name, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor, driver,
              runtime, cublasLtGetVersion(), static_cast<unsigned long long>(opt.seed));
  moe::kernels::CpuBackend cpu;
  Checks checks(opt, cpu, **gpu);
  return checks.Run();
}
