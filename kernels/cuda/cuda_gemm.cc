// CudaBackend's matrix products: cuBLASLt with a plan cached per GEMM signature (the routed experts'
// products take their algorithm from a bucket of similar row counts), BF16 operands packed (or
// read in place when given as BF16 bits); the routed experts' grouped products as one cuBLASLt product per
// expert, one cuBLAS grouped call, or one launch of the built-in grouped kernel, which is also the
// fallback when cuBLASLt has no algorithm.
#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_backend_internal.h"

namespace moe::kernels {

using cuda_internal::AlignmentOf;
using cuda_internal::Op;
using cuda_internal::RoundUp;
using cuda_internal::ScratchCarver;

bool CudaBackend::GemmKey::operator==(const GemmKey& o) const {
  return ta == o.ta && tb == o.tb && math == o.math && m == o.m && n == o.n && k == o.k &&
         lda == o.lda && ldb == o.ldb && ldc == o.ldc && align_a == o.align_a &&
         align_b == o.align_b && align_c == o.align_c && batch == o.batch;
}

size_t CudaBackend::GemmKeyHash::operator()(const GemmKey& k) const {
  size_t h = 0;
  auto mix = [&h](int64_t v) {
    h ^= std::hash<int64_t>()(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  };
  for (int64_t v : {int64_t{k.ta}, int64_t{k.tb}, int64_t{k.math}, k.m, k.n, k.k, k.lda, k.ldb,
                    k.ldc, int64_t{k.align_a}, int64_t{k.align_b}, int64_t{k.align_c}, k.batch}) {
    mix(v);
  }
  return h;
}

// ---- Matrix products. ----

namespace {
double GroupedFlops(const std::vector<GemmProblem>& problems) {
  double f = 0;
  for (const GemmProblem& p : problems) f += GemmFlops(p);
  return f;
}

// The column-major views cuBLASLt gets of a row-major C = op(A) op(B), computed as Cᵀ = op(B)ᵀ op(A)ᵀ:
// B first, [tb ? k : n] x [tb ? n : k]; A [ta ? m : k] x [ta ? k : m]; C n x m.
struct ColumnMajorShapes {
  template <typename Key>
  explicit ColumnMajorShapes(const Key& key)
      : b_rows(static_cast<uint64_t>(key.tb ? key.k : key.n)),
        b_cols(static_cast<uint64_t>(key.tb ? key.n : key.k)),
        a_rows(static_cast<uint64_t>(key.ta ? key.m : key.k)),
        a_cols(static_cast<uint64_t>(key.ta ? key.k : key.m)),
        c_rows(static_cast<uint64_t>(key.n)),
        c_cols(static_cast<uint64_t>(key.m)) {}
  uint64_t b_rows, b_cols, a_rows, a_cols, c_rows, c_cols;
};
}  // namespace

CudaBackend::HostTimer::HostTimer(CudaBackend* b, const char* name)
    : b_(b), name_(name), start_(std::chrono::steady_clock::now()) {}

CudaBackend::HostTimer::~HostTimer() {
  if (!b_->time_ops_) return;
  OpTime& t = b_->op_times_[name_];
  t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  t.calls += 1;
}

std::unique_ptr<CudaBackend::GemmPlan> CudaBackend::Describe(const GemmKey& key) const {
  auto plan = std::make_unique<GemmPlan>();
  const cudaDataType_t operand_type = key.math == static_cast<int>(GemmMath::kBf16)
                                          ? CUDA_R_16BF
                                          : CUDA_R_32F;
  MOE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = Op(key.tb != 0), op_second = Op(key.ta != 0);
  MOE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                  &op_first, sizeof(op_first)));
  MOE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                  &op_second, sizeof(op_second)));
  const ColumnMajorShapes shapes(key);
  MOE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b_layout, operand_type, shapes.b_rows, shapes.b_cols, key.ldb));
  MOE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a_layout, operand_type, shapes.a_rows, shapes.a_cols, key.lda));
  MOE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c_layout, CUDA_R_32F, shapes.c_rows, shapes.c_cols, key.ldc));
  if (key.batch > 1) {  // each matrix's stored size after the previous one's
    const int32_t count = static_cast<int32_t>(key.batch);
    const std::pair<cublasLtMatrixLayout_t, int64_t> strided[] = {
        {plan->b_layout, static_cast<int64_t>(shapes.b_cols) * key.ldb},
        {plan->a_layout, static_cast<int64_t>(shapes.a_cols) * key.lda},
        {plan->c_layout, static_cast<int64_t>(shapes.c_cols) * key.ldc}};
    for (const auto& [layout, stride] : strided) {
      MOE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      MOE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                        sizeof(stride)));
    }
  }
  return plan;
}

