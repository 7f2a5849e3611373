// Private to the CUDA backend's .cc files (cuda_backend.cc, cuda_gemm.cc): the cuBLASLt status check,
// pointer alignment and size rounding, and the cached cuBLASLt plan of one GEMM signature.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

namespace moe::kernels {
namespace cuda_internal {

#define MOE_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                         \
    const cublasStatus_t moe_cublas_st_ = (call);                                              \
    if (moe_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                             \
      ::moe::kernels::cuda::CudaFail(#call, cublasLtGetStatusString(moe_cublas_st_), __FILE__, \
                                     __LINE__);                                                \
    }                                                                                          \
  } while (0)

// Largest power of two (<= 256) dividing the address: what cuBLASLt may assume about a pointer.
inline int AlignmentOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int align = 256;
  while (align > 1 && (a % static_cast<uintptr_t>(align)) != 0) align >>= 1;
  return align;
}

inline size_t RoundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }

inline cublasOperation_t Op(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Carves consecutive 256-byte-aligned pieces out of one scratch buffer of Bytes(their sizes).
class ScratchCarver {
 public:
  explicit ScratchCarver(void* base) : at_(static_cast<char*>(base)) {}
  template <typename T>
  T* Take(size_t count) {
    T* p = reinterpret_cast<T*>(at_);
    at_ += RoundUp(count * sizeof(T), 256);
    return p;
  }
  template <typename Sizes>
  static size_t Bytes(const Sizes& sizes) {
    size_t total = 0;
    for (size_t s : sizes) total += RoundUp(s, 256);
    return total;
  }
  static size_t Bytes(std::initializer_list<size_t> sizes) { return Bytes<std::initializer_list<size_t>>(sizes); }

 private:
  char* at_;
};

}  // namespace cuda_internal

// cuBLASLt is column-major; a row-major C[m,n] = op(A) op(B) is the column-major
// C^T[n,m] = op(B)^T op(A)^T, so cuBLASLt's first operand is B and its second is A, each with its
// own transpose flag unchanged (a row-major [r, c] buffer is a column-major [c, r] one).
struct CudaBackend::GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t b_layout = nullptr, a_layout = nullptr, c_layout = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool usable = true;  // false: cuBLASLt has no algorithm for this signature
  ~GemmPlan() {
    if (c_layout) cublasLtMatrixLayoutDestroy(c_layout);
    if (a_layout) cublasLtMatrixLayoutDestroy(a_layout);
    if (b_layout) cublasLtMatrixLayoutDestroy(b_layout);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

}  // namespace moe::kernels
