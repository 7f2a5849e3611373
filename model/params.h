// Parameters of the model, by Hugging Face name. One visitor (ForEach) serves init, load, save,
// gradient sync and the optimizer (gemma.cpp's ForEachTensor).
//
// Each trainable tensor has (base/buffer.h Buffers, in the backend's memory space):
//   master  FP32, the full-precision copy: initialisation and weight loading write it; the ZeRO-1
//           optimizer (trainer/distributed_optimizer) then keeps only its owned slice and frees this
//   working what forward/backward read: equal to master in FP32 mode; in BF16 mode the BF16 rounding
//           of master, kept as 2-byte BF16 bits (working_bf16) for the matrices and in FP32 words
//           (`working`) for the norm weights, which the norm kernels read as FP32
//   grad    FP32, accumulated over micro-batches (+=). ZeroGrads zeroes it lazily: the first
//           contribution writes (Param::TakeGradBeta, GradForAccumulate), and FinishGrads zeroes those
//           that got none
// The Adam moments live in the optimizer. Buffers (e_score_correction_bias) keep `working` equal to
// `master` (both FP32, updated together by the model's bias update) and are never touched by the
// optimizer or weight decay.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/buffer.h"
#include "kernels/backend.h"

namespace moe::model {

enum class ParamKind {
  kMatrix,  // >= 2 dims: Normal(0, initializer_range) init, weight decay
  kNorm,    // RMSNorm weight: ones, no decay
  kBuffer,  // not trained by gradients (correction bias): zeros
};

// Which ranks hold copies of a parameter, hence over which group its gradient is summed and its
// optimizer state sharded (docs/architecture.md "Gradient sync").
enum class ParamSync {
  kReplicated,      // every rank holds it (norms, embedding, head, latent down-projections, router);
                    // under sequence parallelism each TP rank saw different tokens: sum over the world
  kTensorParallel,  // a TP shard (column/row-parallel linears): sum over the DP group
  kExpert,          // a routed expert on this EP rank: sum over the expert-data-parallel group
};

// A parameter may be a slice of its global tensor along one dimension (tensor parallelism).
struct ShardSpec {
  int dim = -1;            // -1: the whole tensor; 0: rows; 1: columns (2-D tensors)
  int64_t offset = 0;      // first global row/column held here
  std::vector<int64_t> global_shape;  // empty: same as the local shape
};

struct Param {
  std::string name;            // Hugging Face name, e.g. "model.layers.3.mlp.gate.weight"
  std::vector<int64_t> shape;  // local shape (== global shape unless sharded)
  ParamKind kind = ParamKind::kMatrix;
  ParamSync sync = ParamSync::kReplicated;
  ShardSpec shard;
  Buffer<float> master;
  Buffer<float> working;           // the FP32 working copy; empty where working_bf16 holds it
  Buffer<float> grad;
  // Set by ParamStore::ZeroGrads: the gradient is zero but its storage not yet (zeroing every gradient
  // is a pass over all of them each step, and the weight-gradient products would then read the zeros
  // back to add to them). Cleared by the first contribution.
  bool grad_unwritten = false;
  // BF16 mode's working copy of the trainable matrices, as 2-byte BF16 bits: the products read it in
  // place (kernels::GemmProblem::b_bf16), the embedding lookup too. Written by ParamStore::RefreshWorking
  // and the optimizer (AdamW's working output, its weight gathering). Empty otherwise.
  Buffer<uint16_t> working_bf16;

  // working_bf16 when it is kept, else null (the kernels then read `working`).
  const uint16_t* working_bits() const { return working_bf16.empty() ? nullptr : working_bf16.data(); }
  // Element i of the working copy as FP32, from whichever form holds it (host reads, on a synchronised
  // buffer).
  float WorkingValue(int64_t i) const;
  // The whole working copy as FP32 values on the host (BF16 bits widened), copied out through `ops`.
  std::vector<float> WorkingValues(kernels::Backend& ops) const;

