// CudaBackend: the op interface on the GPU. Matrix products go through cuBLASLt (plans cached per
// GEMM signature; cuda_gemm.cc), attention through cuDNN or the built-in kernel (cuda_attention.cc);
// every other op is a hand-written kernel launched through kernels/cuda/kernels.h.
// See cuda_backend.h for the execution model and numerics.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend_internal.h"

namespace moe::kernels {
namespace {

absl::Status CudaError(const char* what, int device, cudaError_t err) {
  return absl::FailedPreconditionError(absl::StrCat("CUDA backend (device ", device, "): ", what,
                                                    " failed: ", cudaGetErrorString(err)));
}

}  // namespace

using cuda_internal::RoundUp;
using cuda_internal::ScratchCarver;

CudaBackend::CudaBackend(const CudaBackendOptions& options)
    : device_(options.device),
      gemm_math_(options.gemm_math),
      grouped_gemm_(options.grouped_gemm),
      grouped_gemm_streams_(options.grouped_gemm_streams),
      attention_(options.attention) {}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return CudaError("cudaGetDeviceCount", options.device, err);
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA backend: device ", options.device,
                                                   " requested but ", count, " visible"));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(options));
  if ((err = cudaSetDevice(options.device)) != cudaSuccess) {
    return CudaError("cudaSetDevice", options.device, err);
  }
  if (options.stream != nullptr) {
    b->stream_ = options.stream;
  } else {
    if ((err = cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking)) != cudaSuccess) {
      return CudaError("cudaStreamCreate", options.device, err);
    }
    b->owns_stream_ = true;
  }
  const cublasStatus_t st = cublasLtCreate(&b->lt_);
  if (st != CUBLAS_STATUS_SUCCESS) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA backend (device ", options.device,
                                                      "): cublasLtCreate failed: ",
                                                      cublasLtGetStatusString(st)));
  }
  b->lt_workspace_bytes_ = options.cublaslt_workspace_bytes;
  if (b->lt_workspace_bytes_ > 0 &&
      (err = cudaMalloc(&b->lt_workspace_, b->lt_workspace_bytes_)) != cudaSuccess) {
    return CudaError("cudaMalloc (cuBLASLt workspace)", options.device, err);
  }
  if ((err = cudaMalloc(reinterpret_cast<void**>(&b->result_device_), sizeof(Result))) !=
      cudaSuccess) {
    return CudaError("cudaMalloc (result)", options.device, err);
  }
  if ((err = cudaMallocHost(reinterpret_cast<void**>(&b->result_host_), sizeof(Result))) !=
      cudaSuccess) {
    return CudaError("cudaMallocHost (result)", options.device, err);
  }
  size_t free_bytes = 0, total_bytes = 0;
  if ((err = cudaMemGetInfo(&free_bytes, &total_bytes)) != cudaSuccess) {
    return CudaError("cudaMemGetInfo", options.device, err);
  }
  b->cudnn_workspace_limit_ = total_bytes / 8;
  return b;
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (const TimedOp& t : timed_) free_events_.insert(free_events_.end(), {t.start, t.stop});
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  plans_.clear();
  cudnn_attention_.reset();
  for (size_t l = 0; l < lanes_.size(); ++l) {
    cudaStreamSynchronize(lanes_[l].stream);
    cudaStreamDestroy(lanes_[l].stream);
    if (lanes_[l].lt_workspace != nullptr) cudaFree(lanes_[l].lt_workspace);
    cudaEventDestroy(join_events_[l]);
  }
  if (fork_event_ != nullptr) cudaEventDestroy(fork_event_);
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (result_host_ != nullptr) cudaFreeHost(result_host_);
  if (result_device_ != nullptr) cudaFree(result_device_);
  if (lt_workspace_ != nullptr) cudaFree(lt_workspace_);
  if (lt_ != nullptr) cublasLtDestroy(lt_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (owns_stream_ && stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaBackend::Synchronize() { MOE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

// Pageable host memory: the runtime stages src before cudaMemcpyAsync returns, and lands it in stream
// order.
void CudaBackend::CopyFromHost(const void* src, size_t bytes, void* dst) {
  OpTimer timer(this, "copy_from_host");
  if (bytes > 0) MOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::CopyToHost(const void* src, size_t bytes, void* dst) {
  {
    OpTimer timer(this, "copy_to_host");
    if (bytes > 0) MOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- Op times. ----

CudaBackend::OpTimer::OpTimer(CudaBackend* b, const char* name, double flops) : b_(b) {
  if (++b_->open_timers_ > 1 || !b_->time_ops_) return;  // nested in a timed op, or not timing
  recording_ = true;
  if (b_->timed_.size() >= 8192) b_->CollectOpTimes();  // bound the events in flight
  index_ = b_->timed_.size();
  b_->timed_.push_back({name, flops, b_->TakeEvent(), b_->TakeEvent()});
  MOE_CUDA_CHECK(cudaEventRecord(b_->timed_[index_].start, b_->stream_));
}

CudaBackend::OpTimer::~OpTimer() {
  if (recording_) MOE_CUDA_CHECK(cudaEventRecord(b_->timed_[index_].stop, b_->stream_));
  --b_->open_timers_;
}

cudaEvent_t CudaBackend::TakeEvent() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e;
  MOE_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void CudaBackend::CollectOpTimes() {
  Synchronize();
  for (const TimedOp& t : timed_) {
    float ms = 0;
    MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, t.start, t.stop));
    OpTime& o = op_times_[t.name];
    o.seconds += 1e-3 * ms;
    o.calls += 1;
    o.flops += t.flops;
    free_events_.push_back(t.start);
    free_events_.push_back(t.stop);
  }
  timed_.clear();
}

std::map<std::string, OpTime> CudaBackend::OpTimes() {
  CollectOpTimes();
  return op_times_;
}

void CudaBackend::ResetOpTimes() {
  CollectOpTimes();
  op_times_.clear();
}

void* CudaBackend::Scratch(size_t bytes) {
  bytes = RoundUp(bytes > 0 ? bytes : 1, 256);
  if (bytes > scratch_bytes_) {
    const size_t grown = bytes > 2 * scratch_bytes_ ? bytes : 2 * scratch_bytes_;
    if (scratch_ != nullptr) {
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // earlier ops may still read it
      MOE_CUDA_CHECK(cudaFree(scratch_));
      scratch_ = nullptr;
    }
    MOE_CUDA_CHECK(cudaMalloc(&scratch_, grown));
    scratch_bytes_ = grown;
  }
  return scratch_;
}

CudaBackend::Result CudaBackend::FetchResult() {
  MOE_CUDA_CHECK(cudaMemcpyAsync(result_host_, result_device_, sizeof(Result),
                                 cudaMemcpyDeviceToHost, stream_));
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return *result_host_;
}

// ---- Data movement. ----

void CudaBackend::CopyBf16(const uint16_t* src, uint16_t* dst, int64_t n) {
  OpTimer timer(this, "copy_bf16");
  if (n > 0) {
    MOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(uint16_t) * static_cast<size_t>(n), cudaMemcpyDefault, stream_));
  }
}

void CudaBackend::Copy2D(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows,
                         int64_t cols, bool accumulate) {
  OpTimer timer(this, "copy2d");
  cuda::LaunchCopy2D(src, src_ld, dst, dst_ld, rows, cols, accumulate, stream_);
}

void CudaBackend::Fill(float* x, int64_t n, float value) {
  OpTimer timer(this, "fill");
  cuda::LaunchFill(x, n, value, stream_);
}

void CudaBackend::RowDot(const float* a, ValuesIn b, int64_t rows, int64_t dim, float* out) {
  OpTimer timer(this, "row_dot");
  cuda::LaunchRowDot(a, b, rows, dim, out, stream_);
}

void CudaBackend::ScaleRows(float* x, const float* s, int64_t rows, int64_t dim) {
  OpTimer timer(this, "scale_rows");
  cuda::LaunchScaleRows(x, s, rows, dim, stream_);
}

// ---- Elementwise and reductions. ----

void CudaBackend::RoundToBf16(float* x, int64_t n) {
  OpTimer timer(this, "round_bf16");
  cuda::LaunchRoundToBf16(x, n, stream_);
}

void CudaBackend::PackBf16(const float* x, int64_t n, uint16_t* bits) {
  OpTimer timer(this, "pack_bf16");
  cuda::LaunchPackBf16(x, 1, n, n, bits, n, stream_);
}

void CudaBackend::RoundAndPackBf16(float* x, int64_t n, uint16_t* bits) {
  OpTimer timer(this, "round_pack_bf16");
  cuda::LaunchRoundAndPackBf16(x, n, bits, stream_);
}

void CudaBackend::UnpackBf16(const uint16_t* bits, int64_t n, float* x) {
  OpTimer timer(this, "unpack_bf16");
  cuda::LaunchUnpackBf16(bits, 1, n, n, x, n, stream_);
}
void CudaBackend::Add(const float* a, float* y, int64_t n) {
  OpTimer timer(this, "add");
  cuda::LaunchAdd(a, y, n, stream_);
}
void CudaBackend::AddAndRoundToBf16(const float* a, float* y, int64_t n) {
  OpTimer timer(this, "add_round_bf16");
  cuda::LaunchAddAndRoundToBf16(a, y, n, stream_);
}
void CudaBackend::Scale(float* x, int64_t n, float s) {
  OpTimer timer(this, "scale");
  cuda::LaunchScale(x, n, s, stream_);
}

double CudaBackend::SumSquares(const float* x, int64_t n) {
  OpTimer timer(this, "sum_squares");
  const int64_t partials = cuda::SumSquaresPartials(n);
  double* scratch = static_cast<double*>(Scratch(sizeof(double) * static_cast<size_t>(partials)));
  cuda::LaunchSumSquares(x, n, scratch, &result_device_->value, stream_);
  return FetchResult().value;
}

void CudaBackend::SumSquaresEach(const std::vector<Piece>& pieces, double* out) {
  OpTimer timer(this, "sum_squares");
  if (pieces.empty()) return;
  // Two launches for all pieces (each piece's chunks, then each piece's total), the same bits as
  // SumSquares per piece; one copy back and one wait.
  std::vector<cuda::SumSquaresPiece> table(pieces.size());
  int64_t partials = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    table[i] = {pieces[i].data, pieces[i].n, partials};
    partials += cuda::SumSquaresPartials(pieces[i].n);
  }
  const size_t partial_count = static_cast<size_t>(std::max<int64_t>(partials, 1));
  ScratchCarver c(Scratch(ScratchCarver::Bytes({sizeof(double) * pieces.size(),
                                                sizeof(cuda::SumSquaresPiece) * pieces.size(),
                                                sizeof(double) * partial_count})));
  double* sums = c.Take<double>(pieces.size());
  auto* device_table = c.Take<cuda::SumSquaresPiece>(pieces.size());
  double* partial = c.Take<double>(partial_count);
  MOE_CUDA_CHECK(cudaMemcpyAsync(device_table, table.data(), sizeof(cuda::SumSquaresPiece) * table.size(),
                                 cudaMemcpyHostToDevice, stream_));
  cuda::LaunchSumSquaresEach(device_table, static_cast<int64_t>(table.size()), partials, partial, sums, stream_);
  MOE_CUDA_CHECK(cudaMemcpyAsync(out, sums, sizeof(double) * pieces.size(), cudaMemcpyDeviceToHost, stream_));
  Synchronize();  // also keeps `table` alive until its copy has run
}

void CudaBackend::SwigluForward(const float* a, const float* c, ValuesOut m, int64_t n) {
  OpTimer timer(this, "swiglu_fwd");
  cuda::LaunchSwigluForward(a, c, m, n, stream_);
}

void CudaBackend::SwigluBackward(ValuesIn a, ValuesIn c, const float* dm, ValuesOut da, ValuesOut dc,
                                 int64_t n) {
  OpTimer timer(this, "swiglu_bwd");
  cuda::LaunchSwigluBackward(a, c, dm, da, dc, n, stream_);
}

namespace {
// The kernels' AdamW settings: the CPU twin's bias corrections, bit for bit (FP64 pow, rounded to FP32).
cuda::AdamWArgs AdamWArgsOf(const AdamWParams& p) {
  MOE_CUDA_REQUIRE(p.step >= 1, "AdamW step is 1-based");
  cuda::AdamWArgs args;
  args.lr = p.lr;
  args.beta1 = p.beta1;
  args.beta2 = p.beta2;
  args.eps = p.eps;
  args.weight_decay = p.weight_decay;
  args.grad_scale = p.grad_scale;
  args.bias_correction1 = static_cast<float>(
      1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step)));
  args.bias_correction2 = static_cast<float>(
      1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step)));
  return args;
}
}  // namespace

