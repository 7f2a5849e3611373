// bench_step: times whole training steps (forward, backward, AdamW) of a config in one process, on the
// CPU or a CUDA GPU, with no MPI: the GPU device check runs it where only the driver and the CUDA
// libraries exist (tests/gpu/run_device_check.sh).
//
//   bench_step --config=configs/small_1b.textproto [--set key=value ...] [--device=CUDA]
//              [--steps=10 --warmup=3 --micro_batches=0] [--check_against_cpu]
//              [--hf_config_out=DIR/config.json]
//
// A step is `micro_batches` micro-batches of batch.micro_batch_size x batch.seq_len random tokens
// (0: the config's global_batch_size / micro_batch_size, as one DP rank would run) and one optimizer
// step, timed from the first op to the last one's completion. It prints tokens/s, model TFLOP/s and
// MFU (model FLOPs per token from model/model_stats, MTP off, over the peak: logging.peak_tflops, or
// 989 TFLOP/s on CUDA, or the FP32 GEMM rate measured here on the CPU), the op breakdown (the
// backend's op times: seconds per step, share, achieved TFLOP/s of the matrix products and
// attention, the three largest sinks), and one JSON line prefixed `BENCH_RESULT `.
//
// --check_against_cpu first runs one step of the same model on the CPU backend and on --device from
// the same initial weights and batch (batch.micro_batch_size x --check_seq tokens), and compares the
// loss (relative 1e-2), the gradient norm (5e-2) and the loss after the AdamW update (1e-2) in BF16
// (the "a GPU step matches the CPU step"); in FP32 the loss and norm within 1e-5 and the loss
// after the update within 1e-4. In FP32 it then judges
// every parameter's gradient (relative L2 per tensor, 1e-4) and every updated weight (1e-3), routed
// experts by their median (CompareTensors), naming the worst tensor; in BF16 it reports those figures.
// --check_fp32_too adds the FP32 check to a BF16 config's. It exits 1 when a comparison fails.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/buffer.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "kernels/backend_factory.h"
#include "model/model.h"
#include "model/model_stats.h"
#include "trainer/backend_options.h"
#include "trainer/distributed_optimizer.h"
#include "trainer/training_step.h"
#include "parallel/local_communicator.h"

ABSL_FLAG(std::string, config, "", "path to a TrainConfig text proto");
ABSL_FLAG(std::vector<std::string>, set, {}, "config override as dotted.path=value (repeatable)");
ABSL_FLAG(std::string, device, "", "CPU or CUDA (default: the config's device)");
ABSL_FLAG(int64_t, steps, 10, "timed steps");
ABSL_FLAG(int64_t, warmup, 3, "untimed steps first");
ABSL_FLAG(bool, steps_without_op_times, false,
          "after each timed step, one more step without per-op timing; reports both medians");
ABSL_FLAG(int64_t, micro_batches, 0, "micro-batches per step (0: global_batch_size / micro_batch_size)");
ABSL_FLAG(int, threads, 0, "CPU backend threads (0: all cores)");
ABSL_FLAG(bool, check_against_cpu, false, "first compare one step on --device with the CPU backend");
ABSL_FLAG(int64_t, check_seq, 256, "sequence length of the --check_against_cpu step");
ABSL_FLAG(bool, check_fp32_too, false,
          "with --check_against_cpu on a BF16 config, also check the same step in FP32 (where every tensor is judged)");
ABSL_FLAG(std::string, hf_config_out, "", "also write the model as a Hugging Face config.json here");

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

// Random tokens: inputs [B, T] and their next tokens as targets.
struct TokenBatch {
  std::vector<int32_t> ids, targets;
};
TokenBatch RandomBatch(int64_t batch, int64_t seq, int64_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  TokenBatch b;
  for (int64_t s = 0; s < batch; ++s) {
    std::vector<int32_t> row(seq + 1);
    for (auto& t : row) t = dist(gen);
    b.ids.insert(b.ids.end(), row.begin(), row.end() - 1);
    b.targets.insert(b.targets.end(), row.begin() + 1, row.end());
  }
  return b;
}

