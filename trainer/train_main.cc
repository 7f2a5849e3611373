// train: the trainer's command line.
//
//   mpirun -np N bazel-bin/trainer/train --config=configs/X.textproto [--set key=value ...] [--dry_run]
//
// --set takes a dotted path into config.proto (repeatable); --dry_run validates the config and prints
// one JSON object (parameter counts, FLOPs per token, memory per rank) without training.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "configs/config_loader.h"
#include "model/model_stats.h"
#include "parallel/mpi_world.h"
#include "trainer/trainer.h"

ABSL_FLAG(std::string, config, "", "path to a TrainConfig text proto (configs/*.textproto)");
ABSL_FLAG(std::vector<std::string>, set, {},
          "config override as dotted.path=value; repeat the flag for several");
ABSL_FLAG(bool, dry_run, false, "validate the config, print counts/FLOPs/memory as JSON, and exit");
ABSL_FLAG(std::string, resume_from, "",
          "resume from this checkpoint step directory (default: <output_dir>/checkpoints/latest if any)");
ABSL_FLAG(std::string, init_from, "",
          "start from these weights (Hugging Face directory or native checkpoint step directory) with a "
          "fresh optimizer (and, unless data.tokenizer is set, the tokenizer stored there); ignored when the "
          "output directory already holds a checkpoint to resume");
ABSL_FLAG(std::string, eval_tokens, "",
          "print {\"loss\": ...} for the batch of --eval_batch sequences of batch.seq_len laid out as in "
          "docs/model.md from this uint32 token file, with the initial/resumed weights, and exit");
ABSL_FLAG(int64_t, eval_batch, 1, "sequences in the --eval_tokens batch");
ABSL_FLAG(int64_t, exit_interval, 0, "save a checkpoint and exit after a step divisible by this (0: off)");
ABSL_FLAG(std::string, export_hf, "",
          "after training, write the final weights to this directory as a Hugging Face model (FP32), with "
          "the run tokenizer's tokenizer.json and tokenizer_config.json");

int main(int argc, char** argv) {
  moe::config::SplitArgs args = moe::config::SplitSetFlags(argc, argv);
  const std::vector<std::string>& overrides = args.overrides;
  int rest_argc = args.argc();
  char** rest_argv = args.rest.data();
  absl::ParseCommandLine(rest_argc, rest_argv);

  auto world = moe::parallel::MpiWorld::Init(&rest_argc, &rest_argv);
  if (!world.ok()) {
    std::fprintf(stderr, "train: %s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  auto fail = [&](const absl::Status& s) {
    std::fprintf(stderr, "train: rank %d: %s\n", world->rank(), std::string(s.message()).c_str());
    if (world->size() > 1) world->Abort(1);
    return 1;
  };
  const std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) return fail(absl::InvalidArgumentError("--config is required"));
  auto cfg = moe::config::ResolveTrainConfig(path, overrides);
  if (!cfg.ok()) return fail(cfg.status());
  if (absl::GetFlag(FLAGS_dry_run)) {
    if (world->rank() == 0) std::printf("%s\n", moe::model::DryRunJson(*cfg).c_str());
    return 0;
  }
  moe::trainer::TrainOptions options;
  options.export_hf_dir = absl::GetFlag(FLAGS_export_hf);
  options.resume_from = absl::GetFlag(FLAGS_resume_from);
  options.exit_interval = absl::GetFlag(FLAGS_exit_interval);
  options.init_from = absl::GetFlag(FLAGS_init_from);
  options.eval_tokens = absl::GetFlag(FLAGS_eval_tokens);
  options.eval_batch = absl::GetFlag(FLAGS_eval_batch);
  const absl::Status status = moe::trainer::Train(*cfg, options, *world);
  if (!status.ok()) return fail(status);
  return 0;
}