void CudaBackend::AdamW(const AdamWParams& p, float* param, const float* grad, float* m, float* v,
                        int64_t n, const AdamWWorking& working) {
  OpTimer timer(this, "adamw");
  MOE_CUDA_REQUIRE(working.bits == nullptr || working.round_bf16, "AdamW: working bits need round_bf16");
  cuda::LaunchAdamW(AdamWArgsOf(p), param, grad, m, v, n, working, stream_);
}

void CudaBackend::AdamWEach(const AdamWParams& p, const std::vector<AdamWPiece>& pieces) {
  OpTimer timer(this, "adamw");
  if (pieces.empty()) return;
  std::vector<cuda::AdamWPieceArgs> table(pieces.size());
  int64_t chunks = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const AdamWPiece& x = pieces[i];
    MOE_CUDA_REQUIRE(x.working.bits == nullptr || x.working.round_bf16, "AdamW: working bits need round_bf16");
    table[i] = {x.param, x.grad, x.m, x.v, x.working.values, x.working.bits, x.n, x.weight_decay,
                x.working.round_bf16, chunks};
    chunks += cuda::AdamWChunks(x.n);
  }
  // The table goes to the device through the scratch buffer (a pageable copy: cudaMemcpyAsync has
  // staged it by the time it returns, so `table` may go).
  auto* device_table = static_cast<cuda::AdamWPieceArgs*>(Scratch(sizeof(cuda::AdamWPieceArgs) * table.size()));
  MOE_CUDA_CHECK(cudaMemcpyAsync(device_table, table.data(), sizeof(cuda::AdamWPieceArgs) * table.size(),
                                 cudaMemcpyHostToDevice, stream_));
  cuda::LaunchAdamWEach(AdamWArgsOf(p), device_table, static_cast<int64_t>(table.size()), chunks, stream_);
}

