// Emulation: the part of cuBLASLt that kernels/cuda/cuda_backend.cc uses (for the whole-model run,
// run_model_emulation.sh). Two modes, chosen by g_emu_cublaslt_reference (its EMU_CUBLASLT):
//   off (default, EMU_CUBLASLT=none): cublasLtMatmulAlgoGetHeuristic finds no algorithm
//       (CUBLAS_STATUS_NOT_SUPPORTED, count 0, as the real library answers then), so CudaBackend::Gemm
//       takes its documented fallback: the built-in grouped GEMM kernel with one problem.
//   on (EMU_CUBLASLT=ref): the heuristic offers one algorithm (cublasLtMatmulAlgoCheck accepts it for
//       any consistent shape) and cublasLtMatmul is a plain
//       column-major reference GEMM on the stream (FP32 or BF16 operands, FP32 accumulation in k
//       order), after checking what the real library would reject or mis-handle: descriptor types,
//       the shapes of op(A), op(B), C and D agreeing, leading dims covering a column, attribute sizes,
//       and every pointer at least as aligned as the preference promised. This checks the backend's
//       row-major -> column-major mapping (operand swap, transposes, layouts, BF16 packing) that the
//       GPU's production path relies on.
// Descriptors are small host structs; the handle is a dummy.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "cuda_bf16.h"
#include "emu.h"

typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef enum {
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4
} cublasLtMatmulDescAttributes_t;
typedef enum {
  CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
  CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6
} cublasLtMatrixLayoutAttribute_t;
typedef enum {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
} cublasLtMatmulPreferenceAttributes_t;

struct cublasLtContext { int unused; };
typedef cublasLtContext* cublasLtHandle_t;
struct EmuLtDesc {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
};
typedef EmuLtDesc* cublasLtMatmulDesc_t;
struct EmuLtLayout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;  // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT
  int64_t stride = 0;  // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, in elements
};
typedef EmuLtLayout* cublasLtMatrixLayout_t;
struct EmuLtPref {
  uint64_t max_workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D (the library assumes 256 if not told)
};
typedef EmuLtPref* cublasLtMatmulPreference_t;
typedef struct {
  uint64_t data[8];  // here: the preference's four minimum alignments and its workspace limit
} cublasLtMatmulAlgo_t;
typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

inline bool g_emu_cublaslt_reference = false;
inline int64_t g_emu_cublaslt_matmuls = 0;  // reference GEMMs run
inline int64_t g_emu_cublaslt_batched = 0;  // of which strided batches
inline int64_t g_emu_cublaslt_errors = 0;   // calls the real library would reject or mis-handle
inline int64_t g_emu_cublaslt_heuristics = 0;  // algorithm searches answered
inline int64_t g_emu_cublaslt_checks = 0;      // algorithms confirmed for another shape (AlgoCheck)

