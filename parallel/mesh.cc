// ProcessMesh and the layout checks (see the header for the rank order).
#include "parallel/mesh.h"

#include <mpi.h>

#include <string>

#include "absl/strings/str_format.h"

namespace moe::parallel {

absl::Status ValidateMeshShape(const MeshShape& s, int world_size) {
  if (s.dp < 1 || s.tp < 1 || s.ep < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parallel.dp (%d), parallel.tp (%d) and parallel.ep (%d) must all be >= 1", s.dp, s.tp, s.ep));
  }
  if (s.dp * s.tp != world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the world size (%d ranks) must equal parallel.dp (%d) * parallel.tp (%d) = %d",
                        world_size, s.dp, s.tp, s.dp * s.tp));
  }
  if (world_size % s.ep != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parallel.ep (%d) must divide the world size dp*tp (%d)", s.ep, world_size));
  }
  return absl::OkStatus();
}

absl::Status ValidateLayout(const MeshShape& s, int world_size, const moe::config::ModelConfig& m,
                            int64_t micro_batch_size, int64_t seq_len) {
  if (absl::Status st = ValidateMeshShape(s, world_size); !st.ok()) return st;
  if (m.n_routed_experts() % s.ep != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.n_routed_experts (%d) must be divisible by parallel.ep (%d)", m.n_routed_experts(), s.ep));
  }
  if (m.num_attention_heads() % s.tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("model.num_attention_heads (%d) must be divisible by parallel.tp (%d)",
                        m.num_attention_heads(), s.tp));
  }
  if (m.intermediate_size() % s.tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.intermediate_size (%d) must be divisible by parallel.tp (%d)", m.intermediate_size(), s.tp));
  }
  const int64_t shared = m.n_shared_experts() * m.moe_intermediate_size();
  if (shared % s.tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.n_shared_experts (%d) * model.moe_intermediate_size (%d) = %d must be divisible by "
        "parallel.tp (%d)",
        m.n_shared_experts(), m.moe_intermediate_size(), shared, s.tp));
  }
  if (micro_batch_size < 1 || seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "micro_batch_size (%d) and seq_len (%d) must be >= 1", micro_batch_size, seq_len));
  }
  if ((micro_batch_size * seq_len) % s.tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "micro_batch_size (%d) * seq_len (%d) = %d tokens must be divisible by parallel.tp (%d): "
        "sequence parallelism splits a micro-batch's tokens over TP",
        micro_batch_size, seq_len, micro_batch_size * seq_len, s.tp));
  }
  // An MTP block of depth k routes only the first T - k positions of each sequence; every TP rank's
  // slice must hold one of them.
  if (m.num_nextn_predict_layers() > 0 && micro_batch_size * seq_len / s.tp <= m.num_nextn_predict_layers()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "micro_batch_size (%d) * seq_len (%d) / parallel.tp (%d) = %d tokens per TP rank must exceed "
        "model.num_nextn_predict_layers (%d)",
        micro_batch_size, seq_len, s.tp, micro_batch_size * seq_len / s.tp, m.num_nextn_predict_layers()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ProcessMesh>> ProcessMesh::Create(const MeshShape& shape,
                                                                 double timeout_seconds) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    return absl::FailedPreconditionError("ProcessMesh::Create: MPI is not initialised (MpiWorld::Init)");
  }
  if (!(timeout_seconds > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parallel.collective_timeout_s (%g) must be > 0", timeout_seconds));
  }
  int world_size = 1, world_rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  // Every rank sees the same shape and world size, so every rank returns here together.
  if (absl::Status st = ValidateMeshShape(shape, world_size); !st.ok()) return st;

  std::unique_ptr<ProcessMesh> mesh(new ProcessMesh());
  mesh->shape_ = shape;
  mesh->world_size_ = world_size;
  mesh->world_rank_ = world_rank;
  const int tp = static_cast<int>(shape.tp), ep = static_cast<int>(shape.ep);
  mesh->dp_rank_ = world_rank / tp;
  mesh->tp_rank_ = world_rank % tp;
  mesh->ep_rank_ = world_rank % ep;
  mesh->expert_dp_rank_ = world_rank / ep;

  // Collective in this order on every rank. color selects the group, key orders ranks inside it.
  auto split = [&](int color, int key, const char* name) {
    MPI_Comm c;
    MPI_Comm_split(MPI_COMM_WORLD, color, key, &c);
    return std::make_unique<MpiCommunicator>(c, name, timeout_seconds);
  };
  mesh->world_ = split(0, world_rank, "world");
  mesh->dp_ = split(mesh->tp_rank_, mesh->dp_rank_, "dp");
  mesh->tp_ = split(mesh->dp_rank_, mesh->tp_rank_, "tp");
  mesh->ep_ = split(world_rank / ep, mesh->ep_rank_, "ep");
  mesh->expert_dp_ = split(mesh->ep_rank_, mesh->expert_dp_rank_, "expert_dp");
  return mesh;
}

}  // namespace moe::parallel