// ---- Rows. ----

void CudaBackend::GatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim,
                             float* dst) {
  OpTimer timer(this, "gather_rows");
  cuda::LaunchGatherRows(src, idx, n, dim, dst, stream_);
}

void CudaBackend::GatherRowBlocks(const float* src, const std::vector<RowBlock>& blocks, int64_t dim, float* dst) {
  OpTimer timer(this, "gather_row_blocks");
  const int64_t count = static_cast<int64_t>(blocks.size());
  std::vector<int64_t> table(2 * count + 1, 0);  // first [count + 1], then src_row [count]
  for (int64_t b = 0; b < count; ++b) {
    table[b + 1] = table[b] + blocks[b].rows;
    table[count + 1 + b] = blocks[b].src_row;
  }
  if (table[count] == 0 || dim <= 0) return;
  // Staged by cudaMemcpyAsync before it returns (pageable), as AdamWEach's table.
  auto* device_table = static_cast<int64_t*>(Scratch(sizeof(int64_t) * table.size()));
  MOE_CUDA_CHECK(cudaMemcpyAsync(device_table, table.data(), sizeof(int64_t) * table.size(), cudaMemcpyHostToDevice,
                                 stream_));
  cuda::LaunchGatherRowBlocks(src, device_table, count, table[count], dim, dst, stream_);
}

