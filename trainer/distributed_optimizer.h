// Gradient synchronisation and the ZeRO-1 sharded AdamW (docs/architecture.md "Gradient sync"; Megatron's
// distributed optimizer).
//
// Parameters fall in three sync groups (model/params.h ParamSync), each with its own communicator:
//   kReplicated      -> the whole world (DP x TP): every rank holds them, and under sequence
//                       parallelism each TP rank saw different tokens, so their gradients sum over
//                       DP and TP. Their optimizer state is sharded over the whole world (Megatron
//                       shards over DP after a TP all-reduce; one reduce-scatter over DP x TP does
//                       both and shards finer; a deliberate difference).
//   kTensorParallel  -> the DP group: each TP rank's slices see all tokens of its micro-batches.
//   kExpert          -> the expert-data-parallel group: the replicas of this rank's experts.
// Per group, all gradients are packed into one flat FP32 buffer cut into buckets of at most
// `bucket_elements` (so a big model issues a few large collectives, not one per tensor). Each bucket
// is reduce-scattered: rank r of the group owns block r of every bucket, and keeps the FP32 master
// weights and both Adam moments for the elements it owns only. After the update the owned elements'
// working values are all-gathered back into every rank's parameters: FP32 words in FP32 mode, 2-byte
// BF16 bits in BF16 mode.
// A one-rank group (no data parallelism for its parameters) skips the staging: AdamW reads each
// parameter's gradient where the backward left it and writes the working weights straight from the
// masters, and the group keeps no flat buffer.
//
// All of this state is Buffers in the backend's memory space, moved by ops (Copy, Fill) and the group
// communicators, so the optimizer runs wherever the model does.
//
// Overlap (parallel.overlap_grad_reduce, Megatron's overlap_grad_reduce): during the last micro-batch's
// backward the model reports each block's parameters as their gradients become final (GradsReady); a
// bucket whose every gradient is final is packed and its reduce-scatter started at once, so it runs
// while the backward goes on, and Step finishes it. The same collective on the same packed values:
// the results are bit for bit those without overlap. With overlap_param_gather, Step leaves its
// all-gathers of the new working values in flight, and the next forward finishes each bucket before it
// reads that bucket's weights (WeightsNeeded); again the same bits.
//
// The global gradient norm counts each element once: owned blocks are disjoint within a group and
// the groups hold disjoint parameters, so Σ owned g² all-reduced over the world is the exact norm.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/buffer.h"
#include "configs/config.pb.h"
#include "kernels/backend.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe::trainer {

struct SyncGroups {
  parallel::Communicator* world = nullptr;      // kReplicated (and the norm reduction)
  parallel::Communicator* dp = nullptr;         // kTensorParallel
  parallel::Communicator* expert_dp = nullptr;  // kExpert
};

struct OptimizerStepStats {
  double grad_norm = 0;  // global L2 norm of the reduced gradient, before clipping
  double clip_coef = 1;  // factor applied to the gradients (1: no clipping)
  // Wall time Step spent packing and reduce-scattering gradients (what overlap with the backward did
  // not hide); 0 without data parallelism.
  double grad_sync_s = 0;
  // A non-finite grad_norm skips the update (no master, moment or working weight changes) and names
  // the first tensor, in the model's order, whose reduced gradient holds a NaN or an infinity.
  std::string first_nonfinite;
  bool updated() const { return first_nonfinite.empty(); }
};

class DistributedOptimizer {
 public:
  // Takes the master values of every trainable parameter as the starting point (identical on all
  // replicas) and frees the full-size master and moment copies in `params`.
  DistributedOptimizer(model::ParamStore* params, SyncGroups groups, kernels::Backend* ops, bool bf16,
                       int64_t bucket_elements = 1 << 24, bool overlap_param_gather = false);

  // Reduces the gradients, clips by the global norm, applies AdamW (docs/model.md) with learning rate
  // `lr` at 1-based step `step`, and refreshes every rank's working weights; unless the norm is not
  // finite (see OptimizerStepStats). Collective over the world either way.
  // Buckets whose reduce-scatter GradsReady started are finished here; the others are started and
  // finished in bucket order.
  OptimizerStepStats Step(const config::OptimizerConfig& opt, double lr, int64_t step);

  // The gradients of the parameters [first, end) (ParamStore order, non-trainable ones included)
  // will not change again before Step: starts the reduce-scatter of each bucket this completes. Each
  // parameter at most once per step; every member of a group reports the same ranges in the same
  // order (the model's backward does), so they start the same collectives in the same order.
  void GradsReady(int64_t first, int64_t end);

  // Elements whose master and moments this rank keeps (≈ 1/group size of each group).
  int64_t owned_elements() const;

