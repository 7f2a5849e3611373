// The CPU's matrix-product peak, the yardstick for CPU MFU (model FLOPs / peak FLOPs): the achievable
// rate of the matmul the CPU backend uses (oneDNN), at the run's precision, is a fairer peak than a
// spec-sheet number. tools/cpu_peak measures it once so that a run can record it in
// logging.peak_tflops; without that the trainer measures it at start-up.
#pragma once

#include <cstdint>

namespace moe::kernels {

enum class MatmulPrecision {
  kFp32,  // FP32 inputs, FP32 output
  kBf16,  // BF16 inputs, FP32 output (FP32 accumulation), what a BF16 run can reach at best
};

// The precision the CPU backend's matrix products run at when `requested` is asked for: BF16 runs as
// FP32 (the FP32 matmul on BF16-rounded operands) on CPUs where oneDNN has no BF16 matmul (below
// AVX-512: AMD Zen 2/3, older Intel).
MatmulPrecision EffectiveMatmulPrecision(MatmulPrecision requested);

// FLOP/s of an m x k by k x n oneDNN matmul (2 m n k FLOPs) at EffectiveMatmulPrecision(precision)
// (saying so in a line on stderr when BF16 is timed as FP32), best of `trials` timings of at least
// min_seconds each after one warm-up call, on the calling thread's OpenMP thread count
// (omp_get_max_threads()). The default shape is the one the CPU-speed targets are stated for.
double MeasureMatmulPeak(MatmulPrecision precision, int64_t m = 1024, int64_t k = 512, int64_t n = 1536,
                         int trials = 3, double min_seconds = 0.2);

}  // namespace moe::kernels
