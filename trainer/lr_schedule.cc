#include "trainer/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace moe::trainer {

double LearningRate(const config::OptimizerConfig& opt, const config::ScheduleConfig& sched,
                    int64_t step) {
  const double peak = opt.lr();
  const int64_t warmup = sched.warmup_steps();
  if (warmup > 0 && step <= warmup) return peak * static_cast<double>(step) / warmup;
  if (sched.decay() == config::ScheduleConfig::CONSTANT) return peak;
  const int64_t decay_steps = std::max<int64_t>(1, sched.total_steps() - warmup);
  const double progress =
      std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay_steps), 0.0, 1.0);
  const double min_lr = peak * sched.min_lr_ratio();
  return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace moe::trainer