cublasStatus_t CudaBackend::Heuristic(const GemmKey& key, const GemmPlan& plan, cublasLtMatmulAlgo_t* algo) {
  HostTimer timer(this, kGemmHeuristicOpName);
  cublasLtMatmulPreference_t pref = nullptr;
  MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = lt_workspace_bytes_;
  MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  // Tell the heuristic how aligned the pointers really are (it assumes 256 bytes otherwise).
  const uint32_t align_first = static_cast<uint32_t>(key.align_b);
  const uint32_t align_second = static_cast<uint32_t>(key.align_a);
  const uint32_t align_c = static_cast<uint32_t>(key.align_c);
  MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_first, sizeof(align_first)));
  MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_second, sizeof(align_second)));
  MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
  MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, plan.desc, plan.b_layout, plan.a_layout, plan.c_layout,
                                                     plan.c_layout, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found == 0) st = CUBLAS_STATUS_NOT_SUPPORTED;
  if (st == CUBLAS_STATUS_SUCCESS) *algo = result.algo;
  return st;
}

namespace {
// The bucket of a grouped product's row count (it follows the routing, so it changes every step): at
// most 8 buckets per power of two, at least 16 apart; a bucket is named by its largest size.
int64_t RowBucket(int64_t x) {
  int64_t step = 16;
  while (step * 16 <= x) step *= 2;
  return (x + step - 1) / step * step;
}
}  // namespace

CudaBackend::GemmKey CudaBackend::BucketKey(const GemmKey& key) {
  GemmKey b = key;
  b.m = RowBucket(key.m);
  b.k = RowBucket(key.k);
  const ColumnMajorShapes shapes(b);  // a bucket's layouts must still fit their leading dims
  if (static_cast<int64_t>(shapes.a_rows) > b.lda || static_cast<int64_t>(shapes.b_rows) > b.ldb ||
      static_cast<int64_t>(shapes.c_rows) > b.ldc) {
    return key;
  }
  return b;
}

CudaBackend::GemmPlan& CudaBackend::Plan(const GemmKey& key, bool varying_rows) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  // A new signature costs host time (descriptors, and a heuristic query or a check of the bucket's
  // algorithm) while the GPU may wait: timed, with op times on, as the host entry kGemmPlanOpName.
  HostTimer timer(this, kGemmPlanOpName);
  std::unique_ptr<GemmPlan> plan = Describe(key);
  bool planned = false;
  if (varying_rows) {
    // Grouped products: the heuristic runs once per bucket, on the bucket's largest shape, and each
    // exact shape takes that algorithm if cuBLASLt confirms it runs the shape within the workspace.
    // Which algorithm a shape gets never depends on the shapes seen before it (resumed runs compute
    // the same bits).
    const GemmKey bucket = BucketKey(key);
    auto found = bucket_algos_.find(bucket);
    if (found == bucket_algos_.end()) {
      cublasLtMatmulAlgo_t algo{};
      const cublasStatus_t st = Heuristic(bucket, bucket == key ? *plan : *Describe(bucket), &algo);
      found = bucket_algos_.emplace(bucket, st == CUBLAS_STATUS_SUCCESS ? std::optional(algo) : std::nullopt).first;
    }
    if (found->second.has_value()) {
      cublasLtMatmulHeuristicResult_t check{};
      if (bucket == key ||
          (cublasLtMatmulAlgoCheck(lt_, plan->desc, plan->b_layout, plan->a_layout, plan->c_layout, plan->c_layout,
                                   &*found->second, &check) == CUBLAS_STATUS_SUCCESS &&
           check.workspaceSize <= lt_workspace_bytes_)) {
        plan->algo = *found->second;
        planned = true;
      }
    }
  }
  if (!planned) {
    const cublasStatus_t st = Heuristic(key, *plan, &plan->algo);
    if (st != CUBLAS_STATUS_SUCCESS) {
      // No cuBLASLt kernel for this signature: remember that, and Gemm uses the grouped kernel.
      std::fprintf(stderr,
                   "CUDA backend: no cuBLASLt algorithm for m=%lld n=%lld k=%lld lda=%lld ldb=%lld "
                   "ldc=%lld ta=%d tb=%d math=%d (%s); using the built-in GEMM kernel\n",
                   static_cast<long long>(key.m), static_cast<long long>(key.n),
                   static_cast<long long>(key.k), static_cast<long long>(key.lda),
                   static_cast<long long>(key.ldb), static_cast<long long>(key.ldc), key.ta, key.tb,
                   key.math, cublasLtGetStatusString(st));
      plan->usable = false;
    }
  }
  GemmPlan& ref = *plan;
  plans_.emplace(key, std::move(plan));
  return ref;
}

