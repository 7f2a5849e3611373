#include "trainer/trainer.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "data/sampler.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "kernels/backend_factory.h"
#include "base/file_util.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "model/model.h"
#include "model/model_stats.h"
#include "trainer/backend_options.h"
#include "trainer/distributed_optimizer.h"
#include "parallel/device_groups.h"
#include "parallel/mesh.h"
#include "trainer/weight_gather.h"
#include "data/token_file.h"
#include "trainer/checkpoint.h"
#include "trainer/init_from.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/signals.h"
#include "trainer/stored_tokenizer.h"
#include "trainer/tensorboard.h"
#include "trainer/training_step.h"

namespace moe::trainer {
namespace {

// The CPUs this process may run on (its affinity mask, which the MPI launcher may have narrowed).
int AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  return std::max(1, CPU_COUNT(&set));
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Validation losses over the first `batches` sequential micro-batches; batch b runs on DP rank
// b mod dp (every rank runs the same number of forwards: EP dispatch is collective).
LossSums ValidationLoss(model::DeepseekV3Model& net, parallel::ProcessMesh& mesh, const data::Sampler& val,
                        int64_t batches, int64_t micro, int64_t seq) {
  const int64_t dp = mesh.shape().dp;
  std::vector<int32_t> ids(micro * seq), targets(micro * seq);
  LossSums sums(net.mtp_depths());
  for (int64_t b = mesh.dp_rank(); b < batches; b += dp) {
    for (int64_t r = 0; r < micro; ++r) val.Fill(b * micro + r, &ids[r * seq], &targets[r * seq]);
    sums.Add(net.Step(ids.data(), targets.data(), micro, seq, false, 1.0f));
  }
  sums.AllReduce(mesh.world());
  net.ResetExpertCounts();  // validation routing must not feed the bias update
  return sums;
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

// Writes the final weights (F32) and the run tokenizer's files to `dir` as a Hugging Face directory.
absl::Status ExportHf(const config::TrainConfig& cfg, model::DeepseekV3Model& net, kernels::Backend& ops,
                      parallel::ProcessMesh& mesh, const std::string& dir, const TokenizerFiles& tokenizer) {
  std::vector<std::vector<float>> store;
  std::vector<hf::WriteTensor> tensors;
  const bool leader = mesh.world_rank() == 0;
  trainer::ForEachGlobalTensor(
      net.params(), cfg.model(), {&mesh.world(), mesh.dp_rank(), mesh.expert_dp_rank(), &ops},
      [&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values) {
        if (!leader) return;
        store.push_back(values);
        hf::WriteTensor t;
        t.name = name;
        t.dtype = hf::DType::kF32;
        t.shape = shape;
        tensors.push_back(t);
      });
  if (!leader) return absl::OkStatus();
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = store[i].data();
  model::AppendMtpSharedCopies(cfg.model(), &tensors);  // as official checkpoints carry them
  config::ModelConfig model = cfg.model();
  model.set_torch_dtype("float32");  // the tensors written are F32
  RETURN_IF_ERROR(hf::WriteHfDirectory(dir, config::ModelConfigToHfJson(model), tensors, uint64_t{4} << 30));
  return WriteTokenizerFiles(dir, tokenizer);
}

// The eval mode: CE of the batch of docs/model.md "Batch layout and cross-entropy" (first B·T+1 tokens
// of a uint32 file) with the current weights, as one JSON object, so `train` and tools/hf_eval can be
// compared on the same batch.
absl::Status EvaluateTokenFile(model::DeepseekV3Model& net, parallel::ProcessMesh& mesh,
                               const TrainOptions& options, int64_t seq, bool leader) {
  ASSIGN_OR_RETURN(data::Batch b, data::ReadBatchFromTokenFile(options.eval_tokens, options.eval_batch, seq));
  LossSums sums(net.mtp_depths());
  sums.Add(net.Step(b.inputs.data(), b.targets.data(), options.eval_batch, seq, false, 1.0f));
  sums.AllReduce(mesh.tp());  // every DP rank evaluated the same batch; its tokens span TP
  if (leader) {
    std::printf("{\"loss\": %.17g, %s\"tokens\": %lld}\n", sums.ce_loss(),
                net.mtp_depths() > 0
                    ? absl::StrFormat("\"mtp_loss\": %.17g, ", sums.weighted_mtp_loss(net.mtp_depth_weight())).c_str()
                    : "",
                static_cast<long long>(sums.tokens()));
  }
  return absl::OkStatus();
}

// The op backend for cfg.device, the groups the model and optimizer move tensors over
// (parallel/device_groups.h), and the MFU denominator. The trainer's own host-side statistics and
// control (loss sums, expert counts, stop flags, checkpoints) always go over the mesh's MPI groups.
struct Runtime {
  std::unique_ptr<kernels::Backend> ops;
  std::unique_ptr<parallel::TensorGroups> groups;
  kernels::PeakFlops peak;  // the world's: the ranks' peaks summed
  kernels::Device device = kernels::Device::kCpu;
  std::string description;

  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const config::TrainConfig& cfg,
                                                         const parallel::MpiWorld& world,
                                                         parallel::ProcessMesh& mesh) {
    auto rt = std::make_unique<Runtime>();
    kernels::BackendOptions o = BackendOptionsFor(cfg);
    kernels::Device device = kernels::Device::kCpu;
    if (cfg.device() == config::CUDA) {  // one GPU per rank: the node-local rank's
      device = kernels::Device::kCuda;
      o.cuda_device = world.local_rank();
      rt->description = absl::StrCat("CUDA device ", o.cuda_device, " per rank (node-local rank), ",
                                      o.bf16_matmul ? "BF16 GEMMs" : "FP32 GEMMs",
                                      o.bf16_matmul && o.cudnn_attention ? ", cuDNN attention" : "",
                                      o.cuda_device_memory ? ", device memory" : ", unified memory",
                                      o.cuda_expert_gemm == kernels::BackendOptions::ExpertGemm::kCublasGrouped
                                          ? ", experts' GEMMs as one cuBLAS grouped call"
                                      : o.cuda_expert_gemm == kernels::BackendOptions::ExpertGemm::kCublasLtPadded
                                          ? ", experts' GEMMs as one padded cuBLASLt batch"
                                      : o.cuda_expert_gemm == kernels::BackendOptions::ExpertGemm::kKernel
                                          ? ", experts' GEMMs on the built-in grouped kernel"
                                          : "",
                                      world.size() > 1 ? ", NCCL groups" : "");
    } else {
      // The cores split between the ranks on this host, but no more than the CPUs this rank may run
      // on: Open MPI binds each rank to one core when it starts two ranks or fewer, and threads beyond
      // the bound CPUs would only take turns on them.
      const int host_share = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) / world.local_size());
      const int allowed = AllowedCpus();
      o.num_threads = cfg.num_threads() > 0 ? cfg.num_threads() : std::min(host_share, allowed);
      rt->description = absl::StrCat("CPU, ", o.num_threads, " threads per rank, ",
                                     o.bf16_matmul ? "BF16 GEMMs" : "FP32 GEMMs");
      if (o.num_threads > allowed || host_share > allowed) {
        absl::StrAppend(&rt->description, " (the launcher binds this rank to ", allowed, " CPU",
                        allowed == 1 ? "" : "s", o.num_threads > allowed ? ": threads share them" : "",
                        "; mpirun --bind-to none, or --map-by slot:PE=N, lets a rank use ", host_share, ")");
      }
    }
    rt->device = device;
    ASSIGN_OR_RETURN(rt->ops, kernels::CreateBackend(device, o));
    if (device == kernels::Device::kCuda) {
      ASSIGN_OR_RETURN(rt->groups, parallel::CreateDeviceGroups(mesh, *rt->ops));
    } else {
      rt->groups = parallel::MeshTensorGroups(mesh);
    }
    rt->peak = kernels::DevicePeakFlops(device, cfg.logging().peak_tflops(), cfg.precision() == config::BF16);
    mesh.world().AllReduceSum(&rt->peak.flops, 1);
    return rt;
  }
};

