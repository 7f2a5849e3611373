// Assembles every global tensor (TP slices joined, experts fetched from their EP ranks) so that one
// rank can write a whole model. Each element has one designated holder (world rank 0 for replicated
// tensors, DP rank 0 of each TP slice, expert-DP rank 0 of each expert); holders write their values
// into a zeroed global buffer and a world all-reduce completes it exactly (x + 0 + ... = x).
// Cost: one world all-reduce per tensor, fine for export; not a hot path.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "configs/config.pb.h"
#include "kernels/backend.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe::trainer {

struct GatherPlace {
  parallel::Communicator* world = nullptr;
  int dp_rank = 0;
  int expert_dp_rank = 0;
  kernels::Backend* ops = nullptr;  // whose memory holds the parameters (their values are copied out)
};

// Calls fn(name, global_shape, values) on every rank for every tensor of the model (buffers too),
// in the model's order with all routed experts of a layer in expert order. Collective over the world.
void ForEachGlobalTensor(
    const model::ParamStore& params, const config::ModelConfig& cfg, const GatherPlace& place,
    const std::function<void(const std::string&, const std::vector<int64_t>&, const std::vector<float>&)>& fn);

}  // namespace moe::trainer
