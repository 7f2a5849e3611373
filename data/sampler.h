// Which tokens each training row sees: a deterministic, resumable, rank-aware sampler over one shard.
//
// Samples. The shard's tokens (documents concatenated, each followed by its end-of-document id) are cut
// into W = floor((num_tokens - 1) / T) non-overlapping windows; window k starts at token k*T and holds
// the T+1 tokens [k*T, k*T + T], so inputs are tokens [k*T, k*T+T) and targets the same shifted by one.
// Windows cross document boundaries, as in GPT-style pretraining: the model learns to reset at EOD.
// The sampler defines an endless sequence of samples: sample i belongs to epoch e = i / W and is window
// perm_e(i mod W), where perm_e is a Fisher-Yates shuffle of [0, W) driven by SplitMix64 seeded from
// (seed, e). So every epoch visits every window exactly once, in a new order. SampleOrder::kSequential
// (validation) uses window i mod W instead: no shuffle.
//
// Portability. The shuffle uses data/prng.h (our own generator and unbiased bounded draw), never
// std::shuffle or <random> distributions, so a seed gives the same samples on every platform.
//
// Rank-awareness. The global batch, not the parallel layout, defines the run: step s consumes samples
// [s*G, (s+1)*G) for global batch size G. GlobalBatch::SampleIndex says which of them a data-parallel
// rank's micro-batch row holds (formula below), so DP=1, 2, 4 ... see the same G samples per step, and
// TP/EP peers (same dp_rank) read identical rows.
//
// Resumption. The sampler is a pure function of (shard, T, seed, sample index): the only state a
// checkpoint needs is the number of samples consumed (step * G while G stays the same). Resuming with a
// different G continues from the samples consumed (the trainer offsets SampleIndex by them).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/token_shard.h"

namespace moe::data {

enum class SampleOrder {
  kShuffled,    // training: a new permutation of the windows each epoch
  kSequential,  // validation: windows in order 0, 1, ..., W-1, then again
};

class Sampler {
 public:
  // Checks that `shard` holds at least one window (num_tokens >= seq_len + 1), seq_len > 0, and every id
  // fits int32. The error names the shard.
  static absl::StatusOr<Sampler> Create(const TokenShard* shard, int64_t seq_len, uint64_t seed,
                                        SampleOrder order = SampleOrder::kShuffled);

  // As Create, but a violated precondition is a programmer error and aborts with a message. `shard` must
  // outlive the sampler.
  Sampler(const TokenShard* shard, int64_t seq_len, uint64_t seed, SampleOrder order = SampleOrder::kShuffled);

  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;
  ~Sampler();

  // W: windows per epoch.
  int64_t samples_per_epoch() const { return num_windows_; }
  int64_t seq_len() const { return seq_len_; }

  // First token of sample `sample_index` (>= 0): T * (its window).
  int64_t WindowStart(int64_t sample_index) const;

  // inputs[t] = tokens[start + t], targets[t] = tokens[start + t + 1], t < T.   inputs, targets: [T]
  // Thread-safe.
  void Fill(int64_t sample_index, int32_t* inputs, int32_t* targets) const;

 private:
  struct PermutationCache;
  // Window index (0 <= result < W) of a sample.
  int64_t Window(int64_t sample_index) const;

  const TokenShard* shard_ = nullptr;
  int64_t seq_len_ = 0;
  uint64_t seed_ = 0;
  SampleOrder order_ = SampleOrder::kShuffled;
  int64_t num_windows_ = 0;
  std::unique_ptr<PermutationCache> cache_;  // the last epochs' permutations (kShuffled only)
};

// The permutation of [0, num_windows) that Sampler uses in `epoch` (exposed for tests and tools).
std::vector<int64_t> EpochPermutation(int64_t num_windows, uint64_t seed, int64_t epoch);

// How one step's global batch is split over data-parallel ranks and micro-batches (gradient
// accumulation). Every rank of a DP group takes per_rank() = G/D consecutive samples; they are processed
// as num_micro_batches() micro-batches of micro_batch_size rows.
struct GlobalBatch {
  int64_t global_batch = 1;      // G: samples per optimizer step, over all DP ranks
  int64_t dp_size = 1;           // D
  int64_t micro_batch_size = 1;  // M: rows per micro-batch on one rank

  // G % D == 0 and (G/D) % M == 0, all positive. The message names the three values.
  absl::Status Validate() const;
  int64_t per_rank() const { return global_batch / dp_size; }
  int64_t num_micro_batches() const { return per_rank() / micro_batch_size; }

  // SampleIndex(s, G, r, D, m, M, row) = s*G + r*(G/D) + m*M + row (see the free function).
  int64_t SampleIndex(int64_t step, int64_t dp_rank, int64_t micro_batch_index, int64_t row) const;
};

// The global sample index of row `row` of micro-batch `micro_batch_index` on data-parallel rank
// `dp_rank` of `dp_size`, at optimizer step `step` with global batch `global_batch`:
//
//     index = step * G  +  dp_rank * (G / D)  +  micro_batch_index * M  +  row
//
// Step s covers [s*G, (s+1)*G); rank r owns the contiguous slice [s*G + r*G/D, s*G + (r+1)*G/D); its
// micro-batch m is rows [m*M, (m+1)*M) of that slice. Enumerating (r, m, row) in lexicographic order
// yields s*G, s*G+1, ..., (s+1)*G-1 for any valid D and M, so the set of samples in a step, and their
// order, depend only on G. Arguments must satisfy GlobalBatch::Validate() and 0 <= dp_rank < D,
// 0 <= micro_batch_index < G/(D*M), 0 <= row < M, step >= 0; a violation aborts (programmer error).
int64_t SampleIndex(int64_t step, int64_t global_batch, int64_t dp_rank, int64_t dp_size,
                    int64_t micro_batch_index, int64_t micro_batch_size, int64_t row);

}  // namespace moe::data