// Accumulates the backend's op times over the steps: matrix products (dense GEMM, grouped expert
// GEMM, attention) against the whole step.
class StepBreakdown {
 public:
  // Returns this step's matrix-product seconds.
  double Add(const std::map<std::string, kernels::OpTime>& times, double step_seconds) {
    double step_matmul = 0;
    for (const auto& [name, t] : times) {
      double* slot = name == "gemm"                ? &gemm_
                     : name == "grouped_gemm"      ? &grouped_
                     : absl::StartsWith(name, "attention") ? &attention_
                                                   : nullptr;
      if (slot == nullptr) continue;
      *slot += t.seconds;
      step_matmul += t.seconds;
    }
    total_ += step_seconds;
    return step_matmul;
  }
  void Print() const {
    if (total_ <= 0 || gemm_ + grouped_ + attention_ <= 0) return;  // nothing timed (op_breakdown off)
    const double t = total_;
    std::printf("step time on rank 0: %.1f s; dense GEMM %.1f%%, grouped expert GEMM %.1f%%, attention "
                "%.1f%%, everything else %.1f%%\n",
                t, 100 * gemm_ / t, 100 * grouped_ / t, 100 * attention_ / t,
                100 * (1 - (gemm_ + grouped_ + attention_) / t));
  }

 private:
  double gemm_ = 0, grouped_ = 0, attention_ = 0, total_ = 0;
};