// A one-process trainer: model, ZeRO-1 optimizer over one-rank groups, on one backend.
class Trainer {
 public:
  Trainer(const config::TrainConfig& cfg, kernels::Backend* ops, int64_t max_seq)
      : cfg_(cfg), ops_(ops), world_("world", ops), dp_("dp", ops), expert_dp_("expert_dp", ops) {
    absl::StatusOr<trainer::TrainingModel> built =
        trainer::CreateTrainingModel(cfg, *ops, max_seq, {}, {&world_, &dp_, &expert_dp_});
    if (!built.ok()) {
      std::fprintf(stderr, "bench_step: %s\n", std::string(built.status().message()).c_str());
      std::exit(1);
    }
    net_ = std::move(built->net);
    optimizer_ = std::move(built->optimizer);
  }

  // The trainer's own step (trainer/training_step.h) on these micro-batches at the config's peak
  // learning rate; returns the mean CE loss before the update and the gradient norm.
  std::pair<double, double> Step(const std::vector<TokenBatch>& micro, int64_t batch, int64_t seq, int64_t step) {
    const int64_t n = static_cast<int64_t>(micro.size());
    const trainer::StepOutcome o = trainer::RunTrainingStep(
        *net_, *optimizer_, world_, cfg_, step, cfg_.optimizer().lr(), n, batch, seq, 1.0f / static_cast<float>(n),
        [&](int64_t m, int32_t* ids, int32_t* targets) {
          std::copy(micro[m].ids.begin(), micro[m].ids.end(), ids);
          std::copy(micro[m].targets.begin(), micro[m].targets.end(), targets);
        });
    return {o.losses.ce_loss(), o.optimizer.grad_norm};
  }
  double Loss(const TokenBatch& b, int64_t batch, int64_t seq) {
    const model::LossStats s = net_->Step(b.ids.data(), b.targets.data(), batch, seq, false, 1.0f);
    return s.ce_loss();
  }
  int64_t ActivationBytes() const { return net_->SavedActivationBytes(); }

  // Every trainable tensor's gradient (after Step, before the next one) or working values, by name,
  // copied to the host.
  std::vector<std::pair<std::string, std::vector<float>>> Tensors(bool grads) {
    std::vector<std::pair<std::string, std::vector<float>>> out;
    net_->params().ForEach([&](const model::Param& p) {
      if (!p.trainable()) return;
      std::vector<float> values(p.numel());
      if (grads) {
        ops_->CopyToHost(p.grad.data(), sizeof(float) * values.size(), values.data());
      } else {
        values = p.WorkingValues(*ops_);
      }
      out.emplace_back(p.name, std::move(values));
    });
    return out;
  }

 private:
  const config::TrainConfig& cfg_;
  kernels::Backend* ops_;
  parallel::LocalCommunicator world_, dp_, expert_dp_;
  std::unique_ptr<model::DeepseekV3Model> net_;  // net_ before optimizer_: the optimizer refers to its params
  std::unique_ptr<trainer::DistributedOptimizer> optimizer_;
};

kernels::Device DeviceOf(config::Device d) {
  return d == config::CUDA ? kernels::Device::kCuda : kernels::Device::kCpu;
}

absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeBackend(const config::TrainConfig& cfg,
                                                             kernels::Device device) {
  kernels::BackendOptions o = trainer::BackendOptionsFor(cfg);
  o.num_threads = absl::GetFlag(FLAGS_threads);
  return kernels::CreateBackend(device, o);
}

struct StepResult {
  double loss = 0, grad_norm = 0, loss_after = 0;
  std::vector<std::pair<std::string, std::vector<float>>> grads, weights;  // per tensor, after the step
};
StepResult OneStep(const config::TrainConfig& cfg, kernels::Backend* ops, const TokenBatch& b, int64_t seq) {
  Trainer t(cfg, ops, seq);
  StepResult r;
  const int64_t batch = cfg.batch().micro_batch_size();
  std::tie(r.loss, r.grad_norm) = t.Step({b}, batch, seq, 1);
  r.grads = t.Tensors(/*grads=*/true);
  r.weights = t.Tensors(/*grads=*/false);
  r.loss_after = t.Loss(b, batch, seq);
  return r;
}

