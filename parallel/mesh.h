// The process mesh: how the world's ranks split into data-parallel (DP), tensor-parallel (TP),
// expert-parallel (EP) and expert-data-parallel groups (docs/architecture.md, "Parallel layout").
//
//   world = dp x tp, TP innermost:   world rank = dp_rank * tp + tp_rank
//     tp group:        the tp consecutive ranks with the same dp_rank (one node)
//     dp group:        the dp ranks with the same tp_rank (stride tp)
//   EP divides the world independently of DP/TP:
//     ep group:        consecutive blocks of ep ranks; ep_rank = rank % ep, group index = rank / ep
//     expert_dp group: the world/ep ranks with the same ep_rank (each expert's replicas)
//
// Example, 4 ranks, (dp, tp, ep) = (2, 2, 4): tp groups {0,1} {2,3}; dp groups {0,2} {1,3};
// ep group {0,1,2,3}; expert_dp groups {0} {1} {2} {3}.
//
// ValidateLayout is the one place that knows which (dp, tp, ep) a model and batch allow; it returns
// one line naming the offending fields and values.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "parallel/communicator.h"
#include "parallel/communicator_mpi.h"

namespace moe::parallel {

struct MeshShape {
  int64_t dp = 1, tp = 1, ep = 1;
};

// The world-size checks alone: dp, tp, ep >= 1; world_size == dp * tp; ep divides world_size.
absl::Status ValidateMeshShape(const MeshShape& shape, int world_size);

// ValidateMeshShape plus what the model and batch need: ep divides n_routed_experts; tp divides
// num_attention_heads, intermediate_size and n_shared_experts * moe_intermediate_size; tp divides
// micro_batch_size * seq_len (sequence parallelism splits a micro-batch's tokens over TP).
// Global batch divisibility by dp is checked by the config validator.
absl::Status ValidateLayout(const MeshShape& shape, int world_size, const moe::config::ModelConfig& model,
                            int64_t micro_batch_size, int64_t seq_len);

class ProcessMesh {
 public:
  // Splits MPI_COMM_WORLD into the groups above (collective over the world: every rank must call it
  // with the same shape). MPI must be initialised (MpiWorld::Init); destroy the mesh before
  // MpiWorld. Every group's collectives time out after `timeout_seconds` (ParallelConfig
  // collective_timeout_s).
  static absl::StatusOr<std::unique_ptr<ProcessMesh>> Create(const MeshShape& shape,
                                                             double timeout_seconds);

  const MeshShape& shape() const { return shape_; }
  int world_size() const { return world_size_; }
  int world_rank() const { return world_rank_; }
  int dp_rank() const { return dp_rank_; }
  int tp_rank() const { return tp_rank_; }
  int ep_rank() const { return ep_rank_; }
  int expert_dp_rank() const { return expert_dp_rank_; }  // = world_rank / ep

  MpiCommunicator& world() { return *world_; }
  MpiCommunicator& dp() { return *dp_; }
  MpiCommunicator& tp() { return *tp_; }
  MpiCommunicator& ep() { return *ep_; }
  MpiCommunicator& expert_dp() { return *expert_dp_; }

 private:
  ProcessMesh() = default;

  MeshShape shape_;
  int world_size_ = 1, world_rank_ = 0;
  int dp_rank_ = 0, tp_rank_ = 0, ep_rank_ = 0, expert_dp_rank_ = 0;
  std::unique_ptr<MpiCommunicator> world_, dp_, tp_, ep_, expert_dp_;
};

}  // namespace moe::parallel
