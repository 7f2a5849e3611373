// The training loop over the process mesh (DP x TP, EP across it): each DP rank takes its part of
// the global batch in micro-batches (gradient accumulation), the ZeRO-1 optimizer reduces gradients,
// clips by the global norm and applies AdamW with warm-up + cosine; expert loads are summed over the
// world for the aux-loss-free bias update; periodic validation; a log line and a metrics.jsonl row
// per step on rank 0.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "configs/config.pb.h"
#include "parallel/mpi_world.h"

namespace moe::trainer {

struct TrainOptions {
  std::string export_hf_dir;  // if set: after training, write the final weights there (HF, FP32)
  std::string resume_from;    // a checkpoint step directory; default: <output_dir>/checkpoints/latest
  std::string init_from;      // fresh run from these weights (trainer/init_from.h ResolveWeightsDir);
                              // the tokenizer stored there is the run's unless data.tokenizer is set
  std::string eval_tokens;    // if set: print the loss of the docs/model.md batch
                              // ("Batch layout and cross-entropy") from this file and exit
  int64_t eval_batch = 1;     // sequences in that batch (T = batch.seq_len)
  int64_t exit_interval = 0;  // if > 0: save and exit after a step divisible by it (Megatron's
                              // --exit-interval), e.g. to fit a time-limited allocation
};

// Runs the whole job described by `cfg` (already validated). Returns an error naming what is wrong
// (missing data, an impossible layout, an unsupported feature, shards of another tokenizer or a larger
// vocabulary, a resume with another tokenizer) before any step runs. The run tokenizer's files are
// stored in every checkpoint and the export (trainer/stored_tokenizer.h).
absl::Status Train(const config::TrainConfig& cfg, const TrainOptions& options,
                   const parallel::MpiWorld& world);

}  // namespace moe::trainer
