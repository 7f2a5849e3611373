// TensorBoard event files: <dir>/events.out.tfevents.<unix seconds>.<host>.<pid>, a TFRecord stream
// (each record: uint64 length, masked CRC32C of the length, the bytes, masked CRC32C of the bytes;
// little-endian) of Event protos (trainer/tensorboard.proto): a file-version record, then one Event per
// training step with the step's scalars. The trainer's rank 0 writes the same scalars as metrics.jsonl
// and flushes after every step. A resumed run opens a new file in the same directory and continues the
// step numbers; TensorBoard reads every events file in a directory as one run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace moe::trainer {

class TensorBoardWriter {
 public:
  // Creates a new events file in `dir` (which must exist) and writes its version record.
  static absl::StatusOr<TensorBoardWriter> Open(const std::string& dir);
  TensorBoardWriter(TensorBoardWriter&& other) noexcept;
  TensorBoardWriter& operator=(TensorBoardWriter&&) = delete;
  ~TensorBoardWriter();

  // One Event at `step` with a simple_value per (tag, value), then a flush.
  absl::Status WriteScalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(std::FILE* f, std::string path) : file_(f), path_(std::move(path)) {}
  absl::Status WriteRecord(const std::string& data);
  std::FILE* file_ = nullptr;
  std::string path_;
};

// TFRecord's masked CRC32C: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t MaskedCrc32c(const void* data, size_t n);

// Reads back a TFRecord file's records, checking both CRCs of each (errors name the file and record).
absl::StatusOr<std::vector<std::string>> ReadTfRecords(const std::string& path);

}  // namespace moe::trainer