  int64_t numel() const;
  const std::vector<int64_t>& global_shape() const {
    return shard.global_shape.empty() ? shape : shard.global_shape;
  }
  // Flat index in the global tensor of local element i.
  int64_t GlobalIndex(int64_t i) const;
  // Local element holding global flat index g, or -1 if this shard does not hold it.
  int64_t LocalIndex(int64_t g) const;
  // master <- this shard's slice of the whole global tensor `global` (global_shape() elements), copied
  // in through `ops`.
  void SetMasterFromGlobal(const std::vector<float>& global, kernels::Backend& ops);
  bool trainable() const { return kind != ParamKind::kBuffer; }
  bool decays() const { return kind == ParamKind::kMatrix; }

  // The beta of a product that produces the whole gradient (C = grad): 0 (write) for the first
  // contribution since ZeroGrads, else 1 (add). Marks the gradient written.
  float TakeGradBeta() {
    const bool first = grad_unwritten;
    grad_unwritten = false;
    return first ? 0.0f : 1.0f;
  }
  // The gradient for a kernel that adds into it (norm weights, the embedding's rows): zeroed first
  // when unwritten. Marks it written.
  float* GradForAccumulate(kernels::Backend& ops);
};

// TakeGradBeta for one product per parameter in a single call (the routed experts' grouped weight
// gradients), which takes one beta for all: 0 when every one is unwritten; otherwise the unwritten
// ones are zeroed and it is 1.
float TakeGradBeta(kernels::Backend& ops, const std::vector<Param*>& params);

class ParamStore {
 public:
  // Registers a tensor; the returned pointer stays valid for the store's lifetime.
  Param* Add(const std::string& name, std::vector<int64_t> shape, ParamKind kind,
             ParamSync sync = ParamSync::kReplicated, ShardSpec shard = {});
  Param* Find(const std::string& name);
  const Param* Find(const std::string& name) const;

  // In registration order (the model's natural order).
  void ForEach(const std::function<void(Param&)>& fn);
  void ForEach(const std::function<void(const Param&)>& fn) const;
  int64_t size() const { return static_cast<int64_t>(params_.size()); }

  // Seeded per global tensor name and element index, so any layout or shard starts from the same
  // values: element i of tensor `name` is a function of (seed, name, i) only. Drawn on the host and
  // copied in through `ops` (the backend whose memory holds the tensors).
  void Initialize(uint64_t seed, double init_std, kernels::Backend& ops);
  // The working copies from the masters, by ops: FP32 mode: working = master; BF16 mode: the BF16
  // rounding of master, as bits (working_bf16, `working` freed) for the trainable matrices and in
  // `working` for the rest (norm weights rounded, buffers as they are).
  void RefreshWorking(bool bf16, kernels::Backend& ops);
  // Every gradient <- 0 (each step, before the first micro-batch), lazily: marks them unwritten
  // (Param::grad_unwritten); the backward's first contribution to each writes it.
  void ZeroGrads();
  // Zeroes the gradients nothing contributed to since ZeroGrads, so that every gradient holds its
  // value; the model calls it at the end of each backward. The ranged form: parameters [first, end),
  // in ForEach order.
  void FinishGrads(kernels::Backend& ops);
  void FinishGrads(kernels::Backend& ops, int64_t first, int64_t end);

 private:
  std::vector<std::unique_ptr<Param>> params_;
  absl::flat_hash_map<std::string, Param*> by_name_;
};

// p with operand B = w's working copy from element `offset` on, in the form it is kept (FP32 words, or
// BF16 bits in BF16 mode): how every product reads a weight.
kernels::GemmProblem WithWorkingB(kernels::GemmProblem p, const Param& w, int64_t offset = 0);

// L2 norm of every trainable gradient held here (FP64 accumulation); one process's view.
double LocalGradNorm(kernels::Backend& ops, const ParamStore& params);
// L2 norm of one tensor's gradient.
double GradNorm(kernels::Backend& ops, const Param& p);

// Counter-based N(0,1) sample for (seed, name, index): layout-independent initialisation.
double SeededNormal(uint64_t seed, const std::string& name, int64_t index);

}  // namespace moe::model
