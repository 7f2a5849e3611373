// Deterministic training/validation sampler and the global-batch layout (see sampler.h).
#include "data/sampler.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "data/prng.h"

namespace moe::data {
namespace {

// Precondition failures are programmer errors: print and abort (absl/log is not available here).
[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "data/sampler: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

absl::Status CheckArguments(const TokenShard* shard, int64_t seq_len) {
  if (shard == nullptr) return absl::InvalidArgumentError("sampler: shard is null");
  if (seq_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampler: seq_len must be > 0, got ", seq_len));
  }
  if (shard->num_tokens() < seq_len + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token shard '", shard->prefix(), "' holds ", shard->num_tokens(), " tokens, fewer than one window of ",
        seq_len, " + 1 tokens; use a shorter sequence length or more data"));
  }
  if (shard->vocab_size() > std::numeric_limits<int32_t>::max()) {
    return absl::FailedPreconditionError(absl::StrCat("token shard '", shard->prefix(), "': vocab_size ",
                                                      shard->vocab_size(), " does not fit int32 ids"));
  }
  return absl::OkStatus();
}

// The generator state for an epoch's shuffle: a non-linear mix of (seed, epoch), so different epochs
// (and seeds) get unrelated SplitMix64 streams rather than shifted copies of one stream.
uint64_t EpochState(uint64_t seed, int64_t epoch) {
  return Mix64(Mix64(seed) ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull));
}

}  // namespace

std::vector<int64_t> EpochPermutation(int64_t num_windows, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(static_cast<size_t>(num_windows));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  SplitMix64 rng(EpochState(seed, epoch));
  // Fisher-Yates (Durstenfeld): position i swaps with a uniform j in [0, i].
  for (int64_t i = num_windows - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Uniform(static_cast<uint64_t>(i) + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

// The permutations of the two most recently used epochs: samples are read mostly in increasing order,
// and a step's global batch can straddle an epoch boundary.
struct Sampler::PermutationCache {
  struct Entry {
    int64_t epoch = -1;
    std::shared_ptr<const std::vector<int64_t>> perm;
  };
  absl::Mutex mu;
  Entry entries[2] ABSL_GUARDED_BY(mu);
  int next_victim ABSL_GUARDED_BY(mu) = 0;
};

absl::StatusOr<Sampler> Sampler::Create(const TokenShard* shard, int64_t seq_len, uint64_t seed,
                                        SampleOrder order) {
  const absl::Status status = CheckArguments(shard, seq_len);
  if (!status.ok()) return status;
  return Sampler(shard, seq_len, seed, order);
}

Sampler::Sampler(const TokenShard* shard, int64_t seq_len, uint64_t seed, SampleOrder order)
    : shard_(shard), seq_len_(seq_len), seed_(seed), order_(order) {
  const absl::Status status = CheckArguments(shard, seq_len);
  if (!status.ok()) Fail(status.ToString());
  num_windows_ = (shard->num_tokens() - 1) / seq_len;
  cache_ = std::make_unique<PermutationCache>();
}

Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;
Sampler::~Sampler() = default;

int64_t Sampler::Window(int64_t sample_index) const {
  if (sample_index < 0) Fail(absl::StrCat("sample index must be >= 0, got ", sample_index));
  const int64_t epoch = sample_index / num_windows_;
  const int64_t position = sample_index % num_windows_;
  if (order_ == SampleOrder::kSequential) return position;

  std::shared_ptr<const std::vector<int64_t>> perm;
  {
    absl::MutexLock lock(&cache_->mu);
    for (const PermutationCache::Entry& entry : cache_->entries) {
      if (entry.epoch == epoch) perm = entry.perm;
    }
    if (perm == nullptr) {
      perm = std::make_shared<const std::vector<int64_t>>(EpochPermutation(num_windows_, seed_, epoch));
      PermutationCache::Entry& victim = cache_->entries[cache_->next_victim];
      victim.epoch = epoch;
      victim.perm = perm;
      cache_->next_victim ^= 1;
    }
  }
  return (*perm)[static_cast<size_t>(position)];
}

int64_t Sampler::WindowStart(int64_t sample_index) const { return Window(sample_index) * seq_len_; }

void Sampler::Fill(int64_t sample_index, int32_t* inputs, int32_t* targets) const {
  const uint32_t* window = shard_->tokens() + WindowStart(sample_index);  // [T + 1]
  for (int64_t t = 0; t < seq_len_; ++t) {
    inputs[t] = static_cast<int32_t>(window[t]);
    targets[t] = static_cast<int32_t>(window[t + 1]);
  }
}

absl::Status GlobalBatch::Validate() const {
  const std::string values = absl::StrCat("global batch ", global_batch, ", data-parallel size ", dp_size,
                                          ", micro-batch size ", micro_batch_size);
  if (global_batch <= 0 || dp_size <= 0 || micro_batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(values, ": all must be > 0"));
  }
  if (global_batch % dp_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(values, ": the global batch must be divisible by the data-parallel size"));
  }
  if (per_rank() % micro_batch_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(values, ": the per-rank batch ", per_rank(),
                                                   " must be divisible by the micro-batch size"));
  }
  return absl::OkStatus();
}

int64_t GlobalBatch::SampleIndex(int64_t step, int64_t dp_rank, int64_t micro_batch_index, int64_t row) const {
  return data::SampleIndex(step, global_batch, dp_rank, dp_size, micro_batch_index, micro_batch_size, row);
}

int64_t SampleIndex(int64_t step, int64_t global_batch, int64_t dp_rank, int64_t dp_size,
                    int64_t micro_batch_index, int64_t micro_batch_size, int64_t row) {
  const GlobalBatch layout{global_batch, dp_size, micro_batch_size};
  const absl::Status status = layout.Validate();
  if (!status.ok()) Fail(status.ToString());
  if (step < 0 || dp_rank < 0 || dp_rank >= dp_size || micro_batch_index < 0 ||
      micro_batch_index >= layout.num_micro_batches() || row < 0 || row >= micro_batch_size) {
    Fail(absl::StrCat("SampleIndex(step=", step, ", dp_rank=", dp_rank, ", micro_batch_index=", micro_batch_index,
                      ", row=", row, ") out of range for ", global_batch, " = ", dp_size, " ranks x ",
                      layout.num_micro_batches(), " micro-batches x ", micro_batch_size, " rows"));
  }
  return step * global_batch + dp_rank * layout.per_rank() + micro_batch_index * micro_batch_size + row;
}

}  // namespace moe::data