// Rank 0 decides whether and from which step to resume, and broadcasts it, so ranks never disagree
// (e.g. when a host's view of the output directory lags behind). Returns the step directory, or "".
absl::StatusOr<std::string> DecideResume(const config::TrainConfig& cfg, const TrainOptions& options, bool leader,
                                         parallel::ProcessMesh& mesh) {
  int64_t decision[2] = {-1, 0};  // {step to resume (-1: none), failed}
  absl::StatusOr<std::string> found = std::string();
  if (leader) {
    found = FindResumeDir(cfg.output_dir(), options.resume_from);
    if (!found.ok()) {
      decision[1] = 1;
    } else if (!found->empty()) {
      auto manifest = ReadManifest(*found);  // also verifies the stored tokenizer files
      if (manifest.ok()) {
        decision[0] = manifest->step();
      } else {
        found = manifest.status();
        decision[1] = 1;
      }
    }
    // Say what it was before the collective: the job may be aborted right after it.
    if (decision[1] && mesh.world().size() > 1) {
      std::fprintf(stderr, "train: rank 0: %s\n", std::string(found.status().message()).c_str());
    }
  }
  mesh.world().Broadcast(decision, 2, 0);
  if (decision[1]) return leader ? found.status() : absl::AbortedError("rank 0 could not read the checkpoint");
  if (decision[0] < 0) return std::string();
  return !options.resume_from.empty() ? options.resume_from
                                      : JoinPath(CheckpointRoot(cfg.output_dir()), StepDirName(decision[0]));
}

// A shard must fit the model's vocabulary and come from the run's tokenizer (`tokenizer_spec` names it
// to tools/prepare_data --tokenizer in the fix the error suggests).
absl::Status CheckShardFitsRun(const data::TokenShard& s, const config::ModelConfig& mc,
                               const data::Tokenizer& tokenizer, const std::string& tokenizer_spec) {
  if (s.vocab_size() > mc.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data shard ", s.prefix(), " has vocab size ", s.vocab_size(), " > model.vocab_size ", mc.vocab_size(),
        ": its ids do not fit the model; re-run tools/prepare_data --tokenizer=", tokenizer_spec,
        " or raise model.vocab_size"));
  }
  if (s.tokenizer_fingerprint() != tokenizer.fingerprint()) {
    // "fnv1a64:... ("path/tokenizer.json")", or just "byte".
    auto named = [](const std::string& fingerprint, const std::string& name) {
      return fingerprint == name ? fingerprint : absl::StrCat(fingerprint, " (\"", name, "\")");
    };
    return absl::FailedPreconditionError(absl::StrCat(
        "data shard ", s.prefix(), " was written with tokenizer ", named(s.tokenizer_fingerprint(), s.tokenizer()),
        ", but this run's tokenizer is ", named(tokenizer.fingerprint(), tokenizer.name()),
        ": re-run tools/prepare_data --tokenizer=", tokenizer_spec, ", or set data.tokenizer to the shard's"));
  }
  return absl::OkStatus();
}