  // The owned state, as contiguous pieces of single parameters (for checkpoints): elements
  // [local_begin, local_begin + size) of `param`'s local tensor, with their state arrays. Synchronises
  // the backend, so the host may read and write them.
  struct OwnedPiece {
    model::Param* param;
    int64_t local_begin;
    int64_t size;
    float* master;
    float* adam_m;
    float* adam_v;
  };
  std::vector<OwnedPiece> OwnedPieces();

  // All-gathers the owned masters into every rank's working weights (BF16-rounded in BF16 mode) and
  // waits for them: after a checkpoint load. (Step gathers at its end, waiting unless
  // overlap_param_gather.)
  void SyncWorkingWeights();

  // overlap_param_gather: Step returns with its weight gathers in flight. The working values of the
  // parameters [first, end) (ParamStore order) are about to be read: finishes the gathers that hold
  // them (the model's forward reports each block first). FinishWeightSync finishes every one: call it
  // before reading working weights outside a forward (an export). Both do nothing when none is left.
  void WeightsNeeded(int64_t first, int64_t end);
  void FinishWeightSync();

 private:
  struct Segment {  // one parameter's place in its group's flat buffer
    model::Param* param;
    int64_t begin;  // flat offset
    bool decay;
  };
  struct Group {
    parallel::Communicator* comm = nullptr;
    std::vector<Segment> segments;
    int64_t size = 0;         // flat elements (sum of parameter sizes)
    int64_t bucket = 0;       // elements per bucket (a multiple of comm size)
    int64_t num_buckets = 0;
    // Several ranks only: [num_buckets * bucket] grads, then working values.
    Buffer<float> flat;
    // Owned state, concatenated over buckets: block comm->rank() of each bucket. With one rank it is
    // laid out as the flat buffer would be (owned-state index = flat index).
    Buffer<float> master, adam_m, adam_v;
    Buffer<float> grad;  // several ranks: reduced gradients of the owned blocks
    // Several ranks: [owned] this rank's working values on their way to the all-gathers, and in BF16
    // mode the gathered working values: FP32 mode gathers FP32 words into `flat`, BF16 mode BF16 bits
    // into flat_bits (half the bytes on the wire, as Megatron's distributed optimizer gathers BF16).
    Buffer<float> mine;
    Buffer<uint16_t> mine_bits, flat_bits;
    // Several ranks, per bucket: gradient elements not yet final in this step (GradsReady), and the
    // bucket's reduce-scatter once started.
    std::vector<int64_t> unready;
    std::vector<std::unique_ptr<parallel::PendingCollective>> in_flight;
    // Several ranks, per bucket: its working-value gather while in flight.
    std::vector<std::unique_ptr<parallel::PendingCollective>> gathering;
    bool staged() const { return comm->size() > 1; }
    int64_t block() const { return bucket / comm->size(); }
    int64_t owned() const { return num_buckets * block(); }
  };

  // Packs bucket b's gradients (and the padding) into the flat buffer and starts its reduce-scatter.
  void StartBucket(Group& g, int64_t b);
  // Every bucket's gradients final again from the next step's GradsReady on.
  static void ResetReadiness(Group& g);
  // Finishes bucket b's gather and copies its pieces into the parameters' working copies (from flat,
  // or flat_bits in BF16 mode).
  void FinishGather(Group& g, int64_t b);
  // Test on every started collective.
  void TestPending();
  // The reduced gradient of an owned piece (segment s, owned-state index o, flat index begin): in the
  // group's reduced buffer, or for a one-rank group in the parameter's own gradient.
  static const float* OwnedGrad(Group& g, const Segment& s, int64_t o, int64_t begin);
  // Starts every bucket's gather of the owned working values; with `wait`, finishes them.
  void GatherWorking(Group& g, bool wait);
  // Calls fn(segment, begin, end) for each segment's piece [begin, end) (flat indices) in bucket b.
  template <typename Fn>
  void ForEachPieceInBucket(Group& g, int64_t b, Fn fn);
  // Calls fn(group, bucket, elements) for each bucket of a several-rank group that holds elements of
  // parameters [first, end) (ParamStore order), per parameter.
  template <typename Fn>
  void ForEachStagedBucket(int64_t first, int64_t end, Fn fn);
  // Calls fn(segment, bucket, owned flat range [begin, end)) for each owned piece of each segment.
  template <typename Fn>
  void ForEachOwnedRange(Group& g, Fn fn);

  // The name of the first parameter (model order) with a non-finite reduced gradient on any rank.
  std::string FirstNonFinite();

  kernels::Backend* ops_;
  bool bf16_;
  bool overlap_param_gather_;
  parallel::Communicator* world_;
  std::vector<Group> groups_;
  std::vector<const model::Param*> order_;  // trainable parameters in the model's order
  // By ParamStore index: the parameter's {group, segment}, or {-1, -1} for a non-trainable one.
  std::vector<std::pair<int, int>> segment_of_;
};

}  // namespace moe::trainer
