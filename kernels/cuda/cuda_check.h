// Fatal checks for CUDA runtime, cuBLAS and launch errors in the CUDA backend. A failing CUDA call
// here is a programmer error or a broken device (a bad pointer, an illegal address, an out-of-memory
// the caller did not plan for), never a data error the trainer could recover from, so it aborts with
// the call, the file and line, and the library's own message (CHECKs are for
// programmer errors only; bad input gets a Status). Kernel launches are asynchronous: MOE_CUDA_CHECK_LAUNCH catches bad launch
// configurations at once; faults inside a kernel surface at the next synchronising call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>

namespace moe::kernels::cuda {

[[noreturn]] inline void CudaFail(const char* what, const char* detail, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: CUDA backend: %s failed: %s\n", file, line, what, detail);
  std::fflush(stderr);
  std::abort();
}

}  // namespace moe::kernels::cuda

#define MOE_CUDA_CHECK(call)                                                                   \
  do {                                                                                         \
    const cudaError_t moe_cuda_err_ = (call);                                                  \
    if (moe_cuda_err_ != cudaSuccess) {                                                        \
      ::moe::kernels::cuda::CudaFail(#call, cudaGetErrorString(moe_cuda_err_), __FILE__, __LINE__); \
    }                                                                                          \
  } while (0)

// After a <<<...>>> launch: configuration errors (too much shared memory, a zero grid) show here.
#define MOE_CUDA_CHECK_LAUNCH() MOE_CUDA_CHECK(cudaGetLastError())

// A precondition on the arguments of a backend call (a bug in the caller).
#define MOE_CUDA_REQUIRE(cond, msg)                                                        \
  do {                                                                                     \
    if (!(cond)) ::moe::kernels::cuda::CudaFail("precondition " #cond, msg, __FILE__, __LINE__); \
  } while (0)