inline size_t cublasLtGetVersion() { return 0; }
inline const char* cublasLtGetStatusString(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_(emulated error)";
  }
}
inline cublasStatus_t EmuLtError(const char* what) {
  std::fprintf(stderr, "EMU cuBLASLt: %s\n", what);
  ++g_emu_cublaslt_errors;
  return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext{0};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute,
                                               cudaDataType_t scale) {
  *d = new EmuLtDesc{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                                     cublasLtMatmulDescAttributes_t attr,
                                                     const void* buf, size_t bytes) {
  if (buf == nullptr || bytes != sizeof(int32_t)) return EmuLtError("MatmulDescSetAttribute size");
  int32_t v;
  std::memcpy(&v, buf, sizeof v);
  if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return EmuLtError("MatmulDescSetAttribute op");
  if (attr == CUBLASLT_MATMUL_DESC_TRANSA) {
    d->trans_a = v;
  } else if (attr == CUBLASLT_MATMUL_DESC_TRANSB) {
    d->trans_b = v;
  } else {
    return EmuLtError("MatmulDescSetAttribute: attribute not emulated");
  }
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
  *l = new EmuLtLayout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
// A strided batch: the count (int32_t) and the offset between matrices (int64_t elements), as the real
// library takes them.
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                       const void* buf, size_t bytes) {
  if (buf == nullptr) return EmuLtError("MatrixLayoutSetAttribute: null buffer");
  if (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) {
    if (bytes != sizeof(int32_t)) return EmuLtError("LAYOUT_BATCH_COUNT size");
    std::memcpy(&l->batch, buf, bytes);
    return l->batch >= 1 ? CUBLAS_STATUS_SUCCESS : EmuLtError("LAYOUT_BATCH_COUNT < 1");
  }
  if (attr == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) {
    if (bytes != sizeof(int64_t)) return EmuLtError("LAYOUT_STRIDED_BATCH_OFFSET size");
    std::memcpy(&l->stride, buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  return EmuLtError("MatrixLayoutSetAttribute: attribute not emulated");
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new EmuLtPref{};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t attr,
                                                           const void* buf, size_t bytes) {
  if (buf == nullptr) return EmuLtError("MatmulPreferenceSetAttribute: null buffer");
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    if (bytes != sizeof(uint64_t)) return EmuLtError("PREF_MAX_WORKSPACE_BYTES size");
    std::memcpy(&p->max_workspace, buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
      attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
    if (bytes != sizeof(uint32_t)) return EmuLtError("PREF_MIN_ALIGNMENT size");
    std::memcpy(&p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  return EmuLtError("MatmulPreferenceSetAttribute: attribute not emulated");
}

// Shapes of a column-major product D[m,n] = op(A)[m,k] op(B)[k,n] (+ C), from the descriptors.
inline cublasStatus_t EmuLtCheck(const EmuLtDesc* d, const EmuLtLayout* a, const EmuLtLayout* b,
                                 const EmuLtLayout* c, const EmuLtLayout* dd, int64_t* m,
                                 int64_t* n, int64_t* k) {
  if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F) {
    return EmuLtError("compute/scale type not 32F");
  }
  if (a->type != b->type || (a->type != CUDA_R_32F && a->type != CUDA_R_16BF)) {
    return EmuLtError("A/B types differ or are neither 32F nor 16BF");
  }
  if (c->type != CUDA_R_32F || dd->type != CUDA_R_32F) return EmuLtError("C/D not 32F");
  *m = static_cast<int64_t>(d->trans_a == CUBLAS_OP_N ? a->rows : a->cols);
  *k = static_cast<int64_t>(d->trans_a == CUBLAS_OP_N ? a->cols : a->rows);
  const int64_t kb = static_cast<int64_t>(d->trans_b == CUBLAS_OP_N ? b->rows : b->cols);
  *n = static_cast<int64_t>(d->trans_b == CUBLAS_OP_N ? b->cols : b->rows);
  if (kb != *k) return EmuLtError("op(A) columns != op(B) rows");
  if (static_cast<int64_t>(c->rows) != *m || static_cast<int64_t>(c->cols) != *n ||
      dd->rows != c->rows || dd->cols != c->cols) {
    return EmuLtError("C/D shape != op(A) rows x op(B) columns");
  }
  for (const EmuLtLayout* l : {a, b, c, dd}) {
    if (l->ld < static_cast<int64_t>(l->rows) || l->ld < 1) return EmuLtError("ld < rows");
    if (l->batch != a->batch) return EmuLtError("batch counts differ");
  }
  // Batched outputs may not overlap (operands may, e.g. a stride of 0 broadcasts one matrix).
  if (dd->batch > 1 && dd->stride < dd->ld * static_cast<int64_t>(dd->cols)) return EmuLtError("D's batch stride overlaps");
  return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
    cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref,
    int requested, cublasLtMatmulHeuristicResult_t results[], int* count) {
  *count = 0;
  if (requested <= 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (!g_emu_cublaslt_reference) return CUBLAS_STATUS_NOT_SUPPORTED;  // no algorithm
  int64_t m, n, k;
  const cublasStatus_t st = EmuLtCheck(desc, a, b, c, d, &m, &n, &k);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  ++g_emu_cublaslt_heuristics;
  cublasLtMatmulHeuristicResult_t r{};
  for (int i = 0; i < 4; ++i) r.algo.data[i] = pref->align[i];
  r.algo.data[4] = pref->max_workspace;
  r.workspaceSize = 0;
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.0f;
  results[0] = r;
  *count = 1;
  return CUBLAS_STATUS_SUCCESS;
}

// Whether `algo` (from a heuristic on another shape) runs this one: the descriptors must be consistent,
// as for a heuristic query; the reference GEMM needs no workspace.
inline cublasStatus_t cublasLtMatmulAlgoCheck(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo,
                                              cublasLtMatmulHeuristicResult_t* result) {
  if (!g_emu_cublaslt_reference || algo == nullptr) return EmuLtError("AlgoCheck without an algorithm");
  int64_t m, n, k;
  const cublasStatus_t st = EmuLtCheck(desc, a, b, c, d, &m, &n, &k);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  ++g_emu_cublaslt_checks;
  *result = cublasLtMatmulHeuristicResult_t{};
  result->algo = *algo;
  result->workspaceSize = 0;
  result->state = CUBLAS_STATUS_SUCCESS;
  return CUBLAS_STATUS_SUCCESS;
}

inline float EmuLtLoad(const void* p, cudaDataType_t type, int64_t i) {
  if (type == CUDA_R_16BF) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha,
                                     const void* A, cublasLtMatrixLayout_t ad, const void* B,
                                     cublasLtMatrixLayout_t bd, const void* beta, const void* C,
                                     cublasLtMatrixLayout_t cd, void* D, cublasLtMatrixLayout_t dd,
                                     const cublasLtMatmulAlgo_t* algo, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream) {
  if (!g_emu_cublaslt_reference || algo == nullptr) {
    return EmuLtError("cublasLtMatmul called without an algorithm from the heuristic");
  }
  int64_t m, n, k;
  const cublasStatus_t st = EmuLtCheck(desc, ad, bd, cd, dd, &m, &n, &k);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i) {
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % algo->data[i] != 0) {
      return EmuLtError("a pointer is less aligned than the preference promised");
    }
  }
  if (workspace_bytes > algo->data[4]) return EmuLtError("workspace above the preference's limit");
  if (workspace_bytes > 0 && workspace == nullptr) return EmuLtError("null workspace");
  // Host pointer mode: alpha and beta are read now, as the launch does.
  float a_s, b_s;
  std::memcpy(&a_s, alpha, sizeof a_s);
  std::memcpy(&b_s, beta, sizeof b_s);
  const bool ta = desc->trans_a == CUBLAS_OP_T, tb = desc->trans_b == CUBLAS_OP_T;
  const EmuLtLayout al = *ad, bl = *bd, cl = *cd, dl = *dd;
  ++g_emu_cublaslt_matmuls;
  if (al.batch > 1) ++g_emu_cublaslt_batched;
  EmuEnqueue(stream, [=] {
    for (int64_t batch = 0; batch < al.batch; ++batch) {
      const float* cp = static_cast<const float*>(C) + batch * cl.stride;
      float* dp = static_cast<float*>(D) + batch * dl.stride;
      const int64_t a0 = batch * al.stride, b0 = batch * bl.stride;
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t i = 0; i < m; ++i) {
          float acc = 0.0f;
          for (int64_t l = 0; l < k; ++l) {
            const float x = EmuLtLoad(A, al.type, a0 + (ta ? l + i * al.ld : i + l * al.ld));
            const float y = EmuLtLoad(B, bl.type, b0 + (tb ? j + l * bl.ld : l + j * bl.ld));
            acc += x * y;
          }
          // beta == 0: C is not read (it may hold anything, NaN included).
          dp[i + j * dl.ld] = b_s == 0.0f ? a_s * acc : a_s * acc + b_s * cp[i + j * cl.ld];
        }
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}
