// CudaBackend: kernels/backend.h on an NVIDIA GPU (built only with --config=cuda). Every float* /
// int32_t* argument is a DEVICE pointer (cudaMalloc'd, unified memory such as the Buffers of
// kernels/cuda/unified_memory.h, or any device-accessible memory); the GemmProblem list of
// GroupedGemm and the parameter structs live on the host as usual.
//
// Execution: all work is enqueued on the backend's one stream in call order and returns at once,
// except SumSquares and CrossEntropy, which return a host double and so synchronise the stream.
// The stream, the cuBLASLt handle, its workspace, the scratch buffer the ops share and the host
// staging for results all live in the object: no globals, so several backends (e.g. one per
// device or stream) coexist. One thread drives a backend at a time; the current device must be
// the backend's (Create sets it; a process that uses several devices must switch per call).
//
// Numerics (docs/architecture.md "Numerics"): every op computes its CPU twin's function (kernels/cpu)
// with FP32 storage; reductions that the CPU does in FP64 are FP64 here; every result is deterministic
// (fixed reduction trees, sort-based scatter-add, no atomics). Matrix products have two modes:
//   GemmMath::kFp32  FP32 x FP32 with FP32 compute (cuBLASLt CUBLAS_COMPUTE_32F: no TF32),
//                    the reference semantics used by FP32 runs and gradient checks.
//   GemmMath::kBf16  both operands rounded to BF16 (nearest even) into workspace, BF16 x BF16 on
//                    the tensor cores with FP32 accumulation and an FP32 C (cuBLASLt). In the
//                    model's BF16 mode the forward operands (weights, stored activations) already
//                    hold BF16 values, so there only the accumulation order differs from the CPU's
//                    FP32 GEMM. The backward's activation gradients are FP32 in the model: here
//                    they ARE rounded to BF16 (as autocast and Megatron do), while the CPU backend
//                    multiplies them in FP32, a deliberate difference (tensor-core backward) that
//                    moves a BF16 step's gradient norm by ~1e-4 relative against the CPU
//                    (tests/gpu/emulation/run_model_emulation.sh measures it).
// cuBLASLt plans (descriptors + the heuristic's algorithm) are cached per GEMM signature; should
// cuBLASLt offer no algorithm for one, Gemm says so once on stderr and runs the built-in kernel.
// GroupedGemm (the routed experts' products) has three implementations, in the same two modes:
//   GroupedGemmImpl::kCublasLt  one cuBLASLt product per problem (Gemm's path), spread round-robin
//                               over grouped_gemm_streams side streams forked from and joined back
//                               into the backend's stream (the same bits as in order): the default. On an H200 at small_1b the built-in kernel ran
//                               the expert products at ~16 TFLOP/s (887 ms of a 2.74 s step), while
//                               Gemm's cuBLASLt products ran at ~550 TFLOP/s in the same step.
//   GroupedGemmImpl::kCublasGrouped  one cublasGemmGroupedBatchedEx call for all the problems (each a
//                               group of one; the operand pointer table copied to the device in stream
//                               order): one cuBLAS launch instead of one per expert. cuBLAS takes BF16
//                               operands there only with a BF16 C, so the BF16 mode passes FP32 words
//                               holding the BF16 roundings, with TF32 math (the same products). Not yet
//                               timed on a GPU (tests/gpu/kernel_check times all three); should cuBLAS
//                               refuse the call, it says so once and takes the kCublasLt path from then on.
//   GroupedGemmImpl::kCublasLtPadded  one strided-batched cuBLASLt product: each problem's operands
//                               copied, zero-padded, to the batch's shape (the routed dimension rounded
//                               up to its row bucket), the outputs copied back; BF16 operands stay BF16.
//                               Costs the padding's work and three copies, saves a launch per expert.
//                               Problems that differ in more than the routed dimension take kCublasLt.
//                               Not yet timed on a GPU.
//   GroupedGemmImpl::kKernel    one launch of the built-in kernel for up to 256 problems
//                               (kernels/cuda/grouped_gemm.cu; WMMA tiles in the BF16 mode), also
//                               Gemm's fallback when cuBLASLt has no algorithm for a signature.
// Attention has two implementations:
//   AttentionImpl::kCudnn   the default: in the BF16 mode, cuDNN's fused flash attention
//                           (kernels/cuda/cudnn_attention.h) on BF16 copies of q, k, v (and o, d_o),
//                           with FP32 softmax statistics; its BF16 outputs are widened to FP32. On
//                           an H200 the built-in kernel ran small_1b's attention at ~13 TFLOP/s,
//                           69% of the step. The FP32 mode, shapes cuDNN refuses, and shapes whose
//                           cuDNN workspace would pass 1/8 of the device's memory (the deterministic
//                           backward keeps B*H*T^2 BF16 values there: long context) use the built-in
//                           kernel, said once on stderr.
//   AttentionImpl::kKernel  the built-in FP32 flash-attention kernel (kernels/cuda/attention.cu)
//                           always: the reference the device check compares cuDNN with.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/kernels.h"