// What the run reads: its tokenizer (trainer/stored_tokenizer.h: data.tokenizer, else the one stored with
// the weights it starts from, else byte; its files go into every checkpoint and the HF export) and, with
// open_shards, the train and validation shards (memory-mapped, read-only; DP rank r reads its slice),
// checked against the model and the tokenizer before any work.
struct RunInputs {
  std::unique_ptr<data::Tokenizer> tokenizer;
  TokenizerFiles tokenizer_files;
  std::optional<data::TokenShard> train, val;
};

absl::StatusOr<RunInputs> OpenRunInputs(const config::TrainConfig& cfg, const std::string& weights_dir,
                                        bool resuming, bool open_shards, bool leader) {
  RunInputs in;
  ASSIGN_OR_RETURN(in.tokenizer,
                   ResolveRunTokenizer(cfg, weights_dir, resuming ? WeightsRole::kResume : WeightsRole::kInitFrom));
  ASSIGN_OR_RETURN(in.tokenizer_files, SnapshotTokenizerFiles(*in.tokenizer));
  const bool adopted = !cfg.data().has_tokenizer() && !weights_dir.empty() &&
                       in.tokenizer->fingerprint() != kByteFingerprint;
  // How to name it to tools/prepare_data --tokenizer.
  const std::string tokenizer_spec = cfg.data().has_tokenizer() ? cfg.data().tokenizer()
                                     : adopted                  ? weights_dir
                                                                : std::string(kByteFingerprint);
  if (leader) {
    std::printf("tokenizer: %s%s\n", DescribeTokenizer(*in.tokenizer).c_str(),
                adopted ? absl::StrCat(", stored with ", weights_dir).c_str() : "");
    std::fflush(stdout);
  }
  if (!open_shards) return in;
  ASSIGN_OR_RETURN(in.train, data::TokenShard::Open(cfg.data().train_path()));
  ASSIGN_OR_RETURN(in.val, data::TokenShard::Open(cfg.data().val_path()));
  for (const data::TokenShard* shard : {&*in.train, &*in.val}) {
    RETURN_IF_ERROR(CheckShardFitsRun(*shard, cfg.model(), *in.tokenizer, tokenizer_spec));
  }
  return in;
}

// After each step: the metric row (metrics.jsonl and TensorBoard, rank 0), the validation loss when it
// is due, the log line and the progress bar. Every rank calls Report (validation is collective).
class StepReporter {
 public:
  struct Context {
    const config::TrainConfig* cfg = nullptr;
    model::DeepseekV3Model* net = nullptr;
    parallel::ProcessMesh* mesh = nullptr;
    data::Sampler* val_sampler = nullptr;
    int64_t val_batches = 0, micro = 0, seq = 0, tokens_per_step = 0;
    double flops_per_token = 0, peak_flops = 0;
    kernels::Device device = kernels::Device::kCpu;  // whose memory device_peak_mb reports
    MetricsWriter* metrics = nullptr;      // rank 0 only
    TensorBoardWriter* events = nullptr;   // rank 0 only
    Clock::time_point run_start;
  };
  explicit StepReporter(Context c) : c_(c) {}

