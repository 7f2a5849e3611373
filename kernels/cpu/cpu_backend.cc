// CpuBackend construction: fixes the thread count used by OpenMP loops and oneDNN.
#include "kernels/cpu/cpu_backend.h"

#include <omp.h>

namespace moe::kernels {

CpuBackend::CpuBackend(int num_threads, bool bf16_matmul)
    : num_threads_(num_threads > 0 ? num_threads : omp_get_num_procs()), bf16_matmul_(bf16_matmul) {
  omp_set_num_threads(num_threads_);  // oneDNN's count (and MeasureMatmulPeak's) on this thread
}

}  // namespace moe::kernels
