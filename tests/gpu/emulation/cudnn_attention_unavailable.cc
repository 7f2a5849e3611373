// The emulation has no cuDNN: this stands in for kernels/cuda/cudnn_attention.cc and refuses every
// shape, as cuDNN does on a machine without a device, so the emulated CUDA backend runs the built-in
// attention kernel (the one the emulation checks) in its BF16 mode too.
#include "kernels/cuda/cudnn_attention.h"

namespace moe::kernels {

struct CudnnAttention::Plan {};

CudnnAttention::CudnnAttention(cudaStream_t stream) : stream_(stream) {}
CudnnAttention::~CudnnAttention() = default;

absl::StatusOr<CudnnAttention::Plan*> CudnnAttention::GetPlan(const AttentionShape&, bool) {
  return absl::UnimplementedError("cuDNN attention: not available under the CPU emulation");
}
absl::StatusOr<size_t> CudnnAttention::ForwardWorkspaceBytes(const AttentionShape& s) {
  return GetPlan(s, false).status();
}
absl::StatusOr<size_t> CudnnAttention::BackwardWorkspaceBytes(const AttentionShape& s) {
  return GetPlan(s, true).status();
}
absl::Status CudnnAttention::Forward(const AttentionShape& s, const CudnnAttentionForwardArgs&) {
  return GetPlan(s, false).status();
}
absl::Status CudnnAttention::Backward(const AttentionShape& s, const CudnnAttentionBackwardArgs&) {
  return GetPlan(s, true).status();
}
std::string CudnnAttention::EngineName(const AttentionShape&, bool) const { return ""; }
std::string CudnnAttention::LibraryVersion() { return "none (CPU emulation)"; }

}  // namespace moe::kernels
