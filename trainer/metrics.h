// Per-step metrics: one JSON object per line in <output_dir>/metrics.jsonl (appended, flushed each
// row so a crash loses at most the row being written) and one human log line per step on stdout.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace moe::trainer {

// An ordered list of numeric fields; written as {"k1": v1, "k2": v2, ...}.
using MetricRow = std::vector<std::pair<std::string, double>>;

std::string MetricRowToJson(const MetricRow& row);

class MetricsWriter {
 public:
  static absl::StatusOr<MetricsWriter> Open(const std::string& path);
  MetricsWriter(MetricsWriter&& other) noexcept;
  MetricsWriter& operator=(MetricsWriter&&) = delete;
  ~MetricsWriter();

  absl::Status Write(const MetricRow& row);

 private:
  explicit MetricsWriter(std::FILE* f, std::string path) : file_(f), path_(std::move(path)) {}
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace moe::trainer
