#include "model/hf_weights.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace moe::model {

absl::Status LoadHfWeights(const hf::HfTensorSource& source, bool bf16, ParamStore* params,
                           std::vector<std::string>* warnings) {
  absl::Status status;
  int64_t unused = 0;
  params->ForEach([&](Param& p) {
    if (!status.ok()) return;
    if (!source.Contains(p.name)) {
      if (p.kind == ParamKind::kBuffer) {
        warnings->push_back(absl::StrCat(p.name, " not in ", source.dir(), "; starting from zeros"));
        return;
      }
      status = absl::NotFoundError(absl::StrCat("tensor ", p.name, " is missing from ", source.dir()));
      return;
    }
    auto values = source.Read(p.name, p.global_shape());  // the whole tensor; keep this rank's slice
    if (!values.ok()) {
      status = values.status();
      return;
    }
    p.SetMasterFromGlobal(*values);
  });
  RETURN_IF_ERROR(status);
  for (const std::string& name : source.Names()) {
    // Routed experts of other EP ranks are expected to be absent here.
    if (params->Find(name) == nullptr && !absl::EndsWith(name, "_scale_inv") &&
        !absl::StrContains(name, ".mlp.experts.")) {
      ++unused;
    }
  }
  if (unused > 0) {
    warnings->push_back(absl::StrCat(unused, " tensors in ", source.dir(),
                                     " are not used by this model (e.g. multi-token-prediction "
                                     "layers, which are skipped)"));
  }
  params->RefreshWorking(bf16);
  return absl::OkStatus();
}

}  // namespace moe::model
