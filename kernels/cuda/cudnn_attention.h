// Causal attention on cuDNN's fused flash-attention engines (the CUDA backend's BF16 attention).
//
// cuDNN exposes fused attention through its graph API: the caller describes scaled-dot-product
// attention as a graph of matmul, pointwise and reduction operations over 4-D tensors, and cuDNN's
// heuristics map the whole graph onto one fused kernel (FlashAttention-style: the T x T scores never
// reach memory). There are no cudnn-frontend headers on the build machines, so this file builds the
// graphs from the backend descriptors directly (BuildForward and BuildBackward in
// cudnn_attention.cc list the operations). Both graphs use the layouts of kernels/backend.h's AttentionShape:
//   q, k [B, T, H, dqk] and v, o, d_o [B, T, H, dv] as BF16 bits; lse [B, H, T] FP32, the natural
//   log-sum-exp of the scaled, causally masked scores (what the built-in kernel saves too);
//   dq, dk [B, T, H, dqk] and dv [B, T, H, dv] as BF16 bits.
// Arithmetic: BF16 products with FP32 accumulation; softmax and its statistics in FP32; the
// probabilities enter the second product as BF16 (as in every BF16 flash attention).
// The backward graph is cuDNN's deterministic form (dQ written by its own product, no atomic
// accumulation), so a step is bit for bit repeatable: exact resume depends on it.
//
// Plans (graph, heuristic engine, execution plan) are built once per shape and cached: building one is
// host work (cuDNN may compile a kernel for it). A shape cuDNN cannot run reports why, the same way
// every time, and the caller runs its own kernel instead.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"

namespace moe::kernels {

struct CudnnAttentionForwardArgs {
  const uint16_t *q = nullptr, *k = nullptr, *v = nullptr;  // BF16 bits
  uint16_t* o = nullptr;                                    // BF16 bits, written
  float* lse = nullptr;                                     // written
  void* workspace = nullptr;                                // ForwardWorkspaceBytes()
};

struct CudnnAttentionBackwardArgs {
  const uint16_t *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *d_o = nullptr;
  const float* lse = nullptr;
  uint16_t *dq = nullptr, *dk = nullptr, *dv = nullptr;  // written
  void* workspace = nullptr;                             // BackwardWorkspaceBytes()
};

class CudnnAttention {
 public:
  // Work is enqueued on `stream`; the cuDNN handle is created at the first plan.
  explicit CudnnAttention(cudaStream_t stream);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Builds (or finds) the plan for this shape and returns the device workspace it needs, or why cuDNN
  // cannot run the shape (the same error every time for that shape).
  absl::StatusOr<size_t> ForwardWorkspaceBytes(const AttentionShape& s);
  absl::StatusOr<size_t> BackwardWorkspaceBytes(const AttentionShape& s);
  // Enqueue one call; the shape's plan must exist (the *WorkspaceBytes call above succeeded). An
  // execution error (not expected once a plan exists) is returned, and the shape is refused from
  // then on, as if its plan had failed: the caller runs its own kernel instead.
  absl::Status Forward(const AttentionShape& s, const CudnnAttentionForwardArgs& a);
  absl::Status Backward(const AttentionShape& s, const CudnnAttentionBackwardArgs& a);
  // Builds and finalises every tensor and operation descriptor of the shape's graph, which needs no
  // device (cuDNN checks each descriptor's attributes as it is finalised): the number of operations.
  static absl::StatusOr<int> BuildOperations(const AttentionShape& s, bool backward);
  // "cuDNN attention forward for B.. T.. H.. qk.. v..": how messages name a call.
  static std::string Describe(const AttentionShape& s, bool backward) {
    return absl::StrCat("cuDNN attention ", backward ? "backward" : "forward", " for B", s.batch, " T", s.seq,
                        " H", s.heads, " qk", s.qk_dim, " v", s.v_dim);
  }
  // The cuDNN library loaded at run time, e.g. "9.19.0".
  static std::string LibraryVersion();
  // The engine cuDNN's heuristics picked for the shape's plan ("" when none was built): for logs.
  std::string EngineName(const AttentionShape& s, bool backward) const;

  struct Plan;  // one finalised execution plan and what executing it needs (cudnn_attention.cc)

 private:
  using Key = std::tuple<bool, int64_t, int64_t, int64_t, int64_t, int64_t>;  // backward, B, T, H, dqk, dv
  static Key KeyOf(const AttentionShape& s, bool backward) {
    return {backward, s.batch, s.seq, s.heads, s.qk_dim, s.v_dim};
  }
  absl::StatusOr<Plan*> GetPlan(const AttentionShape& s, bool backward);
  absl::Status EnsureHandle();
  // st unchanged when ok; else names the shape, and the shape is refused from now on.
  absl::Status Refuse(const AttentionShape& s, bool backward, absl::Status st);

  cudaStream_t stream_;
  void* handle_ = nullptr;  // cudnnHandle_t (kept out of this header so it needs no cuDNN include)
  absl::Status handle_status_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::map<Key, absl::Status> failures_;
};

}  // namespace moe::kernels
