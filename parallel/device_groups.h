// The process groups the model and optimizer move tensors over (TensorGroups), for each device.
// CPU: the mesh's MPI groups themselves (MeshTensorGroups). GPU (CreateDeviceGroups), for each of the
// mesh's groups (world, dp, tp, ep, expert_dp): with more than one rank, a NcclCommunicator
// (bootstrapped over that MPI group) on a communication stream of its own, each collective ordered after
// the op backend's work enqueued before it, joined with the MPI group for host values (parallel/split_communicator.h); with
// one rank, a LocalCommunicator that copies through the backend. Every rank must call
// CreateDeviceGroups (the NCCL setup is collective).
//
// The NCCL part exists only in builds with --config=cuda (device_groups_nccl_on.cc); without it a
// mesh with a multi-rank group gets an error saying so.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "parallel/communicator.h"
#include "parallel/communicator_mpi.h"
#include "parallel/mesh.h"

namespace moe::parallel {

struct TensorGroups {
  Communicator* world = nullptr;
  Communicator* dp = nullptr;
  Communicator* tp = nullptr;
  Communicator* ep = nullptr;
  Communicator* expert_dp = nullptr;
  std::vector<std::unique_ptr<Communicator>> owned;  // the GPU groups (empty for the mesh's own)
};

std::unique_ptr<TensorGroups> MeshTensorGroups(ProcessMesh& mesh);
absl::StatusOr<std::unique_ptr<TensorGroups>> CreateDeviceGroups(ProcessMesh& mesh, kernels::Backend& ops);

// The tensor communicator of one multi-rank group (NCCL, ordered after the backend's stream); defined by
// device_groups_nccl_on.cc or _off.cc depending on --config=cuda.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclGroup(const MpiCommunicator& group,
                                                              kernels::Backend& ops);

}  // namespace moe::parallel
