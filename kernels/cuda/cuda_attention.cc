// CudaBackend's attention: cuDNN's fused flash attention in the BF16 mode (kernels/cuda/cudnn_attention.h),
// the built-in flash-attention kernel otherwise and as the fallback. See cuda_backend.h "Attention".
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_backend_internal.h"

namespace moe::kernels {

using cuda_internal::ScratchCarver;

// ---- Attention. ----

// cuDNN runs the attention of BF16 runs (both operands of every product are BF16 there anyway);
// FP32 runs, shapes cuDNN cannot take and AttentionImpl::kKernel use the built-in FP32 kernel.
// The BF16 copies of the operands and cuDNN's workspace share the scratch buffer.
absl::StatusOr<size_t> CudaBackend::CudnnAttentionWorkspace(const AttentionShape& s, bool backward) {
  if (attention_ != AttentionImpl::kCudnn || gemm_math_ != GemmMath::kBf16) {
    return absl::FailedPreconditionError("cuDNN attention runs only with AttentionImpl::kCudnn and BF16 GEMMs");
  }
  if (!cudnn_attention_) cudnn_attention_ = std::make_unique<CudnnAttention>(stream_);
  auto bytes = backward ? cudnn_attention_->BackwardWorkspaceBytes(s)
                        : cudnn_attention_->ForwardWorkspaceBytes(s);
  if (!bytes.ok()) return bytes.status();
  // The deterministic backward's workspace grows with B * H * T^2 (cuDNN keeps dP there): at long
  // context it could take most of the device, so past the limit the built-in kernel (O(T) memory)
  // runs the shape instead.
  if (*bytes > cudnn_workspace_limit_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        CudnnAttention::Describe(s, backward), " needs ", *bytes >> 20, " MiB of workspace, over the limit of ",
        cudnn_workspace_limit_ >> 20, " MiB (1/8 of the device's memory)"));
  }
  return bytes;
}

bool CudaBackend::UseCudnnAttention(const AttentionShape& s, bool backward, size_t* workspace) {
  if (attention_ != AttentionImpl::kCudnn || gemm_math_ != GemmMath::kBf16) return false;  // no message
  const absl::StatusOr<size_t> bytes = CudnnAttentionWorkspace(s, backward);
  if (!bytes.ok()) {
    WarnAttentionFallback(bytes.status());
    return false;
  }
  *workspace = *bytes;
  return true;
}

void CudaBackend::WarnAttentionFallback(const absl::Status& why) {
  const std::string message(why.message());
  if (attention_warnings_.insert(message).second) {
    std::fprintf(stderr, "%s; using the built-in attention kernel\n", message.c_str());
  }
}

absl::Status CudaBackend::CudnnAttentionStatus(const AttentionShape& s) {
  for (const bool backward : {false, true}) {
    const absl::StatusOr<size_t> bytes = CudnnAttentionWorkspace(s, backward);
    if (!bytes.ok()) return bytes.status();
  }
  return absl::OkStatus();
}

std::string CudaBackend::CudnnAttentionEngines(const AttentionShape& s) const {
  if (!cudnn_attention_) return "";
  auto mib = [](const absl::StatusOr<size_t>& bytes) { return bytes.ok() ? *bytes >> 20 : 0; };
  return absl::StrCat("forward ", cudnn_attention_->EngineName(s, false), " (workspace ",
                      mib(cudnn_attention_->ForwardWorkspaceBytes(s)), " MiB), backward ",
                      cudnn_attention_->EngineName(s, true), " (workspace ",
                      mib(cudnn_attention_->BackwardWorkspaceBytes(s)), " MiB)");
}