void CudaBackend::ScatterAddRows(const float* src, const int32_t* idx, const float* scale,
                                 int64_t n, int64_t dim, float* dst) {
  OpTimer timer(this, "scatter_add_rows");
  if (n <= 0 || dim <= 0) return;
  const size_t bytes = cuda::ScatterAddWorkspaceBytes(n);
  void* ws = Scratch(bytes);
  cuda::LaunchScatterAddRows(src, idx, scale, n, dim, dst, ws, bytes, stream_);
}

void CudaBackend::EmbeddingForward(const int32_t* ids, int64_t n, const float* table,
                                   const uint16_t* table_bf16, int64_t dim, float* out) {
  OpTimer timer(this, "embedding_fwd");
  if (table_bf16 != nullptr) {
    cuda::LaunchGatherRowsBf16(table_bf16, ids, n, dim, out, stream_);
  } else {
    cuda::LaunchGatherRows(table, ids, n, dim, out, stream_);
  }
}

void CudaBackend::EmbeddingBackward(const int32_t* ids, int64_t n, const float* d_out,
                                    int64_t dim, float* d_table) {
  OpTimer timer(this, "embedding_bwd");
  ScatterAddRows(d_out, ids, nullptr, n, dim, d_table);
}

// ---- Norms, RoPE. ----

