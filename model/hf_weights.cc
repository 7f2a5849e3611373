#include "model/hf_weights.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status.h"

namespace moe::model {
namespace {

// {copy, shared} of the MTP module whose tensors start with `prefix` ("model.layers.N.").
std::vector<std::pair<std::string, std::string>> ModuleCopies(const std::string& prefix) {
  return {{prefix + "embed_tokens.weight", "model.embed_tokens.weight"},
          {prefix + "shared_head.head.weight", "lm_head.weight"}};
}

}  // namespace

std::vector<std::pair<std::string, std::string>> MtpSharedCopies(const config::ModelConfig& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (int64_t k = 0; k < m.num_nextn_predict_layers(); ++k) {
    for (auto& c : ModuleCopies(absl::StrCat("model.layers.", m.num_hidden_layers() + k, "."))) out.push_back(c);
  }
  return out;
}

void AppendMtpSharedCopies(const config::ModelConfig& m, std::vector<hf::WriteTensor>* tensors) {
  for (const auto& [copy, shared] : MtpSharedCopies(m)) {
    for (size_t i = 0; i < tensors->size(); ++i) {
      if ((*tensors)[i].name != shared) continue;
      hf::WriteTensor t = (*tensors)[i];
      t.name = copy;
      tensors->push_back(t);
      break;
    }
  }
}

int64_t MtpDepthOf(const config::ModelConfig& m, const std::string& name) {
  const std::vector<std::string> parts = absl::StrSplit(name, '.');
  int64_t layer = 0;
  if (parts.size() < 3 || parts[0] != "model" || parts[1] != "layers" || !absl::SimpleAtoi(parts[2], &layer)) return 0;
  return layer >= m.num_hidden_layers() ? layer - m.num_hidden_layers() + 1 : 0;
}

absl::Status LoadHfWeights(const hf::HfTensorSource& source, bool bf16, ParamStore* params, kernels::Backend& ops,
                           std::vector<std::string>* warnings, bool keep_missing_mtp) {
  absl::Status status;
  int64_t unused = 0;
  // An MTP module is the layer holding an eh_proj; "model.layers.N." of each one the source lacks.
  std::vector<std::string> kept_modules;
  if (keep_missing_mtp) {
    params->ForEach([&](const Param& p) {
      if (!absl::EndsWith(p.name, ".eh_proj.weight") || source.Contains(p.name)) return;
      kept_modules.push_back(p.name.substr(0, p.name.size() - std::string("eh_proj.weight").size()));
      warnings->push_back(absl::StrCat("multi-token-prediction module ", kept_modules.back(), "* is not in ",
                                       source.dir(), "; it starts from the seeded initialisation"));
    });
  }
  params->ForEach([&](Param& p) {
    if (!status.ok()) return;
    for (const std::string& prefix : kept_modules) {
      if (absl::StartsWith(p.name, prefix)) return;
    }
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
    p.SetMasterFromGlobal(*values, ops);
  });
  RETURN_IF_ERROR(status);
  // The MTP modules' copies of the shared tensors: checked, not loaded.
  std::vector<std::string> copies;
  for (int64_t k = 0;; ++k) {  // every layer; the MTP modules' have an eh_proj
    const std::string prefix = absl::StrCat("model.layers.", k, ".");
    if (params->Find(prefix + "input_layernorm.weight") == nullptr) break;
    if (params->Find(prefix + "eh_proj.weight") == nullptr) continue;
    for (const auto& [copy, shared] : ModuleCopies(prefix)) {
      copies.push_back(copy);
      const Param* p = params->Find(shared);
      if (p == nullptr || !source.Contains(copy)) continue;
      ASSIGN_OR_RETURN(const std::vector<float> a, source.Read(copy, p->global_shape()));
      ASSIGN_OR_RETURN(const std::vector<float> b, source.Read(shared, p->global_shape()));
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
      if (worst > 0) {
        warnings->push_back(absl::StrCat(copy, " in ", source.dir(), " differs from ", shared, " (max |difference| ",
                                         worst, "); the model shares ", shared, ", so the copy is ignored"));
      }
    }
  }
  for (const std::string& name : source.Names()) {
    // Routed experts of other EP ranks are expected to be absent here.
    if (params->Find(name) == nullptr && !absl::EndsWith(name, "_scale_inv") &&
        !absl::StrContains(name, ".mlp.experts.") && std::find(copies.begin(), copies.end(), name) == copies.end()) {
      ++unused;
    }
  }
  if (unused > 0) {
    warnings->push_back(absl::StrCat(unused, " tensors in ", source.dir(),
                                     " are not used by this model (e.g. multi-token-prediction "
                                     "layers of a model configured without them)"));
  }
  params->RefreshWorking(bf16, ops);
  return absl::OkStatus();
}

}  // namespace moe::model