void CudaBackend::Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) {
  OpTimer timer(this, "gemm", GemmFlops(p));
  const bool ta_yes = ta == Transpose::kYes, tb_yes = tb == Transpose::kYes;
  const Lane main{stream_, lt_workspace_};
  RunGemm(ta_yes, tb_yes, p, alpha, beta, main, static_cast<char*>(Scratch(GemmScratchBytes(ta_yes, tb_yes, p))),
          false);
}

// The BF16 mode's packed operands: row-major stored shapes of A and B with leading dims rounded up to
// 8 elements (16 bytes, what the tensor-core kernels want); operands given as BF16 are read in place
// and take no space.
struct CudaBackend::Bf16Packing {
  int64_t a_rows, a_cols, a_ld, b_rows, b_cols, b_ld;
  size_t a_bytes, b_bytes;
  Bf16Packing(bool ta, bool tb, const GemmProblem& p)
      : a_rows(ta ? p.k : p.m),
        a_cols(ta ? p.m : p.k),
        a_ld(static_cast<int64_t>(RoundUp(static_cast<size_t>(a_cols), 8))),
        b_rows(tb ? p.n : p.k),
        b_cols(tb ? p.k : p.n),
        b_ld(static_cast<int64_t>(RoundUp(static_cast<size_t>(b_cols), 8))),
        a_bytes(p.a_bf16 ? 0 : RoundUp(sizeof(uint16_t) * static_cast<size_t>(a_rows * a_ld), 256)),
        b_bytes(p.b_bf16 ? 0 : RoundUp(sizeof(uint16_t) * static_cast<size_t>(b_rows * b_ld), 256)) {}
};

size_t CudaBackend::GemmScratchBytes(bool ta, bool tb, const GemmProblem& p) const {
  const size_t unpacked = Fp32OperandBytes(p);  // FP32 products, and the built-in kernel's fallback
  if (gemm_math_ != GemmMath::kBf16) return unpacked;
  const Bf16Packing pack(ta, tb, p);
  return std::max(unpacked, pack.a_bytes + pack.b_bytes);
}

bool CudaBackend::NoProduct(const GemmProblem& p, float beta, cudaStream_t stream) {
  if (p.m <= 0 || p.n <= 0) return true;
  if (p.k > 0) return false;
  cuda::LaunchScaleMatrix(p.c, p.m, p.n, p.ldc, beta, stream);  // as the CPU twin: C = beta C (zeros when beta == 0)
  return true;
}

CudaBackend::GemmOperands CudaBackend::OperandsFor(bool ta, bool tb, const GemmProblem& p, char* ws,
                                                   cudaStream_t stream) {
  if (gemm_math_ == GemmMath::kFp32) {  // BF16 operands are unpacked (exactly) first
    const GemmProblem q = WithFp32Operands(ta, tb, p, ws, stream);
    return {q.a, q.b, q.lda, q.ldb};
  }
  GemmOperands o{p.a, p.b, p.lda, p.ldb};
  const Bf16Packing pack(ta, tb, p);
  if (p.a_bf16 != nullptr) {
    o.a = p.a_bf16;
  } else {
    cuda::LaunchPackBf16(p.a, pack.a_rows, pack.a_cols, p.lda, ws, pack.a_ld, stream);
    o.a = ws;
    o.lda = pack.a_ld;
  }
  if (p.b_bf16 != nullptr) {
    o.b = p.b_bf16;
  } else {
    cuda::LaunchPackBf16(p.b, pack.b_rows, pack.b_cols, p.ldb, ws + pack.a_bytes, pack.b_ld, stream);
    o.b = ws + pack.a_bytes;
    o.ldb = pack.b_ld;
  }
  return o;
}