void CudaBackend::RmsNormForward(const float* x, const float* w, int64_t rows, int64_t dim,
                                 float eps, bool round_normalized, float* y, float* rstd) {
  OpTimer timer(this, "rmsnorm_fwd");
  cuda::LaunchRmsNormForward(x, w, rows, dim, eps, round_normalized, y, rstd, stream_);
}

void CudaBackend::RmsNormBackward(ValuesIn x, const float* w, const float* rstd,
                                  const float* dy, int64_t rows, int64_t dim, float* dx,
                                  float* dw) {
  OpTimer timer(this, "rmsnorm_bwd");
  if (rows <= 0 || dim <= 0) return;
  float* partial = static_cast<float*>(
      Scratch(sizeof(float) * static_cast<size_t>(cuda::RmsNormDwChunks(rows) * dim)));
  cuda::LaunchRmsNormBackward(x, w, rstd, dy, rows, dim, dx, dw, partial, stream_);
}

void CudaBackend::RopeForward(const RopeView& v) {
  OpTimer timer(this, "rope_fwd");
  cuda::LaunchRope(v, false, stream_);
}
void CudaBackend::RopeBackward(const RopeView& v) {
  OpTimer timer(this, "rope_bwd");
  cuda::LaunchRope(v, true, stream_);
}

// ---- Router, loss. ----

void CudaBackend::RouterForward(const RouterParams& p, const float* logits, const float* bias,
                                int64_t n, float* scores, int32_t* selected, float* weights) {
  OpTimer timer(this, "router_fwd");
  cuda::LaunchRouterForward(p, logits, bias, n, scores, selected, weights, stream_);
}

void CudaBackend::RouterBackward(const RouterParams& p, const float* scores,
                                 const int32_t* selected, const float* d_weights,
                                 const float* d_scores_extra, int64_t n, float* d_logits) {
  OpTimer timer(this, "router_bwd");
  cuda::LaunchRouterBackward(p, scores, selected, d_weights, d_scores_extra, n, d_logits, stream_);
}

void CudaBackend::BalanceStats(const float* scores, int64_t n, int64_t num_experts,
                               int64_t top_k, int64_t first_token, int64_t group_len,
                               int64_t groups, double* stats) {
  OpTimer timer(this, "balance_stats");
  const size_t bytes = cuda::BalanceStatsScratchBytes(n, num_experts, group_len, groups);
  void* ws = bytes > 0 ? Scratch(bytes) : nullptr;
  cuda::LaunchBalanceStats(scores, n, num_experts, top_k, first_token, group_len, groups, stats,
                           ws, bytes, stream_);
}

void CudaBackend::BalanceLossGrad(const float* scores, int64_t n, int64_t num_experts,
                                  int64_t first_token, int64_t group_len, const float* f,
                                  double coef, float* d_scores) {
  OpTimer timer(this, "balance_grad");
  cuda::LaunchBalanceLossGrad(scores, n, num_experts, first_token, group_len, f, coef, d_scores,
                              stream_);
}

void CudaBackend::SortByExpert(const int32_t* selected, int64_t n, int64_t k, int64_t num_experts,
                               int64_t capacity, int32_t* counts, int32_t* row_token, int32_t* row_slot) {
  OpTimer timer(this, "sort_by_expert");
  const size_t bytes = cuda::SortByExpertWorkspaceBytes(n * k, num_experts);
  cuda::LaunchSortByExpert(selected, n * k, k, num_experts, capacity, counts, row_token, row_slot, Scratch(bytes),
                           bytes, stream_);
}

double CudaBackend::CrossEntropy(const float* logits, const int32_t* targets, int64_t n,
                                 int64_t vocab, float grad_scale, float* d_logits) {
  OpTimer timer(this, "cross_entropy");
  double* row_loss =
      static_cast<double*>(Scratch(sizeof(double) * static_cast<size_t>(n > 0 ? n : 1)));
  MOE_CUDA_CHECK(cudaMemsetAsync(&result_device_->flag, 0, sizeof(int), stream_));
  cuda::LaunchCrossEntropy(logits, targets, n, vocab, grad_scale, d_logits, row_loss,
                           &result_device_->value, &result_device_->flag, stream_);
  const Result r = FetchResult();
  MOE_CUDA_REQUIRE(r.flag == 0, "cross-entropy target out of vocabulary range");
  return r.value;
}

}  // namespace moe::kernels
