#include "trainer/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe::trainer {

std::string MetricRowToJson(const MetricRow& row) {
  std::string out = "{";
  for (size_t i = 0; i < row.size(); ++i) {
    const double v = row[i].second;
    const bool integral = std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15;
    absl::StrAppend(&out, i ? ", " : "", "\"", row[i].first, "\": ",
                    !std::isfinite(v) ? std::string("null")
                    : integral        ? absl::StrCat(static_cast<int64_t>(v))
                                      : absl::StrFormat("%.9g", v));
  }
  return out + "}";
}

absl::StatusOr<MetricsWriter> MetricsWriter::Open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot open ", path, " for append"));
  return MetricsWriter(f, path);
}

MetricsWriter::MetricsWriter(MetricsWriter&& other) noexcept
    : file_(other.file_), path_(std::move(other.path_)) {
  other.file_ = nullptr;
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status MetricsWriter::Write(const MetricRow& row) {
  const std::string line = MetricRowToJson(row) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::DataLossError(absl::StrCat("write to ", path_, " failed"));
  }
  return absl::OkStatus();
}

}  // namespace moe::trainer