void CudaBackend::RunGemm(bool ta, bool tb, const GemmProblem& p, float alpha, float beta, const Lane& lane,
                          char* ws, bool varying_rows) {
  if (NoProduct(p, beta, lane.stream)) return;
  const GemmOperands o = OperandsFor(ta, tb, p, ws, lane.stream);
  GemmKey key{ta ? 1 : 0, tb ? 1 : 0, static_cast<int>(gemm_math_),
              p.m, p.n, p.k, o.lda, o.ldb, p.ldc, AlignmentOf(o.a), AlignmentOf(o.b), AlignmentOf(p.c)};
  GemmPlan& plan = Plan(key, varying_rows);
  if (plan.usable) {
    const cublasStatus_t st = cublasLtMatmul(lt_, plan.desc, &alpha, o.b, plan.b_layout, o.a,
                                             plan.a_layout, &beta, p.c, plan.c_layout, p.c,
                                             plan.c_layout, &plan.algo, lane.lt_workspace,
                                             lt_workspace_bytes_, lane.stream);
    if (st == CUBLAS_STATUS_SUCCESS) return;
    std::fprintf(stderr, "CUDA backend: cublasLtMatmul failed (%s); using the built-in GEMM kernel\n",
                 cublasLtGetStatusString(st));
    plan.usable = false;
  }
  // The grouped kernel with one problem: any shape, same arithmetic mode, on FP32 operands (unpacked
  // over the packed copies, which cuBLASLt did not get to read).
  const GemmProblem q = WithFp32Operands(ta, tb, p, ws, lane.stream);
  cuda::LaunchGroupedGemm(ta, tb, &q, 1, alpha, beta, gemm_math_, lane.stream);
}

namespace {
// Scratch bytes of one dense FP32 operand of `elements` elements.
size_t Fp32Bytes(int64_t elements) { return RoundUp(sizeof(float) * static_cast<size_t>(elements), 256); }
}  // namespace

size_t CudaBackend::Fp32OperandBytes(const GemmProblem& p, bool round_to_bf16) {
  return (p.a_bf16 != nullptr || round_to_bf16 ? Fp32Bytes(p.m * p.k) : 0) +
         (p.b_bf16 != nullptr || round_to_bf16 ? Fp32Bytes(p.k * p.n) : 0);
}

GemmProblem CudaBackend::WithFp32Operands(bool ta, bool tb, const GemmProblem& p, char* ws, cudaStream_t stream,
                                          bool round_to_bf16) {
  GemmProblem q = p;
  // Stored [rows, cols] operand (bits, or FP32 words to round; leading dim ld) written densely at ws as FP32;
  // returns its leading dim.
  auto dense = [&](const uint16_t* bits, const float* words, int64_t rows, int64_t cols, int64_t ld,
                   const float** out) {
    float* to = reinterpret_cast<float*>(ws);
    if (bits != nullptr) {
      cuda::LaunchUnpackBf16(bits, rows, cols, ld, to, cols, stream);
    } else {
      cuda::LaunchRoundToBf16Into(words, rows, cols, ld, to, cols, stream);
    }
    ws += Fp32Bytes(rows * cols);
    *out = to;
    return cols;
  };
  if (p.a_bf16 != nullptr || round_to_bf16) q.lda = dense(p.a_bf16, p.a, ta ? p.k : p.m, ta ? p.m : p.k, p.lda, &q.a);
  if (p.b_bf16 != nullptr || round_to_bf16) q.ldb = dense(p.b_bf16, p.b, tb ? p.n : p.k, tb ? p.k : p.n, p.ldb, &q.b);
  q.a_bf16 = nullptr;
  q.b_bf16 = nullptr;
  return q;
}

