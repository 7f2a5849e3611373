// cpu_peak: this machine's CPU matrix-product peak, the denominator of CPU MFU, measured once.
//
//   cpu_peak [--threads=N]      (default: every core; give the threads each rank will run)
//
// Times oneDNN's matmul (the CPU backend's) on 1024x512 by 512x1536, FP32 and BF16 inputs with FP32
// output, best of three, on N OpenMP threads, and prints one JSON line:
//   {"threads": N, "fp32_gflops": ..., "bf16_gflops": ..., "bf16_matmul": true, "isa": "..."}
// (bf16_matmul false: oneDNN has no BF16 matmul on this CPU, below AVX-512, so BF16 products run as
// FP32 and bf16_gflops is the FP32 matmul's), then the --set to record the peak for a run (per rank, in
// TFLOP/s): logging.peak_tflops, BF16 or FP32 after the run's precision. Run it on a quiet machine: a peak measured while other work runs is
// too low and flatters MFU.
#include <omp.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "kernels/cpu/peak_flops.h"
#include "oneapi/dnnl/dnnl.hpp"

ABSL_FLAG(int32_t, threads, 0, "OpenMP threads (0: every core)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("CPU matmul peak (oneDNN, FP32 and BF16) for logging.peak_tflops.\n"
                               "  cpu_peak [--threads=N]");
  absl::ParseCommandLine(argc, argv);
  const int threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : omp_get_num_procs();
  omp_set_num_threads(threads);
  using moe::kernels::MatmulPrecision;
  const double fp32 = moe::kernels::MeasureMatmulPeak(MatmulPrecision::kFp32);
  const double bf16 = moe::kernels::MeasureMatmulPeak(MatmulPrecision::kBf16);
  const bool bf16_matmul =
      moe::kernels::EffectiveMatmulPrecision(MatmulPrecision::kBf16) == MatmulPrecision::kBf16;
  const char* isa = "unknown";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    default: break;
  }
  std::printf("{\"threads\": %d, \"fp32_gflops\": %.1f, \"bf16_gflops\": %.1f, \"bf16_matmul\": %s, "
              "\"isa\": \"%s\"}\n",
              threads, fp32 * 1e-9, bf16 * 1e-9, bf16_matmul ? "true" : "false", isa);
  std::printf("record it for a run with %d threads per rank: --set logging.peak_tflops=%.4f (BF16 runs%s) or "
              "--set logging.peak_tflops=%.4f (FP32 runs)\n",
              threads, bf16 * 1e-12, bf16_matmul ? "" : ", whose products run as FP32 on this CPU", fp32 * 1e-12);
  return 0;
}
