// Builds with --config=cuda: a NcclCommunicator ordered after the CUDA backend's stream.
#include "absl/status/status.h"
#include "base/status.h"
#include "kernels/cuda/cuda_backend.h"
#include "parallel/communicator_nccl.h"
#include "parallel/device_groups.h"

namespace moe::parallel {

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclGroup(const MpiCommunicator& group,
                                                              kernels::Backend& ops) {
  auto* cuda = dynamic_cast<kernels::CudaBackend*>(&ops);
  if (cuda == nullptr) {
    return absl::FailedPreconditionError("NCCL groups need the CUDA backend (device: CUDA)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c, NcclCommunicator::Create(group, cuda->stream()));
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace moe::parallel
