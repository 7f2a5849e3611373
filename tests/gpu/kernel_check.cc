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
// differs (norm statistics, softmax sums, GEMM, attention) get 1e-5 .. 1e-4; BF16 GEMM modes get FP32
// operands and are compared with the CPU's FP32 GEMM of their BF16 roundings (nearest even), so the
// rounding is checked and only the accumulation order may differ.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/strings/str_split.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/gpu/check_util.h"
#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

namespace {

// The groups in the order they run; the device check runs each in its own process (--only).
struct GroupEntry {
  const char* name;
  void (Checks::*run)();
};
constexpr GroupEntry kGroups[] = {
    {"elementwise", &Checks::Elementwise},   {"data_movement", &Checks::DataMovement},
    {"unified_memory", &Checks::UnifiedMemory}, {"rows", &Checks::Rows},
    {"rmsnorm", &Checks::RmsNorm},           {"rope", &Checks::Rope},
    {"router", &Checks::Router},             {"cross_entropy", &Checks::CrossEntropy},
    {"gemm", &Checks::Gemm},                 {"grouped_gemm", &Checks::GroupedGemm},
    {"attention", &Checks::Attention},       {"perf", &Checks::Perf},
};

bool IsPerf(const GroupEntry& g) { return std::string(g.name) == "perf"; }

}  // namespace

int Checks::Run() {
  for (const GroupEntry& g : kGroups) {
    if (IsPerf(g) && !opt_.perf) continue;
    if (!opt_.only.empty() && !absl::c_linear_search(opt_.only, g.name)) continue;
    std::printf("== %s\n", g.name);
    std::fflush(stdout);
    (this->*g.run)();
  }
  std::printf("\n%d checks, %d failed (seed %llu)\n", report_.checks(), report_.failures(),
              static_cast<unsigned long long>(opt_.seed));
  return report_.failures() == 0 ? 0 : 1;
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
      o.only = absl::StrSplit(a.substr(7), ',', absl::SkipEmpty());
    } else if (a == "--list_groups") {
      o.list_groups = true;
    } else {
      std::fprintf(stderr, "usage: %s [--seed=N] [--no_perf] [--only=GROUP[,GROUP...]] [--list_groups]\n",
                   argv[0]);
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
  if (opt.list_groups) {
    for (const GroupEntry& g : kGroups) {
      if (!IsPerf(g) || opt.perf) std::printf("%s\n", g.name);
    }
    return 0;
  }
  for (const std::string& name : opt.only) {
    if (!absl::c_any_of(kGroups, [&](const GroupEntry& g) { return name == g.name; })) {
      std::fprintf(stderr, "kernel_check: no group named '%s' (--list_groups prints them)\n", name.c_str());
      return 2;
    }
  }
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
  std::printf("device: %s, %d SMs, %.1f GiB, cc %d.%d; driver %d, runtime %d, cuBLASLt %zu, "
              "cuDNN %s; seed %llu\n",
              prop.name, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor, driver,
              runtime, cublasLtGetVersion(), moe::kernels::CudnnAttention::LibraryVersion().c_str(),
              static_cast<unsigned long long>(opt.seed));
  moe::kernels::CpuBackend cpu;
  Checks checks(opt, cpu, **gpu);
  return checks.Run();
}
