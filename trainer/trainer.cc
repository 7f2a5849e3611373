#include "trainer/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status.h"
#include "data/sampler.h"
#include "data/token_shard.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/peak_flops.h"
#include "model/hf/file_util.h"
#include "model/model.h"
#include "model/model_stats.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"

namespace moe::trainer {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Mean validation loss over `batches` micro-batches of sequential windows.
double ValidationLoss(model::DeepseekV3Model& net, const data::Sampler& val, int64_t batches,
                      int64_t micro, int64_t seq) {
  std::vector<int32_t> ids(micro * seq), targets(micro * seq);
  double sum = 0;
  int64_t tokens = 0;
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t r = 0; r < micro; ++r) val.Fill(b * micro + r, &ids[r * seq], &targets[r * seq]);
    const model::LossStats s = net.Step(ids.data(), targets.data(), micro, seq, false, 1.0f);
    sum += s.ce_loss_sum;
    tokens += s.tokens;
  }
  net.ResetExpertCounts();  // validation routing must not feed the bias update
  return tokens ? sum / tokens : 0.0;
}

void ProgressBar(int64_t step, int64_t total, double elapsed_s) {
  if (!isatty(fileno(stderr))) return;
  const int width = 30;
  const int filled = static_cast<int>(width * step / std::max<int64_t>(1, total));
  const double eta = step > 0 ? elapsed_s / step * (total - step) : 0.0;
  std::fprintf(stderr, "\r[%s%s] %lld/%lld ETA %.0fs ", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), static_cast<long long>(step),
               static_cast<long long>(total), eta);
  if (step == total) std::fprintf(stderr, "\n");
}

}  // namespace

