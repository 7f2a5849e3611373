// Measures this machine's FP32 GEMM rate, the yardstick for CPU MFU (model FLOPs / peak FLOPs): the
// achievable rate of the GEMM the CPU backend uses (oneDNN matmul), measured in the same process,
// is a fairer peak than a spec-sheet number.
#pragma once

#include <cstdint>

namespace moe::kernels {

// FLOP/s of an n x n x n FP32 oneDNN matmul (2 n^3 FLOPs each), timed over at least min_seconds
// after one warm-up call, with the calling thread's OpenMP thread count (omp_get_max_threads()).
double MeasureGemmFlops(int64_t n = 1024, double min_seconds = 0.3);

}  // namespace moe::kernels