void CudaBackend::GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                              float alpha, float beta) {
  OpTimer timer(this, "grouped_gemm", GroupedFlops(problems));
  const bool ta_yes = ta == Transpose::kYes, tb_yes = tb == Transpose::kYes;
  // The one-launch library forms take the problems with k > 0 (the others are C = beta C) and hand back
  // those they cannot run to the per-expert path.
  const bool cublas_grouped = grouped_gemm_ == GroupedGemmImpl::kCublasGrouped && !cublas_grouped_refused_;
  if (cublas_grouped || grouped_gemm_ == GroupedGemmImpl::kCublasLtPadded) {
    std::vector<GemmProblem> products;
    for (const GemmProblem& p : problems) {
      if (!NoProduct(p, beta, stream_)) products.push_back(p);
    }
    if (products.empty()) return;
    const bool ran = cublas_grouped ? GroupedGemmCublas(ta_yes, tb_yes, products, alpha, beta)
                                    : GroupedGemmPadded(ta_yes, tb_yes, products, alpha, beta);
    if (!ran) GroupedGemmOnLanes(ta_yes, tb_yes, products, alpha, beta);
    return;
  }
  if (grouped_gemm_ != GroupedGemmImpl::kKernel) {
    GroupedGemmOnLanes(ta_yes, tb_yes, problems, alpha, beta);
    return;
  }
  // The grouped kernel reads FP32 operands: BF16 ones are unpacked (exactly) into the scratch buffer.
  size_t bytes = 0;
  for (const GemmProblem& p : problems) bytes += Fp32OperandBytes(p);
  if (bytes == 0) {
    cuda::LaunchGroupedGemm(ta_yes, tb_yes, problems.data(), static_cast<int64_t>(problems.size()), alpha, beta,
                            gemm_math_, stream_);
    return;
  }
  char* ws = static_cast<char*>(Scratch(bytes));
  std::vector<GemmProblem> fp32(problems.size());
  for (size_t i = 0; i < problems.size(); ++i) {
    fp32[i] = WithFp32Operands(ta_yes, tb_yes, problems[i], ws, stream_);
    ws += Fp32OperandBytes(problems[i]);
  }
  cuda::LaunchGroupedGemm(ta_yes, tb_yes, fp32.data(), static_cast<int64_t>(fp32.size()), alpha, beta, gemm_math_,
                          stream_);
}

// One cuBLASLt product per problem, spread round-robin over the lanes: side streams forked from
// the backend's stream by an event and joined back into it, each with its own cuBLASLt workspace and
// its own piece of the scratch buffer for packing. An expert's product alone fills few of the SMs
// (at small_1b, 3072 x 512 x 1024 is ~100 output tiles), so products on different lanes overlap. The
// problems write disjoint outputs (the grouped-GEMM contract), and each product runs the same plan
// whatever its lane, so the results are the same bits as on one stream.
void CudaBackend::GroupedGemmOnLanes(bool ta, bool tb, const std::vector<GemmProblem>& problems, float alpha,
                                     float beta) {
  const size_t lanes = std::min(problems.size(), static_cast<size_t>(std::max(1, grouped_gemm_streams_)));
  if (lanes <= 1) {
    const Lane main{stream_, lt_workspace_};
    for (const GemmProblem& p : problems) {
      RunGemm(ta, tb, p, alpha, beta, main, static_cast<char*>(Scratch(GemmScratchBytes(ta, tb, p))), true);
    }
    return;
  }
  EnsureLanes(lanes);
  std::vector<size_t> lane_bytes(lanes, 0);
  for (size_t i = 0; i < problems.size(); ++i) {
    lane_bytes[i % lanes] = std::max(lane_bytes[i % lanes], GemmScratchBytes(ta, tb, problems[i]));
  }
  // Before the fork: growing the scratch buffer synchronises stream_.
  ScratchCarver carver(Scratch(ScratchCarver::Bytes(lane_bytes)));
  std::vector<char*> lane_ws(lanes);
  for (size_t l = 0; l < lanes; ++l) lane_ws[l] = carver.Take<char>(lane_bytes[l]);
  MOE_CUDA_CHECK(cudaEventRecord(fork_event_, stream_));
  for (size_t l = 0; l < lanes; ++l) MOE_CUDA_CHECK(cudaStreamWaitEvent(lanes_[l].stream, fork_event_, 0));
  for (size_t i = 0; i < problems.size(); ++i) {
    const size_t l = i % lanes;
    RunGemm(ta, tb, problems[i], alpha, beta, lanes_[l], lane_ws[l], true);
  }
  for (size_t l = 0; l < lanes; ++l) {
    MOE_CUDA_CHECK(cudaEventRecord(join_events_[l], lanes_[l].stream));
    MOE_CUDA_CHECK(cudaStreamWaitEvent(stream_, join_events_[l], 0));
  }
}

