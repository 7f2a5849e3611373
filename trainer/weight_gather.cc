#include "trainer/weight_gather.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace moe::trainer {
namespace {

bool IsRoutedExpert(const std::string& name) { return absl::StrContains(name, ".mlp.experts."); }

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// Writes p's local values into their place in the global buffer.
void Place(const model::Param& p, kernels::Backend& ops, std::vector<float>* global) {
  const std::vector<float> values = p.WorkingValues(ops);
  for (int64_t i = 0; i < p.numel(); ++i) (*global)[p.GlobalIndex(i)] = values[i];
}

}  // namespace

void ForEachGlobalTensor(
    const model::ParamStore& params, const config::ModelConfig& cfg, const GatherPlace& place,
    const std::function<void(const std::string&, const std::vector<int64_t>&, const std::vector<float>&)>& fn) {
  const bool world_leader = place.world->rank() == 0;
  std::vector<std::string> expert_order;  // experts are emitted after their layer's gate
  auto emit = [&](const std::string& name, const std::vector<int64_t>& shape, const model::Param* local,
                  bool holder) {
    std::vector<float> global(Numel(shape), 0.0f);
    if (holder && local != nullptr) Place(*local, *place.ops, &global);
    place.world->AllReduceSum(global.data(), static_cast<int64_t>(global.size()));
    fn(name, shape, global);
  };
  params.ForEach([&](const model::Param& p) {
    if (IsRoutedExpert(p.name)) return;  // handled below, from the config (other ranks hold others)
    const bool holder = p.sync == model::ParamSync::kReplicated ? world_leader : place.dp_rank == 0;
    emit(p.name, p.global_shape(), &p, holder);
    // After a layer's router (and bias), every expert of that layer.
    const bool router_done = absl::EndsWith(p.name, ".mlp.gate.e_score_correction_bias") ||
                             (absl::EndsWith(p.name, ".mlp.gate.weight") && cfg.topk_method() != "noaux_tc");
    if (!router_done) return;
    const std::string prefix = p.name.substr(0, p.name.find(".mlp.gate.") + 5);
    const int64_t d = cfg.hidden_size(), ie = cfg.moe_intermediate_size();
    for (int64_t e = 0; e < cfg.n_routed_experts(); ++e) {
      for (const char* w : {"gate_proj", "up_proj", "down_proj"}) {
        const std::string name = absl::StrCat(prefix, "experts.", e, ".", w, ".weight");
        const std::vector<int64_t> shape =
            std::string(w) == "down_proj" ? std::vector<int64_t>{d, ie} : std::vector<int64_t>{ie, d};
        const model::Param* local = params.Find(name);
        emit(name, shape, local, local != nullptr && place.expert_dp_rank == 0);
      }
    }
  });
}

}  // namespace moe::trainer