void CudaBackend::AttentionForward(const AttentionShape& s, const float* q, const float* k,
                                   const float* v, float* out, float* lse) {
  OpTimer timer(this, "attention_fwd", AttentionForwardFlops(s));
  size_t workspace = 0;
  if (!UseCudnnAttention(s, false, &workspace)) {
    cuda::LaunchAttentionForward(s, q, k, v, out, lse, stream_);
    return;
  }
  const size_t nqk = static_cast<size_t>(s.batch * s.seq * s.heads * s.qk_dim);
  const size_t nv = static_cast<size_t>(s.batch * s.seq * s.heads * s.v_dim);
  ScratchCarver c(static_cast<char*>(
      Scratch(ScratchCarver::Bytes({2 * nqk, 2 * nqk, 2 * nv, 2 * nv, workspace}))));
  CudnnAttentionForwardArgs a;
  uint16_t *q16 = c.Take<uint16_t>(nqk), *k16 = c.Take<uint16_t>(nqk), *v16 = c.Take<uint16_t>(nv);
  a.q = q16;
  a.k = k16;
  a.v = v16;
  a.o = c.Take<uint16_t>(nv);
  a.lse = lse;
  a.workspace = c.Take<char>(workspace);
  const int64_t iqk = static_cast<int64_t>(nqk), iv = static_cast<int64_t>(nv);
  cuda::LaunchPackBf16(q, 1, iqk, iqk, q16, iqk, stream_);
  cuda::LaunchPackBf16(k, 1, iqk, iqk, k16, iqk, stream_);
  cuda::LaunchPackBf16(v, 1, iv, iv, v16, iv, stream_);
  const absl::Status st = cudnn_attention_->Forward(s, a);
  if (!st.ok()) {  // refused from now on; this call runs the kernel
    WarnAttentionFallback(st);
    cuda::LaunchAttentionForward(s, q, k, v, out, lse, stream_);
    return;
  }
  cuda::LaunchUnpackBf16(a.o, 1, iv, iv, out, iv, stream_);
}

void CudaBackend::AttentionBackward(const AttentionShape& s, const float* q, const float* k,
                                    const float* v, const float* out, const float* lse,
                                    const float* d_out, float* dq, float* dk, float* dv) {
  OpTimer timer(this, "attention_bwd", AttentionBackwardFlops(s));
  const int64_t rows = s.batch * s.heads * s.seq;
  if (rows <= 0) return;
  size_t workspace = 0;
  if (!UseCudnnAttention(s, true, &workspace)) {
    float* delta = static_cast<float*>(Scratch(sizeof(float) * static_cast<size_t>(rows)));
    cuda::LaunchAttentionBackward(s, q, k, v, out, lse, d_out, delta, dq, dk, dv, stream_);
    return;
  }
  const size_t nqk = static_cast<size_t>(s.batch * s.seq * s.heads * s.qk_dim);
  const size_t nv = static_cast<size_t>(s.batch * s.seq * s.heads * s.v_dim);
  ScratchCarver c(static_cast<char*>(Scratch(ScratchCarver::Bytes(
      {2 * nqk, 2 * nqk, 2 * nv, 2 * nv, 2 * nv, 2 * nqk, 2 * nqk, 2 * nv, workspace}))));
  uint16_t *q16 = c.Take<uint16_t>(nqk), *k16 = c.Take<uint16_t>(nqk), *v16 = c.Take<uint16_t>(nv),
           *o16 = c.Take<uint16_t>(nv), *do16 = c.Take<uint16_t>(nv);
  CudnnAttentionBackwardArgs a;
  a.q = q16;
  a.k = k16;
  a.v = v16;
  a.o = o16;
  a.d_o = do16;
  a.lse = lse;
  a.dq = c.Take<uint16_t>(nqk);
  a.dk = c.Take<uint16_t>(nqk);
  a.dv = c.Take<uint16_t>(nv);
  a.workspace = c.Take<char>(workspace);
  const int64_t iqk = static_cast<int64_t>(nqk), iv = static_cast<int64_t>(nv);
  cuda::LaunchPackBf16(q, 1, iqk, iqk, q16, iqk, stream_);
  cuda::LaunchPackBf16(k, 1, iqk, iqk, k16, iqk, stream_);
  cuda::LaunchPackBf16(v, 1, iv, iv, v16, iv, stream_);
  cuda::LaunchPackBf16(out, 1, iv, iv, o16, iv, stream_);
  cuda::LaunchPackBf16(d_out, 1, iv, iv, do16, iv, stream_);
  const absl::Status st = cudnn_attention_->Backward(s, a);
  if (!st.ok()) {  // refused from now on; this call runs the kernel, its row scratch in the workspace
    WarnAttentionFallback(st);  // (which starts with cuDNN's FP32 row sums, one float per row)
    cuda::LaunchAttentionBackward(s, q, k, v, out, lse, d_out, static_cast<float*>(a.workspace), dq, dk,
                                  dv, stream_);
    return;
  }
  cuda::LaunchUnpackBf16(a.dq, 1, iqk, iqk, dq, iqk, stream_);
  cuda::LaunchUnpackBf16(a.dk, 1, iqk, iqk, dk, iqk, stream_);
  cuda::LaunchUnpackBf16(a.dv, 1, iv, iv, dv, iv, stream_);
}

}  // namespace moe::kernels
