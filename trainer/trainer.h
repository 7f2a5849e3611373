// The training loop (single process today; the mesh of the distributed issue plugs in here):
// micro-batches with gradient accumulation, global-norm clipping, AdamW with warm-up + cosine, the
// aux-loss-free bias update, periodic validation, a log line and a metrics.jsonl row per step.
#pragma once

#include "absl/status/status.h"
#include "configs/config.pb.h"
#include "parallel/mpi_world.h"

namespace moe::trainer {

// Runs the whole job described by `cfg` (already validated). Returns an error naming what is wrong
// (missing data, unsupported feature) before any step runs.
absl::Status Train(const config::TrainConfig& cfg, const parallel::MpiWorld& world);

}  // namespace moe::trainer
