// Learning-rate schedule: linear warm-up from 0 to lr over warmup_steps, then cosine decay to
// lr · min_lr_ratio at total_steps (or constant). `step` is the 1-based optimizer step about to run.
#pragma once

#include <cstdint>

#include "configs/config.pb.h"

namespace moe::trainer {

double LearningRate(const config::OptimizerConfig& opt, const config::ScheduleConfig& sched,
                    int64_t step);

}  // namespace moe::trainer