// How far apart two runs' tensors are, by relative L2 distance ||x - y|| / ||y|| per tensor (absolute
// when ||y|| is 0). Routed experts are judged by their median: in BF16 a router near-tie may send a
// token to another expert on the other backend, which legitimately changes those few experts' whole
// gradients, while a bug in the expert kernels would move most of them.
struct TensorDistance {
  std::string worst_name;           // over every tensor
  double worst = 0;
  double worst_dense = 0;           // over the tensors that are not routed experts
  std::string worst_dense_name;
  double expert_median = 0;         // over the routed experts' tensors (0 without MoE)
  bool finite = true;               // x holds no NaN or infinity
};
TensorDistance CompareTensors(const std::vector<std::pair<std::string, std::vector<float>>>& got,
                              const std::vector<std::pair<std::string, std::vector<float>>>& want) {
  TensorDistance d;
  std::vector<double> experts;
  for (size_t i = 0; i < want.size(); ++i) {
    const std::vector<float>& x = got[i].second;
    const std::vector<float>& y = want[i].second;
    double diff = 0, norm = 0;
    for (size_t j = 0; j < y.size(); ++j) {
      if (!std::isfinite(x[j])) d.finite = false;
      diff += (static_cast<double>(x[j]) - y[j]) * (static_cast<double>(x[j]) - y[j]);
      norm += static_cast<double>(y[j]) * y[j];
    }
    const double rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (d.worst_name.empty() || !(rel <= d.worst)) {  // NaN counts as worst
      d.worst = rel;
      d.worst_name = want[i].first;
    }
    if (absl::StrContains(want[i].first, ".mlp.experts.")) {
      experts.push_back(rel);
    } else if (d.worst_dense_name.empty() || !(rel <= d.worst_dense)) {
      d.worst_dense = rel;
      d.worst_dense_name = want[i].first;
    }
  }
  if (!experts.empty()) {
    std::nth_element(experts.begin(), experts.begin() + experts.size() / 2, experts.end());
    d.expert_median = experts[experts.size() / 2];
  }
  return d;
}

