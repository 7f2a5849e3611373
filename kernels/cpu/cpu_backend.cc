// CpuBackend construction: fixes the thread count used by OpenMP loops, oneDNN and OpenBLAS.
#include "kernels/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

namespace moe::kernels {

CpuBackend::CpuBackend(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads : omp_get_num_procs()) {
  openblas_set_num_threads(num_threads_);
  omp_set_num_threads(num_threads_);  // oneDNN's count (and MeasureGemmFlops's) on this thread
}

}  // namespace moe::kernels
