// The op backend's options that a training config decides (precision and the `cuda` block), one
// mapping for the trainer and tools/bench_step. The device ordinal and CPU thread count are the
// caller's (they depend on the rank's place and the command line).
#pragma once

#include "configs/config.pb.h"
#include "kernels/backend_factory.h"

namespace moe::trainer {

kernels::BackendOptions BackendOptionsFor(const config::TrainConfig& cfg);

}  // namespace moe::trainer