// One step on the CPU and on `device` from the same weights and batch; false if they disagree.
absl::StatusOr<bool> CheckAgainstCpu(const config::TrainConfig& cfg, kernels::Device device) {
  const int64_t seq = std::min<int64_t>(absl::GetFlag(FLAGS_check_seq), cfg.batch().seq_len());
  const TokenBatch b = RandomBatch(cfg.batch().micro_batch_size(), seq, cfg.model().vocab_size(), 7);
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(auto cpu, MakeBackend(cfg, kernels::Device::kCpu));
  // The CPU reference in host memory, even after a CUDA backend made its memory the default (it may be
  // device memory, cuda.memory: DEVICE).
  const MemorySpace& space = CurrentMemorySpace();
  SetMemorySpace(HostMemorySpace());
  const StepResult ref = OneStep(cfg, cpu.get(), b, seq);
  SetMemorySpace(space);
  const double cpu_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSIGN_OR_RETURN(auto dev, MakeBackend(cfg, device));
  const StepResult got = OneStep(cfg, dev.get(), b, seq);
  bool ok = true;
  auto compare = [&](const char* what, double want, double have, double tol) {
    const double rel = std::fabs(have - want) / std::max(std::fabs(want), 1e-30);
    const bool pass = std::isfinite(have) && rel <= tol;
    ok = ok && pass;
    std::printf("%s  step_vs_cpu %-22s cpu %.6f  %s %.6f  rel %.2e (tol %.0e)\n", pass ? "PASS" : "FAIL", what,
                want, device == kernels::Device::kCuda ? "cuda" : "cpu ", have, rel, tol);
  };
  std::printf("== one %s step on %s vs the CPU backend: %lld x %lld tokens (CPU step %.1f s)\n",
              config::Precision_Name(cfg.precision()).c_str(),
              device == kernels::Device::kCuda ? "CUDA" : "CPU",
              static_cast<long long>(cfg.batch().micro_batch_size()), static_cast<long long>(seq), cpu_s);
  // BF16: the bounds. FP32 runs the same arithmetic up to summation order: far tighter.
  const bool fp32 = cfg.precision() == config::FP32;
  compare("loss", ref.loss, got.loss, fp32 ? 1e-5 : 1e-2);
  compare("grad_norm", ref.grad_norm, got.grad_norm, fp32 ? 1e-5 : 5e-2);
  // After AdamW, FP32 gets 1e-4: the first update moves each weight by ~lr * sign(g), so gradient
  // elements near zero whose sign differs with the summation order move by 2 lr (an H200 run: grads
  // within 5.5e-6 and weights within 1.5e-5 of the CPU, loss after the update 1.4e-5 apart). The
  // per-tensor checks below judge the update itself.
  compare("loss_after_adamw", ref.loss_after, got.loss_after, fp32 ? 1e-4 : 1e-2);
  // Every tensor, not just the scalars: a wrong gradient in one small tensor hardly moves the norm.
  // BF16 weights are BF16-rounded, so a tiny difference may move an element by one BF16 step (2^-8).
  auto compare_tensors = [&](const char* what, const auto& have, const auto& want, double tol) {
    const TensorDistance d = CompareTensors(have, want);
    const bool pass = d.finite && d.worst_dense <= tol && d.expert_median <= tol;
    if (fp32) ok = ok && pass;
    std::printf("%s  step_vs_cpu %-22s rel L2: worst non-expert %.2e (%s), routed experts' median %.2e (FP32 tol "
                "%.0e); worst %s %.2e%s\n", !fp32 ? "INFO" : pass ? "PASS" : "FAIL", what, d.worst_dense,
                d.worst_dense_name.c_str(), d.expert_median, tol, d.worst_name.c_str(), d.worst,
                d.finite ? "" : "; non-finite values");
  };
  // FP32 is judged tensor by tensor. Adam's first update is about lr * sign(g), so elements with
  // near-zero gradients move by up to lr on a tiny difference: the weight bound allows for a few. BF16 is
  // reported only: its rounding moves router near-ties and Adam's signs, so single tensors legitimately
  // differ by several percent (tiny under emulation: non-expert gradients up to 8e-2).
  compare_tensors("every gradient", got.grads, ref.grads, 1e-4);
  compare_tensors("every updated weight", got.weights, ref.weights, 1e-3);
  std::fflush(stdout);
  return ok;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<int> Run(const std::vector<std::string>& overrides) {
  const std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) return absl::InvalidArgumentError("--config is required");
  ASSIGN_OR_RETURN(config::TrainConfig cfg, config::ResolveTrainConfig(path, overrides));
  // MTP off: the Hugging Face transformers baseline this benchmark is compared with has no MTP, so both
  // sides time the main model's step.
  if (cfg.model().num_nextn_predict_layers() > 0) {
    absl::PrintF("note: MTP off (model.num_nextn_predict_layers %d -> 0)\n", cfg.model().num_nextn_predict_layers());
    cfg.mutable_model()->set_num_nextn_predict_layers(0);
  }
  const std::string device_flag = absl::GetFlag(FLAGS_device);
  if (!device_flag.empty()) {
    config::Device d;
    if (!config::Device_Parse(device_flag, &d) || d == config::DEVICE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("--device must be CPU or CUDA, not '", device_flag, "'"));
    }
    cfg.set_device(d);
  }
  const config::ModelConfig& mc = cfg.model();
  if (!absl::GetFlag(FLAGS_hf_config_out).empty()) {
    RETURN_IF_ERROR(WriteFile(absl::GetFlag(FLAGS_hf_config_out), config::ModelConfigToHfJson(mc)));
  }
  const kernels::Device device = DeviceOf(cfg.device());
  int rc = 0;
  if (absl::GetFlag(FLAGS_check_against_cpu)) {
    ASSIGN_OR_RETURN(const bool ok, CheckAgainstCpu(cfg, device));
    if (!ok) rc = 1;
    if (absl::GetFlag(FLAGS_check_fp32_too) && cfg.precision() != config::FP32) {
      config::TrainConfig fp32 = cfg;
      fp32.set_precision(config::FP32);
      ASSIGN_OR_RETURN(const bool fp32_ok, CheckAgainstCpu(fp32, device));
      if (!fp32_ok) rc = 1;
    }
  }

  // The timed run.
  const int64_t batch = cfg.batch().micro_batch_size(), seq = cfg.batch().seq_len();
  int64_t micro = absl::GetFlag(FLAGS_micro_batches);
  if (micro <= 0) micro = std::max<int64_t>(1, cfg.batch().global_batch_size() / batch);
  const int64_t steps = absl::GetFlag(FLAGS_steps), warmup = absl::GetFlag(FLAGS_warmup);
  if (steps < 1 || warmup < 0) return absl::InvalidArgumentError("--steps must be >= 1 and --warmup >= 0");
  ASSIGN_OR_RETURN(auto ops, MakeBackend(cfg, device));
  const double peak_tflops = kernels::DevicePeakFlops(device, cfg.logging().peak_tflops(), cfg.precision() == config::BF16).flops / 1e12;
  const model::ParamCounts counts = model::CountParameters(mc);
  const double flops_per_token = model::TrainingFlopsPerToken(mc, seq, /*include_mtp=*/false);
  const int64_t tokens_per_step = micro * batch * seq;
  std::printf("== %s on %s: %lld params (%lld activated), %s, %lld micro-batches of %lld x %lld tokens per "
              "step, %.4g model FLOPs/token, peak %.1f TFLOP/s\n",
              cfg.name().c_str(), device == kernels::Device::kCuda ? "CUDA" : "CPU",
              static_cast<long long>(counts.total), static_cast<long long>(counts.activated_without_embedding),
              config::Precision_Name(cfg.precision()).c_str(), static_cast<long long>(micro),
              static_cast<long long>(batch), static_cast<long long>(seq), flops_per_token, peak_tflops);
  std::fflush(stdout);
  const auto build_start = Clock::now();
  Trainer trainer(cfg, ops.get(), seq);
  std::vector<TokenBatch> batches;
  for (int64_t m = 0; m < micro; ++m) batches.push_back(RandomBatch(batch, seq, mc.vocab_size(), 100 + m));
  ops->Synchronize();
  std::printf("model built in %.1f s\n", std::chrono::duration<double>(Clock::now() - build_start).count());

  // Timed steps alternate with as many steps run without per-op timing (on CUDA that is two events
  // per op, host work that can hold up a host-bound step), so both medians come from the same stretch.
  std::vector<double> times, untimed;
  double first_loss = 0, last_loss = 0;
  double device_peak_bytes = 0;  // the largest step's device-memory high-water mark (CUDA)
  const bool interleave = absl::GetFlag(FLAGS_steps_without_op_times);
  const int64_t total = warmup + (interleave ? 2 * steps : steps);
  std::map<std::string, kernels::OpTime> op_times;  // summed over the timed steps after warm-up
  for (int64_t s = 1; s <= total; ++s) {
    const bool timed = s <= warmup || !interleave || (s - warmup) % 2 == 1;
    ops->EnableOpTimes(timed);
    ops->ResetOpTimes();  // (the CPU times its matrix products even when op timing is off)
    kernels::ResetDeviceMemoryPeak(device);
    const auto t0 = Clock::now();
    const auto [loss, grad_norm] = trainer.Step(batches, batch, seq, s);
    ops->Synchronize();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    device_peak_bytes = std::max(device_peak_bytes, kernels::DeviceMemoryStats(device).peak_bytes);
    if (s == 1) first_loss = loss;
    last_loss = loss;
    if (s > warmup) (timed ? times : untimed).push_back(dt);
    if (s > warmup && timed) {
      for (const auto& [name, t] : ops->OpTimes()) {
        kernels::OpTime& sum = op_times[name];
        sum.seconds += t.seconds;
        sum.calls += t.calls;
        sum.flops += t.flops;
      }
    }
    std::printf("step %3lld%s loss %.4f grad norm %.3f  %.3f s  %.0f tokens/s\n", static_cast<long long>(s),
                s <= warmup ? " (warm-up)" : (timed ? "" : " (no op timing)"), loss, grad_norm, dt,
                static_cast<double>(tokens_per_step) / dt);
    std::fflush(stdout);
  }
  ops->EnableOpTimes(true);
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  double mean = 0;
  for (double t : times) mean += t / static_cast<double>(times.size());
  const double tokens_per_s = static_cast<double>(tokens_per_step) / median;
  const double tflops = flops_per_token * tokens_per_s / 1e12;
  const double mfu = tflops / peak_tflops;
  std::printf("== median step %.4f s (mean %.4f s): %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% of %.1f TFLOP/s\n",
              median, mean, tokens_per_s, tflops, 100 * mfu, peak_tflops);
  double untimed_median = 0;
  if (!untimed.empty()) {
    std::sort(untimed.begin(), untimed.end());
    untimed_median = untimed[untimed.size() / 2];
    const double untimed_tflops = flops_per_token * static_cast<double>(tokens_per_step) / untimed_median / 1e12;
    std::printf("== without per-op timing (interleaved steps): median step %.4f s: %.0f tokens/s, MFU %.1f%%\n",
                untimed_median, static_cast<double>(tokens_per_step) / untimed_median,
                100 * untimed_tflops / peak_tflops);
  }
  if (kernels::DeviceMemoryStats(device).tracked) {
    std::printf("   device memory: step peak %.0f MB (saved activations %.0f MB)\n", device_peak_bytes / 1e6,
                static_cast<double>(trainer.ActivationBytes()) / 1e6);
  }

  // Op breakdown per timed step.
  const double n = static_cast<double>(times.size());
  std::vector<std::pair<double, std::string>> sinks;
  double op_total = 0;
  std::string ops_json;
  for (const auto& [name, t] : op_times) {
    const double per_step = t.seconds / n;
    if (!kernels::IsHostOpTime(name)) {  // host entries overlap the device ones
      op_total += per_step;
      sinks.push_back({per_step, name});
    }
    const double op_tflops = t.seconds > 0 ? t.flops / t.seconds / 1e12 : 0.0;
    std::printf("   %-16s %8.2f ms/step %5.1f%% of the step %6lld calls%s\n", name.c_str(), 1e3 * per_step,
                100 * per_step / mean, static_cast<long long>(t.calls / static_cast<int64_t>(n)),
                t.flops > 0 ? absl::StrFormat("  %8.3f TFLOP/s", op_tflops).c_str() : "");
    absl::StrAppendFormat(&ops_json, "%s\"%s\": {\"ms_per_step\": %.4f, \"tflops\": %.3f}", ops_json.empty() ? "" : ", ",
                          name, 1e3 * per_step, op_tflops);
  }
  if (!op_times.empty()) {
    std::sort(sinks.rbegin(), sinks.rend());
    std::printf("   ops total %.2f ms/step (%.1f%% of the step; the rest is host work and launch gaps)\n",
                1e3 * op_total, 100 * op_total / mean);
    std::printf("   largest time sinks:");
    for (size_t i = 0; i < std::min<size_t>(3, sinks.size()); ++i) {
      std::printf(" %s %.1f%%%s", sinks[i].second.c_str(), 100 * sinks[i].first / mean, i < 2 ? "," : "");
    }
    std::printf("\n");
  }
  absl::PrintF("BENCH_RESULT {\"config\": \"%s\", \"device\": \"%s\", \"precision\": \"%s\", \"micro_batches\": %d, "
              "\"micro_batch\": %d, \"seq\": %d, \"tokens_per_step\": %d, \"step_time_s_median\": %.6f, "
              "\"step_time_s_mean\": %.6f, \"tokens_per_s\": %.1f, \"tflops\": %.3f, \"mfu\": %.4f, "
              "\"peak_tflops\": %.1f, \"flops_per_token\": %.6g, \"loss_first\": %.5f, \"loss_last\": %.5f, "
              "\"activation_mb\": %.1f, \"device_peak_mb\": %.1f, \"tokens_per_s_without_op_timing\": %s, "
              "\"ops\": {%s}}\n",
              cfg.name(), device == kernels::Device::kCuda ? "CUDA" : "CPU",
              config::Precision_Name(cfg.precision()), micro, batch, seq, tokens_per_step, median, mean, tokens_per_s,
              tflops, mfu, peak_tflops, flops_per_token, first_loss, last_loss,
              static_cast<double>(trainer.ActivationBytes()) / 1e6, device_peak_bytes / 1e6,
              untimed_median > 0 ? absl::StrFormat("%.1f", static_cast<double>(tokens_per_step) / untimed_median)
                                 : std::string("null"),  // not measured without --steps_without_op_times
              ops_json);
  return rc;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::config::SplitArgs args = moe::config::SplitSetFlags(argc, argv);
  int rest_argc = args.argc();
  absl::ParseCommandLine(rest_argc, args.rest.data());
  auto rc = moe::Run(args.overrides);
  if (!rc.ok()) {
    std::fprintf(stderr, "bench_step: %s\n", std::string(rc.status().message()).c_str());
    return 2;
  }
  return *rc;
}