  // dt: the step's wall time; matmul_seconds: its matrix-product share (StepBreakdown::Add).
  absl::Status Report(int64_t step, double lr, const StepOutcome& outcome, double dt, double matmul_seconds) {
    const config::TrainConfig& cfg = *c_.cfg;
    model::DeepseekV3Model& net = *c_.net;
    const int64_t total_steps = cfg.schedule().total_steps();
    const OptimizerStepStats& opt = outcome.optimizer;
    const LossSums& losses = outcome.losses;
    const std::vector<double>& load = outcome.load;
    const double tokens_per_s = static_cast<double>(c_.tokens_per_step) / dt;
    const double mfu = tokens_per_s * c_.flops_per_token / c_.peak_flops;
    const double load_max = load.empty() ? 0.0 : *std::max_element(load.begin(), load.end());
    const double loss = losses.ce_loss();
    const double mtp_loss = losses.weighted_mtp_loss(net.mtp_depth_weight());
    if (!std::isfinite(loss) || !std::isfinite(mtp_loss)) {
      return absl::InternalError(absl::StrCat("loss is ", loss, " (MTP loss ", mtp_loss, ") at step ", step, "; stopping"));
    }

    MetricRow row = {{"step", static_cast<double>(step)}, {"loss", loss}, {"lr", lr},
                     {"grad_norm", opt.grad_norm}, {"tokens_per_s", tokens_per_s}, {"mfu", mfu},
                     {"expert_load_max_mean", load_max}, {"step_time_s", dt},
                     {"gemm_fraction", matmul_seconds / dt},
                     {"activation_mb", static_cast<double>(net.SavedActivationBytes()) / 1e6}};
    if (net.mtp_depths() > 0) {
      row.push_back({"mtp_loss", mtp_loss});
      for (int64_t k = 1; k <= net.mtp_depths(); ++k) row.push_back({absl::StrCat("mtp_loss_", k), losses.mtp_loss(k)});
    }
    if (cfg.model().aux_loss_alpha() > 0) row.push_back({"balance_loss", outcome.balance_loss});
    if (cfg.parallel().capacity_factor() > 0) row.push_back({"dropped_tokens", outcome.dropped});
    if (c_.mesh->world().size() > 1) row.push_back({"grad_sync_s", opt.grad_sync_s});
    // The step's device-memory high-water mark, the largest over the ranks (CUDA only).
    const kernels::DeviceMemory memory = kernels::DeviceMemoryStats(c_.device);
    double device_peak_mb = memory.peak_bytes / 1e6;
    if (memory.tracked) {
      c_.mesh->world().AllReduceMax(&device_peak_mb, 1);
      row.push_back({"device_peak_mb", device_peak_mb});
    }
    const bool eval_now = (cfg.eval().every() > 0 && step % cfg.eval().every() == 0) || step == total_steps;
    std::string val_text;
    if (eval_now) {
      const LossSums val = ValidationLoss(net, *c_.mesh, *c_.val_sampler, c_.val_batches, c_.micro, c_.seq);
      row.push_back({"val_loss", val.ce_loss()});
      val_text = absl::StrFormat(" | val loss %.4f", val.ce_loss());
      if (net.mtp_depths() > 0) {
        const double val_mtp = val.weighted_mtp_loss(net.mtp_depth_weight());
        row.push_back({"val_mtp_loss", val_mtp});
        absl::StrAppendFormat(&val_text, " | val mtp loss %.4f", val_mtp);
      }
    }
    if (c_.metrics == nullptr) return absl::OkStatus();  // not rank 0
    RETURN_IF_ERROR(c_.metrics->Write(row));
    RETURN_IF_ERROR(c_.events->WriteScalars(step, MetricRow(row.begin() + 1, row.end())));  // all but "step"
    if (step % std::max<int64_t>(1, cfg.logging().every()) == 0 || eval_now) {
      std::printf("step %5lld | loss %.4f%s | lr %.3e | grad norm %.3f | %.0f tok/s | MFU %.1f%% | "
                  "expert load max/mean %.2f | act %.0f MB%s | %.3fs%s\n",
                  static_cast<long long>(step), loss,
                  net.mtp_depths() > 0 ? absl::StrFormat(" | mtp loss %.4f", mtp_loss).c_str() : "", lr,
                  opt.grad_norm, tokens_per_s, 100 * mfu, load_max,
                  static_cast<double>(net.SavedActivationBytes()) / 1e6,
                  memory.tracked ? absl::StrFormat(" | device peak %.0f MB", device_peak_mb).c_str() : "", dt,
                  val_text.c_str());
      std::fflush(stdout);
    }
    if (cfg.logging().progress_bar()) ProgressBar(step, total_steps, Seconds(c_.run_start, Clock::now()));
    return absl::OkStatus();
  }

