// Emulation: the one cuBLAS (not cuBLASLt) call kernels/cuda/cuda_gemm.cc makes, cuBLAS's grouped GEMM
// (cublasGemmGroupedBatchedEx), for the whole-model run. With EMU_CUBLASLT=ref (g_emu_cublaslt_reference)
// it is a column-major reference GEMM per problem on the handle's stream, after the checks the real
// library makes (types, transposes, leading dims covering a column); the operand pointer arrays are
// device memory, read when the stream runs. Otherwise it answers CUBLAS_STATUS_NOT_SUPPORTED, and the
// backend says so once and takes its per-expert path.
#pragma once

#include <memory>
#include <vector>

#include "cublasLt.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};
typedef cublasContext* cublasHandle_t;

inline const char* cublasGetStatusString(cublasStatus_t st) { return cublasLtGetStatusString(st); }
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext{};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

inline int64_t g_emu_cublas_grouped_calls = 0;

inline cublasStatus_t cublasGemmGroupedBatchedEx(
    cublasHandle_t handle, const cublasOperation_t transa_array[], const cublasOperation_t transb_array[],
    const int m_array[], const int n_array[], const int k_array[], const void* alpha_array,
    const void* const Aarray[], cudaDataType_t Atype, const int lda_array[], const void* const Barray[],
    cudaDataType_t Btype, const int ldb_array[], const void* beta_array, void* const Carray[],
    cudaDataType_t Ctype, const int ldc_array[], int group_count, const int group_size[],
    cublasComputeType_t compute) {
  if (!g_emu_cublaslt_reference) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (compute != CUBLAS_COMPUTE_32F) return EmuLtError("grouped: compute type not 32F");
  if (Atype != Btype || (Atype != CUDA_R_32F && Atype != CUDA_R_16BF)) return EmuLtError("grouped: A/B types");
  if (Ctype != CUDA_R_32F) return EmuLtError("grouped: C not 32F");
  struct Problem {
    bool ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
  };
  // The host arrays are read now (as the real call does); the pointer arrays when the stream runs.
  std::vector<Problem> problems;
  for (int g = 0; g < group_count; ++g) {
    Problem p{transa_array[g] == CUBLAS_OP_T, transb_array[g] == CUBLAS_OP_T, m_array[g], n_array[g], k_array[g],
              lda_array[g], ldb_array[g], ldc_array[g], static_cast<const float*>(alpha_array)[g],
              static_cast<const float*>(beta_array)[g]};
    if (transa_array[g] == CUBLAS_OP_C || transb_array[g] == CUBLAS_OP_C) return EmuLtError("grouped: op C");
    if (p.m < 0 || p.n < 0 || p.k < 0) return EmuLtError("grouped: negative size");
    if (p.lda < std::max<int64_t>(1, p.ta ? p.k : p.m) || p.ldb < std::max<int64_t>(1, p.tb ? p.n : p.k) ||
        p.ldc < std::max<int64_t>(1, p.m)) {
      return EmuLtError("grouped: ld < rows");
    }
    for (int i = 0; i < group_size[g]; ++i) problems.push_back(p);
  }
  ++g_emu_cublas_grouped_calls;
  EmuEnqueue(handle->stream, [=] {
    for (size_t i = 0; i < problems.size(); ++i) {
      const Problem& p = problems[i];
      const void* A = Aarray[i];
      const void* B = Barray[i];
      float* C = static_cast<float*>(Carray[i]);
      for (int64_t j = 0; j < p.n; ++j) {
        for (int64_t r = 0; r < p.m; ++r) {
          float acc = 0.0f;
          for (int64_t l = 0; l < p.k; ++l) {
            acc += EmuLtLoad(A, Atype, p.ta ? l + r * p.lda : r + l * p.lda) *
                   EmuLtLoad(B, Btype, p.tb ? j + l * p.ldb : l + j * p.ldb);
          }
          float& c = C[r + j * p.ldc];
          c = p.beta == 0.0f ? p.alpha * acc : p.alpha * acc + p.beta * c;  // beta 0: C not read
        }
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}