bool CudaBackend::GroupedGemmCublas(bool ta, bool tb, const std::vector<GemmProblem>& problems, float alpha,
                                    float beta) {
  const size_t count = problems.size();
  if (cublas_ == nullptr) {
    cublasStatus_t st = cublasCreate(&cublas_);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(cublas_, stream_);
    if (st != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "CUDA backend: cuBLAS did not start (%s); the experts' products take one cuBLASLt "
                   "product each\n", cublasGetStatusString(st));
      cublas_grouped_refused_ = true;
      return false;
    }
  }
  // cuBLAS's grouped call takes BF16 A and B only with a BF16 C (its documented type table), and C here is
  // FP32 (an FP32 output, or FP32 gradients that accumulate). So the BF16 mode gives it FP32 words holding
  // the operands' BF16 roundings, with TF32 tensor-core math: a BF16 value is exact in TF32, so each
  // product is the BF16 product, summed in FP32 as in every other path of the mode. The FP32 mode is
  // FP32 throughout.
  const bool tf32 = gemm_math_ == GemmMath::kBf16;
  if (tf32) {
    // TF32 math needs 16-byte aligned pointers (the operands are the scratch copies below, aligned).
    for (const GemmProblem& p : problems) {
      if (AlignmentOf(p.c) < 16) return false;  // this call only: the per-expert path runs it
    }
  }
  // Scratch: the device pointer table [A | B | C], then each problem's dense FP32 operands.
  std::vector<size_t> sizes{3 * count * sizeof(void*)};
  for (const GemmProblem& p : problems) sizes.push_back(Fp32OperandBytes(p, tf32));
  ScratchCarver carver(Scratch(ScratchCarver::Bytes(sizes)));
  const void** table = carver.Take<const void*>(3 * count);
  // cuBLAS is column-major: row-major C = op(A) op(B) is Cᵀ = op(B)ᵀ op(A)ᵀ (B first, as in RunGemm).
  std::vector<const void*> pointers(3 * count);
  std::vector<cublasOperation_t> trans_first(count, Op(tb)), trans_second(count, Op(ta));
  std::vector<int> m(count), n(count), k(count), ld_first(count), ld_second(count), ldc(count);
  const std::vector<float> alphas(count, alpha), betas(count, beta);
  const std::vector<int> group_size(count, 1);
  for (size_t i = 0; i < count; ++i) {
    const GemmProblem q = WithFp32Operands(ta, tb, problems[i], carver.Take<char>(sizes[i + 1]), stream_, tf32);
    pointers[i] = q.b;
    pointers[count + i] = q.a;
    pointers[2 * count + i] = q.c;
    m[i] = static_cast<int>(q.n);
    n[i] = static_cast<int>(q.m);
    k[i] = static_cast<int>(q.k);
    ld_first[i] = static_cast<int>(q.ldb);
    ld_second[i] = static_cast<int>(q.lda);
    ldc[i] = static_cast<int>(q.ldc);
  }
  CopyFromHost(pointers.data(), pointers.size() * sizeof(void*), table);
  const cublasStatus_t st = cublasGemmGroupedBatchedEx(
      cublas_, trans_first.data(), trans_second.data(), m.data(), n.data(), k.data(), alphas.data(), table,
      CUDA_R_32F, ld_first.data(), table + count, CUDA_R_32F, ld_second.data(), betas.data(),
      const_cast<void* const*>(table + 2 * count), CUDA_R_32F, ldc.data(), static_cast<int>(count),
      group_size.data(), tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  if (st == CUBLAS_STATUS_SUCCESS) return true;
  std::fprintf(stderr,
               "CUDA backend: cublasGemmGroupedBatchedEx refused the experts' products (%s, FP32 operands, %s "
               "math); using one cuBLASLt product per expert from now on\n",
               cublasGetStatusString(st), tf32 ? "TF32" : "FP32");
  cublas_grouped_refused_ = true;
  return false;
}