namespace moe::kernels {

using cuda::GemmMath;

enum class GroupedGemmImpl { kCublasLt, kCublasGrouped, kCublasLtPadded, kKernel };  // see above
// Attention (see "Attention" above).
enum class AttentionImpl { kCudnn, kKernel };

struct CudaBackendOptions {
  int device = 0;                           // CUDA device ordinal
  cudaStream_t stream = nullptr;            // null: the backend creates and owns a stream
  GemmMath gemm_math = GemmMath::kFp32;     // Gemm and GroupedGemm arithmetic (see above)
  GroupedGemmImpl grouped_gemm = GroupedGemmImpl::kCublasLt;
  int grouped_gemm_streams = 4;  // kCublasLt: streams the per-problem products spread over (1: in order)
  AttentionImpl attention = AttentionImpl::kCudnn;
  size_t cublaslt_workspace_bytes = 32u << 20;  // cuBLASLt's split-K / stream-K workspace
};

class CudaBackend final : public Backend {
 public:
  // Fails (FailedPrecondition / Internal, naming the device and the failing call) when there is no
  // such device or the CUDA runtime or cuBLASLt cannot start.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  GemmMath gemm_math() const { return gemm_math_; }
  void set_gemm_math(GemmMath math) { gemm_math_ = math; }
  GroupedGemmImpl grouped_gemm_impl() const { return grouped_gemm_; }
  void set_grouped_gemm_impl(GroupedGemmImpl impl) { grouped_gemm_ = impl; }
  // kCublasGrouped: cuBLAS refused the grouped call once, so the products take the kCublasLt path.
  bool cublas_grouped_refused() const { return cublas_grouped_refused_; }
  // kCublasLtPadded: how many grouped products ran as one padded batch (the others took kCublasLt).
  int64_t padded_batches() const { return padded_batches_; }
  int grouped_gemm_streams() const { return grouped_gemm_streams_; }
  void set_grouped_gemm_streams(int streams) { grouped_gemm_streams_ = streams; }
  AttentionImpl attention_impl() const { return attention_; }
  void set_attention_impl(AttentionImpl impl) { attention_ = impl; }
  // Whether cuDNN runs this shape's attention (forward and backward) in the current settings, and if
  // not why; builds the plans (the device check asks before it compares).
  absl::Status CudnnAttentionStatus(const AttentionShape& s);
  // The engines cuDNN picked for the shape ("" before its first cuDNN call): for logs.
  std::string CudnnAttentionEngines(const AttentionShape& s) const;
  // Op times (kernels/backend.h): every op bracketed by two stream events while enabled, and the host
  // time spent building cuBLASLt plans (a new GEMM signature each) as kGemmPlanOpName, of which the
  // heuristic queries (one per dense signature, one per bucket of grouped ones) as kGemmHeuristicOpName.
  static constexpr const char* kGemmPlanOpName = "cublaslt_plan (host)";
  static constexpr const char* kGemmHeuristicOpName = "cublaslt_heuristic (host)";
  void EnableOpTimes(bool on) override { time_ops_ = on; }
  std::map<std::string, OpTime> OpTimes() override;
  void ResetOpTimes() override;

