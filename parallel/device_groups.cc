#include "parallel/device_groups.h"

#include "base/status.h"
#include "parallel/local_communicator.h"
#include "parallel/split_communicator.h"

namespace moe::parallel {

std::unique_ptr<TensorGroups> MeshTensorGroups(ProcessMesh& mesh) {
  auto groups = std::make_unique<TensorGroups>();
  groups->world = &mesh.world();
  groups->dp = &mesh.dp();
  groups->tp = &mesh.tp();
  groups->ep = &mesh.ep();
  groups->expert_dp = &mesh.expert_dp();
  return groups;
}

absl::StatusOr<std::unique_ptr<TensorGroups>> CreateDeviceGroups(ProcessMesh& mesh, kernels::Backend& ops) {
  auto groups = std::make_unique<TensorGroups>();
  // The same order on every rank: the NCCL setup of each group is collective over it.
  const std::pair<MpiCommunicator*, Communicator**> order[] = {
      {&mesh.world(), &groups->world}, {&mesh.dp(), &groups->dp}, {&mesh.tp(), &groups->tp},
      {&mesh.ep(), &groups->ep}, {&mesh.expert_dp(), &groups->expert_dp}};
  for (const auto& [mpi, slot] : order) {
    if (mpi->size() == 1) {
      groups->owned.push_back(std::make_unique<LocalCommunicator>(mpi->name(), &ops));
    } else {
      ASSIGN_OR_RETURN(std::unique_ptr<Communicator> nccl, CreateNcclGroup(*mpi, ops));
      groups->owned.push_back(std::make_unique<SplitCommunicator>(std::move(nccl), mpi));
    }
    *slot = groups->owned.back().get();
  }
  return groups;
}

}  // namespace moe::parallel