absl::Status Train(const config::TrainConfig& cfg, const parallel::MpiWorld& world) {
  const bool leader = world.rank() == 0;
  const config::ModelConfig& mc = cfg.model();
  if (mc.num_nextn_predict_layers() > 0) {
    return absl::UnimplementedError(absl::StrCat(
        "model.num_nextn_predict_layers = ", mc.num_nextn_predict_layers(),
        ": multi-token prediction is not trained yet; set --set model.num_nextn_predict_layers=0 "
        "(validation, --dry_run and HF loading accept MTP configs)"));
  }
  if (cfg.device() != config::CPU) {
    return absl::UnimplementedError("device: CUDA is not built in this binary yet; use device: CPU");
  }
  const int64_t world_needed = cfg.parallel().dp() * cfg.parallel().tp();
  if (world.size() != world_needed || world_needed != 1) {
    return absl::UnimplementedError(absl::StrCat(
        "this build trains on one rank only (parallel.dp * parallel.tp = ", world_needed,
        ", MPI world = ", world.size(), "); multi-rank layouts come with the distributed trainer"));
  }

  // Data.
  ASSIGN_OR_RETURN(data::TokenShard train_shard, data::TokenShard::Open(cfg.data().train_path()));
  ASSIGN_OR_RETURN(data::TokenShard val_shard, data::TokenShard::Open(cfg.data().val_path()));
  for (const data::TokenShard* s : {&train_shard, &val_shard}) {
    if (s->vocab_size() > mc.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("data shard ", s->prefix(), " has vocab size ",
                                                     s->vocab_size(), " > model.vocab_size ",
                                                     mc.vocab_size()));
    }
  }
  const int64_t seq = cfg.batch().seq_len(), micro = cfg.batch().micro_batch_size();
  ASSIGN_OR_RETURN(data::Sampler train_sampler,
                   data::Sampler::Create(&train_shard, seq, cfg.data().seed()));
  ASSIGN_OR_RETURN(data::Sampler val_sampler,
                   data::Sampler::Create(&val_shard, seq, cfg.data().seed(), data::SampleOrder::kSequential));
  data::GlobalBatch gb{cfg.batch().global_batch_size(), cfg.parallel().dp(), micro};
  RETURN_IF_ERROR(gb.Validate());

  // Output directory and metrics.
  RETURN_IF_ERROR(hf::MakeDirs(cfg.output_dir()));
  ASSIGN_OR_RETURN(MetricsWriter metrics, MetricsWriter::Open(hf::JoinPath(cfg.output_dir(), "metrics.jsonl")));

  // Backend, peak for MFU, model.
  const int threads = cfg.num_threads() > 0
                          ? cfg.num_threads()
                          : std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) / world.local_size());
  kernels::CpuBackend ops(threads);
  const double peak_flops = kernels::MeasureGemmFlops();
  const bool bf16 = cfg.precision() == config::BF16;
  model::DeepseekV3Model net(mc, bf16 ? model::Numerics::kBf16 : model::Numerics::kFp32, &ops, seq);
  net.params().Initialize(cfg.seed(), mc.initializer_range());
  net.params().RefreshWorking(bf16);
  const model::ParamCounts counts = model::CountParameters(mc);
  const double flops_per_token = model::TrainingFlopsPerToken(mc, seq, /*include_mtp=*/false);
  if (leader) {
    std::printf("model: %lld params (%lld activated per token), %s, %d threads; CPU FP32 GEMM peak "
                "measured at %.1f GFLOP/s (MFU denominator)\n",
                static_cast<long long>(counts.total),
                static_cast<long long>(counts.activated_without_embedding), bf16 ? "BF16" : "FP32",
                threads, peak_flops / 1e9);
    std::printf("data: train %lld tokens (%lld windows of %lld), val %lld tokens; %lld micro-batches of "
                "%lld per step\n",
                static_cast<long long>(train_shard.num_tokens()),
                static_cast<long long>(train_sampler.samples_per_epoch()), static_cast<long long>(seq),
                static_cast<long long>(val_shard.num_tokens()),
                static_cast<long long>(gb.num_micro_batches()), static_cast<long long>(micro));
    std::fflush(stdout);
  }

  const int64_t total_steps = cfg.schedule().total_steps();
  const int64_t val_batches =
      std::max<int64_t>(1, std::min(cfg.eval().batches(), val_sampler.samples_per_epoch() / micro));
  std::vector<int32_t> ids(micro * seq), targets(micro * seq);
  const auto run_start = Clock::now();
  for (int64_t step = 1; step <= total_steps; ++step) {
    const auto t0 = Clock::now();
    net.params().ZeroGrads();
    net.ResetExpertCounts();
    double loss_sum = 0, balance_sum = 0;
    const int64_t num_micro = gb.num_micro_batches();
    for (int64_t m = 0; m < num_micro; ++m) {
      for (int64_t r = 0; r < micro; ++r) {
        train_sampler.Fill(gb.SampleIndex(step - 1, /*dp_rank=*/0, m, r), &ids[r * seq], &targets[r * seq]);
      }
      const model::LossStats s =
          net.Step(ids.data(), targets.data(), micro, seq, true, 1.0f / static_cast<float>(num_micro));
      loss_sum += s.ce_loss();
      balance_sum += s.balance_loss;
    }
    const double lr = LearningRate(cfg.optimizer(), cfg.schedule(), step);
    const OptimizerStepStats opt = AdamWStep(ops, cfg.optimizer(), lr, step, bf16, &net.params());
    const std::vector<double> load = net.ExpertLoadMaxOverMean();
    net.UpdateCorrectionBiases(mc.bias_update_speed());
    const double dt = Seconds(t0, Clock::now());
    const double tokens_per_s = static_cast<double>(gb.global_batch * seq) / dt;
    const double mfu = tokens_per_s * flops_per_token / (peak_flops * world.size());
    const double load_max = load.empty() ? 0.0 : *std::max_element(load.begin(), load.end());
    const double loss = loss_sum / num_micro;
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrCat("loss is ", loss, " at step ", step, "; stopping"));
    }

    MetricRow row = {{"step", static_cast<double>(step)}, {"loss", loss}, {"lr", lr},
                     {"grad_norm", opt.grad_norm}, {"tokens_per_s", tokens_per_s}, {"mfu", mfu},
                     {"expert_load_max_mean", load_max}, {"step_time_s", dt}};
    if (mc.aux_loss_alpha() > 0) row.push_back({"balance_loss", balance_sum / num_micro});
    const bool eval_now = (cfg.eval().every() > 0 && step % cfg.eval().every() == 0) || step == total_steps;
    double val_loss = NAN;
    if (eval_now) {
      val_loss = ValidationLoss(net, val_sampler, val_batches, micro, seq);
      row.push_back({"val_loss", val_loss});
    }
    if (leader) {
      RETURN_IF_ERROR(metrics.Write(row));
      if (step % std::max<int64_t>(1, cfg.logging().every()) == 0 || eval_now) {
        std::printf("step %5lld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | MFU %.1f%% | "
                    "expert load max/mean %.2f | %.3fs%s\n",
                    static_cast<long long>(step), loss, lr, opt.grad_norm, tokens_per_s, 100 * mfu,
                    load_max, dt, eval_now ? absl::StrFormat(" | val loss %.4f", val_loss).c_str() : "");
        std::fflush(stdout);
      }
      if (cfg.logging().progress_bar()) ProgressBar(step, total_steps, Seconds(run_start, Clock::now()));
    }
  }
  return absl::OkStatus();
}

}  // namespace moe::trainer