  // Blocks until every op enqueued so far has finished (and reports a kernel fault, if any).
  void Synchronize() override;
  void CopyFromHost(const void* src, size_t bytes, void* dst) override;
  void CopyToHost(const void* src, size_t bytes, void* dst) override;

  void Gemm(Transpose ta, Transpose tb, const GemmProblem& p, float alpha, float beta) override;
  void GroupedGemm(Transpose ta, Transpose tb, const std::vector<GemmProblem>& problems,
                   float alpha, float beta) override;

  void CopyBf16(const uint16_t* src, uint16_t* dst, int64_t n) override;
  void Copy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
              int64_t cols, bool accumulate) override;
  void Fill(float* x, int64_t n, float value) override;
  void RowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out) override;
  void ScaleRows(float* x, const float* s, int64_t rows, int64_t dim) override;

  void RoundToBf16(float* x, int64_t n) override;
  void PackBf16(const float* x, int64_t n, uint16_t* bits) override;
  void RoundAndPackBf16(float* x, int64_t n, uint16_t* bits) override;
  void UnpackBf16(const uint16_t* bits, int64_t n, float* x) override;
  void Add(const float* a, float* y, int64_t n) override;
  void AddAndRoundToBf16(const float* a, float* y, int64_t n) override;
  void Scale(float* x, int64_t n, float s) override;
  double SumSquares(const float* x, int64_t n) override;
  void SumSquaresEach(const std::vector<Piece>& pieces, double* out) override;

  void EmbeddingForward(const int32_t* ids, int64_t n, const float* table, const uint16_t* table_bf16,
                        int64_t dim, float* out) override;
  void EmbeddingBackward(const int32_t* ids, int64_t n, const float* d_out, int64_t dim,
                         float* d_table) override;

  void RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                      bool round_normalized, float* y, float* rstd) override;
  void RmsNormBackward(ValuesIn x, const float* w, const float* rstd, const float* dy,
                       int64_t rows, int64_t dim, float* dx, float* dw) override;

  void RopeForward(const RopeView& v) override;
  void RopeBackward(const RopeView& v) override;

  void SwigluForward(const float* a, const float* c, ValuesOut m, int64_t n) override;
  void SwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc,
                      int64_t n) override;

  void AttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        float* out, float* lse) override;
  void AttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v,
                         const float* out, const float* lse, const float* d_out, float* dq,
                         float* dk, float* dv) override;

  void RouterForward(const RouterParams& p, const float* logits, const float* bias, int64_t n,
                     float* scores, int32_t* selected, float* weights) override;
  void RouterBackward(const RouterParams& p, const float* scores, const int32_t* selected,
                      const float* d_weights, const float* d_scores_extra, int64_t n,
                      float* d_logits) override;
  void BalanceStats(const float* scores, int64_t n, int64_t num_experts, int64_t top_k,
                    int64_t first_token, int64_t group_len, int64_t groups,
                    double* stats) override;
  void BalanceLossGrad(const float* scores, int64_t n, int64_t num_experts, int64_t first_token,
                       int64_t group_len, const float* f, double coef, float* d_scores) override;

  void SortByExpert(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts, int64_t capacity,
                    int32_t* counts, int32_t* row_token, int32_t* row_slot) override;

  double CrossEntropy(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                      float grad_scale, float* d_logits) override;

  void GatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim,
                  float* dst) override;
  void ScatterAddRows(const float* src, const int32_t* idx, const float* scale, int64_t n,
                      int64_t dim, float* dst) override;
  void GatherRowBlocks(const float* src, const std::vector<RowBlock>& blocks, int64_t dim, float* dst) override;

  void AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
             int64_t n, const AdamWWorking& working) override;
  // One launch for all pieces (the same bits as AdamW per piece).
  void AdamWEach(const AdamWParams& p, const std::vector<AdamWPiece>& pieces) override;

 private:
  // One cached cuBLASLt plan: descriptors and the heuristic's algorithm for one GEMM signature.
  struct GemmPlan;
  struct GemmKey {
    int ta, tb, math;
    int64_t m, n, k, lda, ldb, ldc;
    int align_a, align_b, align_c;
    int64_t batch = 1;  // > 1: a strided batch of dense matrices, each one's stored size after the other
    bool operator==(const GemmKey& o) const;
  };
  struct GemmKeyHash {
    size_t operator()(const GemmKey& k) const;
  };
  // Results that travel back to the host: a double and an error flag (device and pinned host).
  struct Result {
    double value;
    int flag;
  };

  explicit CudaBackend(const CudaBackendOptions& options);
  // Records a start event when constructed and a stop event when destroyed, on the stream, while op
  // times are on; the elapsed time is read (and the events recycled) at the next OpTimes().
  // Times one op with events around it. Only the outermost open timer records: an op that calls
  // another (EmbeddingBackward -> ScatterAddRows) counts the inner one's time as its own, and the
  // collection of finished times never runs while an outer op's entry is still open.
  class OpTimer {
   public:
    OpTimer(CudaBackend* b, const char* name, double flops = 0);
    ~OpTimer();

   private:
    CudaBackend* b_;
    size_t index_ = 0;
    bool recording_ = false;
  };
  struct TimedOp {
    const char* name;
    double flops;
    cudaEvent_t start, stop;
  };
  // Times host work, while op times are on, as the op `name` (nested timers each count their own).
  class HostTimer {
   public:
    HostTimer(CudaBackend* b, const char* name);
    ~HostTimer();

   private:
    CudaBackend* b_;
    const char* name_;
    std::chrono::steady_clock::time_point start_;
  };
  cudaEvent_t TakeEvent();
  // Waits for the stream and folds the finished ops' times into op_times_.
  void CollectOpTimes();
  // Scratch of at least `bytes` (device, 256-byte aligned, contents undefined). Valid until the
  // next call; growing it synchronises the stream once.
  void* Scratch(size_t bytes);
  // GEMM operands as dense FP32 for the paths that read FP32 (FP32 products, the grouped kernel, the cuBLAS
  // grouped call): the scratch bytes p needs, and p with its BF16 operands unpacked at ws (exact); with
  // round_to_bf16 (the cuBLAS grouped call's TF32 math in the BF16 mode) its FP32 operands are written there
  // too, as their BF16 roundings.
  static size_t Fp32OperandBytes(const GemmProblem& p, bool round_to_bf16 = false);
  GemmProblem WithFp32Operands(bool ta, bool tb, const GemmProblem& p, char* ws, cudaStream_t stream,
                               bool round_to_bf16 = false);
  // Where a GEMM runs: a stream and the cuBLASLt workspace only that stream uses.
  struct Lane {
    cudaStream_t stream = nullptr;
    void* lt_workspace = nullptr;
  };
  struct Bf16Packing;
  // The scratch bytes RunGemm needs for p (packed BF16 operands, or unpacked FP32 ones).
  size_t GemmScratchBytes(bool ta, bool tb, const GemmProblem& p) const;
  // The operands a product reads in the arithmetic mode: BF16 bits (given, or FP32 ones packed into ws)
  // in the BF16 mode, FP32 (BF16 bits unpacked into ws) in the FP32 mode; ws holds GemmScratchBytes.
  struct GemmOperands {
    const void* a;
    const void* b;
    int64_t lda, ldb;
  };
  GemmOperands OperandsFor(bool ta, bool tb, const GemmProblem& p, char* ws, cudaStream_t stream);
  // True when p has no product to compute: empty (m or n is 0), or k == 0, for which C = beta C is
  // enqueued on `stream` here.
  bool NoProduct(const GemmProblem& p, float beta, cudaStream_t stream);
  // One product on `lane`, packing or unpacking operands into ws (GemmScratchBytes of it); varying_rows:
  // a grouped product, whose row counts follow the routing (Plan).
  void RunGemm(bool ta, bool tb, const GemmProblem& p, float alpha, float beta, const Lane& lane, char* ws,
               bool varying_rows);
  // GroupedImpl::kCublasLt: the problems' products spread over grouped_gemm_streams lanes.
  void GroupedGemmOnLanes(bool ta, bool tb, const std::vector<GemmProblem>& problems, float alpha,
                          float beta);
  void EnsureLanes(size_t count);  // creates side streams (with workspaces and join events) up to count
  // GroupedImpl::kCublasGrouped: the problems (k > 0) in one cuBLAS grouped call; false (said once)
  // where cuBLAS refuses it.
  bool GroupedGemmCublas(bool ta, bool tb, const std::vector<GemmProblem>& problems, float alpha, float beta);
  // GroupedImpl::kCublasLtPadded: the problems (k > 0) as one strided-batched cuBLASLt product on copies
  // zero-padded to a common shape; false, with nothing enqueued, where they do not share the dimensions
  // a batch needs (only the routed one may differ) or cuBLASLt has no algorithm.
  bool GroupedGemmPadded(bool ta, bool tb, const std::vector<GemmProblem>& problems, float alpha, float beta);
  // Copies the device Result to the host and waits for the stream.
  Result FetchResult();
  // The cached plan of `key`; a new one takes the heuristic's algorithm, or with varying_rows the
  // algorithm of its bucket's shape (BucketKey) where cuBLASLt accepts it for the exact shape.
  GemmPlan& Plan(const GemmKey& key, bool varying_rows);
  std::unique_ptr<GemmPlan> Describe(const GemmKey& key) const;  // descriptors, no algorithm yet
  cublasStatus_t Heuristic(const GemmKey& key, const GemmPlan& plan, cublasLtMatmulAlgo_t* algo);
  // key with m and k rounded up to their row buckets (key itself where the bucket's layouts would
  // not fit the leading dimensions).
  static GemmKey BucketKey(const GemmKey& key);
  // True when cuDNN runs this call (workspace: the bytes it needs); false, with a one-time message
  // for a shape cuDNN cannot run, when the built-in kernel does.
  bool UseCudnnAttention(const AttentionShape& s, bool backward, size_t* workspace);
  // The workspace cuDNN needs for the shape, or why it does not run it (the settings, cuDNN's
  // refusal, or the workspace limit).
  absl::StatusOr<size_t> CudnnAttentionWorkspace(const AttentionShape& s, bool backward);
  void WarnAttentionFallback(const absl::Status& why);  // once per message, on stderr

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;
  GemmMath gemm_math_ = GemmMath::kFp32;
  GroupedGemmImpl grouped_gemm_ = GroupedGemmImpl::kCublasLt;
  int grouped_gemm_streams_ = 4;
  std::vector<Lane> lanes_;               // side streams of the grouped GEMM (EnsureLanes)
  std::vector<cudaEvent_t> join_events_;  // one per lane
  cudaEvent_t fork_event_ = nullptr;
  AttentionImpl attention_ = AttentionImpl::kCudnn;
  std::unique_ptr<CudnnAttention> cudnn_attention_;  // created at the first cuDNN attention call
  std::set<std::string> attention_warnings_;           // shapes cuDNN refused, reported once
  size_t cudnn_workspace_limit_ = 0;                   // 1/8 of the device's memory (Create)
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t cublas_ = nullptr;  // for the grouped GEMM (created at its first call)
  bool cublas_grouped_refused_ = false;
  int64_t padded_batches_ = 0;
  void* lt_workspace_ = nullptr;
  size_t lt_workspace_bytes_ = 0;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  Result* result_device_ = nullptr;
  Result* result_host_ = nullptr;  // pinned
  std::unordered_map<GemmKey, std::unique_ptr<GemmPlan>, GemmKeyHash> plans_;
  // Per bucket of grouped products: the heuristic's algorithm for the bucket's shape (none: no algorithm).
  std::unordered_map<GemmKey, std::optional<cublasLtMatmulAlgo_t>, GemmKeyHash> bucket_algos_;
  bool time_ops_ = false;
  int open_timers_ = 0;                   // OpTimers alive (nesting depth)
  std::vector<TimedOp> timed_;            // bracketed since the last collection
  std::vector<cudaEvent_t> free_events_;  // recycled
  std::map<std::string, OpTime> op_times_;
};

}  // namespace moe::kernels