 private:
  Context c_;
};

}  // namespace

absl::Status Train(const config::TrainConfig& cfg, const TrainOptions& options,
                   const parallel::MpiWorld& world) {
  const bool leader = world.rank() == 0;
  const config::ModelConfig& mc = cfg.model();
  const int64_t seq = cfg.batch().seq_len(), micro = cfg.batch().micro_batch_size();
  const parallel::MeshShape shape{cfg.parallel().dp(), cfg.parallel().tp(), cfg.parallel().ep()};
  RETURN_IF_ERROR(parallel::ValidateLayout(shape, world.size(), mc, micro, seq));
  ASSIGN_OR_RETURN(std::unique_ptr<parallel::ProcessMesh> mesh,
                   parallel::ProcessMesh::Create(shape, cfg.parallel().collective_timeout_s()));

  ASSIGN_OR_RETURN(const std::string resume_dir, DecideResume(cfg, options, leader, *mesh));

  // --init_from may name an HF directory, a step directory, a checkpoints root or a run directory.
  std::string init_from;  // empty when resuming: the run's own checkpoint wins
  if (!options.init_from.empty() && resume_dir.empty()) {
    ASSIGN_OR_RETURN(init_from, ResolveWeightsDir(options.init_from));
  }
  const std::string weights_dir = !resume_dir.empty() ? resume_dir : init_from;
  ASSIGN_OR_RETURN(const RunInputs inputs, OpenRunInputs(cfg, weights_dir, !resume_dir.empty(),
                                                         /*open_shards=*/options.eval_tokens.empty(), leader));
  const TokenizerFiles& tokenizer_files = inputs.tokenizer_files;

  // Output directory and metrics (rank 0 writes).
  std::unique_ptr<MetricsWriter> metrics;
  std::unique_ptr<TensorBoardWriter> events;  // the same scalars for TensorBoard
  if (leader) {
    RETURN_IF_ERROR(MakeDirs(cfg.output_dir()));
    ASSIGN_OR_RETURN(MetricsWriter w, MetricsWriter::Open(JoinPath(cfg.output_dir(), "metrics.jsonl")));
    metrics = std::make_unique<MetricsWriter>(std::move(w));
    ASSIGN_OR_RETURN(TensorBoardWriter tb, TensorBoardWriter::Open(cfg.output_dir()));
    events = std::make_unique<TensorBoardWriter>(std::move(tb));
  }

  // Backend, the groups tensors move over, the peak for MFU; then model and optimizer.
  ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt, Runtime::Create(cfg, world, *mesh));
  kernels::Backend& ops = *rt->ops;
  const double peak_flops = rt->peak.flops;
  const bool bf16 = cfg.precision() == config::BF16;
  std::function<absl::Status(model::ParamStore&)> load_weights;
  if (!init_from.empty()) {  // (empty when resuming)
    load_weights = [&](model::ParamStore& params) {
      std::vector<std::string> warnings;
      RETURN_IF_ERROR(InitWeightsFrom(init_from, mc, bf16, &params, ops, &warnings));
      if (leader) {
        for (const auto& w : warnings) std::printf("warning: %s\n", w.c_str());
        std::printf("initialised weights from %s (fresh optimizer state)\n", init_from.c_str());
      }
      return absl::OkStatus();
    };
  } else if (!options.init_from.empty() && leader) {
    std::printf("--init_from ignored: resuming the run's own checkpoint %s\n", resume_dir.c_str());
  }
  ASSIGN_OR_RETURN(TrainingModel built,
                   CreateTrainingModel(cfg, ops, seq, {rt->groups->tp, rt->groups->ep, cfg.parallel().capacity_factor()},
                                       {rt->groups->world, rt->groups->dp, rt->groups->expert_dp}, load_weights));
  model::DeepseekV3Model& net = *built.net;
  DistributedOptimizer& optimizer = *built.optimizer;
  const model::ParamCounts counts = model::CountParameters(mc);
  const double flops_per_token = model::TrainingFlopsPerToken(mc, seq, /*include_mtp=*/true);
  if (leader) {
    std::printf("model: %lld params (%lld activated per token), %s; layout dp=%lld tp=%lld ep=%lld on %d "
                "ranks; %s; MFU denominator %.1f GFLOP/s over all ranks (%s)\n",
                static_cast<long long>(counts.total),
                static_cast<long long>(counts.activated_without_embedding), bf16 ? "BF16" : "FP32",
                static_cast<long long>(shape.dp), static_cast<long long>(shape.tp),
                static_cast<long long>(shape.ep), world.size(), rt->description.c_str(), peak_flops / 1e9,
                rt->peak.source.c_str());
    std::fflush(stdout);
  }

  // Resume: the same command picks up <output_dir>/checkpoints/latest (or --resume_from).
  const CheckpointContext ckpt{&cfg, &net.params(), &optimizer, mesh.get(), &tokenizer_files, rt->ops.get()};
  ResumeState state;
  if (!resume_dir.empty()) {
    std::string note;
    const auto load_start = Clock::now();
    ASSIGN_OR_RETURN(state, LoadCheckpoint(ckpt, resume_dir, &note));
    if (leader) {
      if (!note.empty()) std::printf("%s\n", note.c_str());
      std::printf("resumed from %s at step %lld (loaded in %.2f s)\n", resume_dir.c_str(),
                  static_cast<long long>(state.step), Seconds(load_start, Clock::now()));
      std::fflush(stdout);
    }
  }
  if (!options.eval_tokens.empty()) return EvaluateTokenFile(net, *mesh, options, seq, leader);

  ASSIGN_OR_RETURN(data::Sampler train_sampler,
                   data::Sampler::Create(&*inputs.train, seq, cfg.data().seed()));
  ASSIGN_OR_RETURN(data::Sampler val_sampler,
                   data::Sampler::Create(&*inputs.val, seq, cfg.data().seed(), data::SampleOrder::kSequential));
  data::GlobalBatch gb{cfg.batch().global_batch_size(), shape.dp, micro};
  RETURN_IF_ERROR(gb.Validate());
  if (leader) {
    std::printf("data: train %lld tokens (%lld windows of %lld), val %lld tokens; %lld micro-batches of "
                "%lld per rank per step\n",
                static_cast<long long>(inputs.train->num_tokens()),
                static_cast<long long>(train_sampler.samples_per_epoch()), static_cast<long long>(seq),
                static_cast<long long>(inputs.val->num_tokens()),
                static_cast<long long>(gb.num_micro_batches()), static_cast<long long>(micro));
    std::fflush(stdout);
  }
  int64_t last_saved = state.step;
  auto save = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const SaveStats saved, SaveCheckpoint(ckpt, state));
    last_saved = state.step;
    if (leader) {
      std::printf("saved checkpoint %s (%.1f MB in %.2f s)\n", saved.dir.c_str(), saved.bytes / 1e6, saved.seconds);
      std::fflush(stdout);
    }
    return absl::OkStatus();
  };
  InstallStopSignalHandlers();

  const int64_t total_steps = cfg.schedule().total_steps();
  // Every rank must run the same number of forwards (EP dispatch is collective), so the validation
  // set is rounded up to whole rounds of one micro-batch per DP rank.
  const int64_t val_rounds =
      (std::max<int64_t>(1, std::min(cfg.eval().batches(), val_sampler.samples_per_epoch() / micro)) + shape.dp - 1) /
      shape.dp;
  const int64_t val_batches = val_rounds * shape.dp;
  const int64_t num_micro = gb.num_micro_batches();
  const float loss_scale = 1.0f / static_cast<float>(num_micro * shape.dp);  // mean over the global batch
  // Step s reads samples [base + (s-1) G, base + s G): base is 0 unless a resume changed G, so the data
  // continue from the samples consumed (Megatron's consumed_train_samples) rather than from s * G.
  const int64_t sample_base = state.next_sample - state.step * gb.global_batch;
  StepReporter reporter({&cfg, &net, mesh.get(), &val_sampler, val_batches, micro, seq, gb.global_batch * seq,
                         flops_per_token, peak_flops, rt->device, metrics.get(), events.get(), Clock::now()});
  StepBreakdown breakdown;  // where the step time goes (this rank)
  // CUDA: events around each op, unless logging.op_breakdown is off (the CPU always times its matrix
  // products).
  ops.EnableOpTimes(cfg.logging().op_breakdown());
  for (int64_t step = state.step + 1; step <= total_steps; ++step) {
    const auto t0 = Clock::now();
    ops.ResetOpTimes();
    kernels::ResetDeviceMemoryPeak(rt->device);
    const double lr = LearningRate(cfg.optimizer(), cfg.schedule(), step);
    const StepOutcome outcome = RunTrainingStep(
        net, optimizer, mesh->world(), cfg, step, lr, num_micro, micro, seq, loss_scale,
        [&](int64_t m, int32_t* ids, int32_t* targets) {
          for (int64_t r = 0; r < micro; ++r) {
            train_sampler.Fill(sample_base + gb.SampleIndex(step - 1, mesh->dp_rank(), m, r), &ids[r * seq],
                               &targets[r * seq]);
          }
        });
    const OptimizerStepStats& opt = outcome.optimizer;
    if (!opt.updated()) {
      return absl::InternalError(absl::StrCat(
          "step ", step, ": the gradient norm is ", opt.grad_norm, "; the first tensor with a non-finite gradient is ",
          opt.first_nonfinite, ". Stopped before the optimizer changed any weight",
          last_saved > 0 ? absl::StrCat("; the last checkpoint is step ", last_saved) : std::string(),
          " (lower optimizer.lr, or check the data around this step)"));
    }
    const double dt = Seconds(t0, Clock::now());
    RETURN_IF_ERROR(reporter.Report(step, lr, outcome, dt, breakdown.Add(ops.OpTimes(), dt)));
    state.step = step;
    state.tokens_seen += gb.global_batch * seq;
    state.next_sample += gb.global_batch;
    if (cfg.checkpoint().save_every() > 0 && step % cfg.checkpoint().save_every() == 0) RETURN_IF_ERROR(save());
    // A stop signal on any rank stops every rank after this step, with a checkpoint.
    int64_t stop = StopRequested() ? 1 : 0;
    mesh->world().AllReduceSum(&stop, 1);
    const bool interval_exit = options.exit_interval > 0 && step % options.exit_interval == 0 && step < total_steps;
    if (stop > 0 || interval_exit) {
      if (last_saved != step) RETURN_IF_ERROR(save());
      if (leader) {
        std::printf("%s after step %lld; resume with the same command\n",
                    stop > 0 ? "stopped by signal" : "exit interval reached", static_cast<long long>(step));
      }
      return absl::OkStatus();
    }
  }
  if (leader) breakdown.Print();
  if (cfg.checkpoint().save_at_end() && last_saved != state.step) RETURN_IF_ERROR(save());
  if (!options.export_hf_dir.empty()) {
    optimizer.FinishWeightSync();  // with overlap_param_gather the last step's gathers are in flight
    RETURN_IF_ERROR(ExportHf(cfg, net, ops, *mesh, options.export_hf_dir, tokenizer_files));
    if (leader) std::printf("final weights written to %s\n", options.export_hf_dir.c_str());
  }
  return absl::OkStatus();
}

}  // namespace moe::trainer
