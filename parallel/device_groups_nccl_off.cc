// Builds without --config=cuda: no NCCL.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallel/device_groups.h"

namespace moe::parallel {

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclGroup(const MpiCommunicator& group, kernels::Backend&) {
  return absl::UnimplementedError(absl::StrCat("group '", group.name(), "' of ", group.size(),
                                               " ranks needs NCCL, but this binary was built without it "
                                               "(rebuild with bazel build --config=cuda)"));
}

}  // namespace moe::parallel
