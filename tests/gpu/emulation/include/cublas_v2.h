// Emulation: the one cuBLAS (not cuBLASLt) call kernels/cuda/cuda_gemm.cc makes, cuBLAS's grouped GEMM
// (cublasGemmGroupedBatchedEx), for the whole-model run. With EMU_CUBLASLT=ref (g_emu_cublaslt_reference)
// it is a column-major reference GEMM per problem on the handle's stream, after the checks the real
// library makes (types, transposes, leading dims covering a column); the operand pointer arrays are
// device memory, read when the stream runs. Otherwise it answers CUBLAS_STATUS_NOT_SUPPORTED, and the
// backend says so once and takes its per-expert path.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
  // The documented type table: with COMPUTE_32F, A, B and C all 16BF, all 16F or all 32F; with
  // COMPUTE_32F_FAST_TF32, all 32F. Anything else (BF16 A/B with an FP32 C among them) is refused, as the
  // real library answers NOT_SUPPORTED; here it counts as an error, so a run that tries it fails.
  const bool tf32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  if (compute != CUBLAS_COMPUTE_32F && !tf32) return EmuLtError("grouped: compute type");
  if (Atype != Btype || Ctype != Atype) return EmuLtError("grouped: A, B and C types differ (not in cuBLAS's table)");
  if (Atype != CUDA_R_32F && (tf32 || Atype != CUDA_R_16BF)) return EmuLtError("grouped: type not emulated");
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
  // TF32 math reads each FP32 operand rounded to 10 mantissa bits (nearest, ties away, as cvt.rna.tf32).
  auto load = [tf32](const void* p, cudaDataType_t type, int64_t i) {
    float v = EmuLtLoad(p, type, i);
    if (!tf32 || !std::isfinite(v)) return v;
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    u = (u + 0x1000u) & ~0x1fffu;
    std::memcpy(&v, &u, sizeof v);
    return v;
  };
  EmuEnqueue(handle->stream, [=] {
    for (size_t i = 0; i < problems.size(); ++i) {
      const Problem& p = problems[i];
      const void* A = Aarray[i];
      const void* B = Barray[i];
      void* C = Carray[i];
      // 16-bit types and TF32 math need aligned pointers: ideally 16 bytes, which is what is asked here.
      if ((tf32 || Atype != CUDA_R_32F) &&
          ((reinterpret_cast<uintptr_t>(A) | reinterpret_cast<uintptr_t>(B) | reinterpret_cast<uintptr_t>(C)) & 15)) {
        std::fprintf(stderr, "EMU cuBLAS: grouped problem %zu has a pointer not 16-byte aligned (misaligned address)\n", i);
        std::abort();
      }
      for (int64_t j = 0; j < p.n; ++j) {
        for (int64_t r = 0; r < p.m; ++r) {
          float acc = 0.0f;
          for (int64_t l = 0; l < p.k; ++l) {
            acc += load(A, Atype, p.ta ? l + r * p.lda : r + l * p.lda) * load(B, Btype, p.tb ? j + l * p.ldb : l + j * p.ldb);
          }
          const int64_t at = r + j * p.ldc;
          // beta 0: C is not read
          const float c = p.beta == 0.0f ? p.alpha * acc : p.alpha * acc + p.beta * EmuLtLoad(C, Ctype, at);
          if (Ctype == CUDA_R_16BF) {
            static_cast<__nv_bfloat16*>(C)[at] = __float2bfloat16_rn(c);
          } else {
            static_cast<float*>(C)[at] = c;
          }
        }
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}