bool CudaBackend::GroupedGemmPadded(bool ta, bool tb, const std::vector<GemmProblem>& problems, float alpha,
                                    float beta) {
  // The routed dimension is each problem's rows (m: A's and C's rows) or, for a weight gradient (A
  // transposed), the summed one (k). All else must agree, and the operands be given alike (BF16 bits or not).
  const GemmProblem& first = problems.front();
  int64_t routed = 0;
  for (const GemmProblem& p : problems) {
    if (p.n != first.n || (ta ? p.m != first.m : p.k != first.k) || (p.a_bf16 == nullptr) != (first.a_bf16 == nullptr) ||
        (p.b_bf16 == nullptr) != (first.b_bf16 == nullptr)) {
      return false;
    }
    routed = std::max(routed, ta ? p.k : p.m);
  }
  // Padded up to its row bucket, so the shapes (and plans) are few and chosen by the shape alone. Padding
  // rows are zeros: for k they add nothing, for m their outputs are not copied back.
  routed = RowBucket(routed);
  const bool bf16 = gemm_math_ == GemmMath::kBf16;
  const int64_t count = static_cast<int64_t>(problems.size());
  const int64_t m = ta ? first.m : routed, n = first.n, k = ta ? routed : first.k;
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  GemmKey key{ta ? 1 : 0, tb ? 1 : 0, static_cast<int>(gemm_math_), m, n, k, a_cols, b_cols, n, 256, 256, 256, count};
  GemmPlan& plan = Plan(key, false);
  if (!plan.usable) return false;
  // Scratch: the block tables [A | B | C], the padded A and B (BF16 in the BF16 mode) and the padded C.
  const size_t operand_bytes = bf16 ? sizeof(uint16_t) : sizeof(float);
  const std::vector<size_t> sizes{3 * count * sizeof(cuda::PaddedBlock), count * a_rows * a_cols * operand_bytes,
                                  count * b_rows * b_cols * operand_bytes, count * m * n * sizeof(float)};
  ScratchCarver carver(Scratch(ScratchCarver::Bytes(sizes)));
  cuda::PaddedBlock* table = carver.Take<cuda::PaddedBlock>(3 * count);
  char* a_pad = carver.Take<char>(sizes[1]);
  char* b_pad = carver.Take<char>(sizes[2]);
  float* c_pad = carver.Take<float>(count * m * n);
  std::vector<cuda::PaddedBlock> blocks(3 * count);
  for (int64_t i = 0; i < count; ++i) {
    const GemmProblem& p = problems[i];
    const void* a = p.a_bf16 != nullptr ? static_cast<const void*>(p.a_bf16) : p.a;
    const void* b = p.b_bf16 != nullptr ? static_cast<const void*>(p.b_bf16) : p.b;
    blocks[i] = {a, ta ? p.k : p.m, ta ? p.m : p.k, p.lda};
    blocks[count + i] = {b, tb ? p.n : p.k, tb ? p.k : p.n, p.ldb};
    blocks[2 * count + i] = {p.c, p.m, p.n, p.ldc};
  }
  CopyFromHost(blocks.data(), blocks.size() * sizeof(cuda::PaddedBlock), table);
  cuda::LaunchPadBlocks(table, count, first.a_bf16 != nullptr, a_rows, a_cols, a_pad, bf16, stream_);
  cuda::LaunchPadBlocks(table + count, count, first.b_bf16 != nullptr, b_rows, b_cols, b_pad, bf16, stream_);
  // cuBLASLt is column-major: B first, as in RunGemm. The product writes the padded C (beta 0), and the
  // copy back applies beta.
  const float zero = 0.0f;
  const cublasStatus_t st = cublasLtMatmul(lt_, plan.desc, &alpha, b_pad, plan.b_layout, a_pad, plan.a_layout, &zero,
                                           c_pad, plan.c_layout, c_pad, plan.c_layout, &plan.algo, lt_workspace_,
                                           lt_workspace_bytes_, stream_);
  if (st != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "CUDA backend: the experts' padded batch failed in cublasLtMatmul (%s); this product takes "
                 "one cuBLASLt product per expert\n", cublasLtGetStatusString(st));
    plan.usable = false;
    return false;  // what was enqueued only filled scratch
  }
  cuda::LaunchUnpadBlocks(c_pad, table + 2 * count, count, m, n, beta, stream_);
  ++padded_batches_;
  return true;
}

void CudaBackend::EnsureLanes(size_t count) {
  if (fork_event_ == nullptr) MOE_CUDA_CHECK(cudaEventCreateWithFlags(&fork_event_, cudaEventDisableTiming));
  while (lanes_.size() < count) {
    Lane lane;
    MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&lane.stream, cudaStreamNonBlocking));
    if (lt_workspace_bytes_ > 0) MOE_CUDA_CHECK(cudaMalloc(&lane.lt_workspace, lt_workspace_bytes_));
    cudaEvent_t join = nullptr;
    MOE_CUDA_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    lanes_.push_back(lane);
    join_events_.push_back(join);
  }
}

}  // namespace moe::kernels
