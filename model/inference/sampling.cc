#include "model/inference/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace moe::inference {

absl::Status ValidateSamplingOptions(const SamplingOptions& options) {
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("--temperature must be >= 0, got ", options.temperature));
  }
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--top_p must be in (0, 1], got ", options.top_p));
  }
  return absl::OkStatus();
}

int32_t SampleToken(const std::vector<float>& logits, const SamplingOptions& options, data::SplitMix64* rng) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;  // strict: the lower id wins ties
  }
  if (options.temperature == 0.0 || vocab == 1) return static_cast<int32_t>(best);

  std::vector<double> p(vocab);
  const double mx = logits[best];
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    p[i] = std::exp((static_cast<double>(logits[i]) - mx) / options.temperature);
    total += p[i];
  }
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // The nucleus: the shortest prefix of `order` holding top_p of the mass.
  int64_t keep = 0;
  double mass = 0.0;
  while (keep < vocab) {
    mass += p[order[keep]];
    ++keep;
    if (mass >= options.top_p * total) break;
  }
  const double target = rng->UniformDouble() * mass;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += p[order[i]];
    if (target < acc) return order[i];
  }
  return order[keep - 1];  // rounding at the very top of the range
}

}  // namespace moe::inference
