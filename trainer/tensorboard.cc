#include "trainer/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "base/file_util.h"
#include "base/status.h"
#include "trainer/tensorboard.pb.h"

namespace moe::trainer {
namespace {

double WallTime() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void AppendLittleEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t ReadLittleEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

}  // namespace

uint32_t MaskedCrc32c(const void* data, size_t n) {
  const uint32_t crc = Crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

absl::StatusOr<TensorBoardWriter> TensorBoardWriter::Open(const std::string& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const std::string path = JoinPath(
      dir, absl::StrCat("events.out.tfevents.", static_cast<int64_t>(WallTime()), ".", host, ".", getpid()));
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  TensorBoardWriter writer(f, path);
  tensorboard::Event version;
  version.set_wall_time(WallTime());
  version.set_file_version("brain.Event:2");
  RETURN_IF_ERROR(writer.WriteRecord(version.SerializeAsString()));
  if (std::fflush(f) != 0) return absl::DataLossError(absl::StrCat("cannot write ", path));
  return writer;
}

TensorBoardWriter::TensorBoardWriter(TensorBoardWriter&& other) noexcept
    : file_(other.file_), path_(std::move(other.path_)) {
  other.file_ = nullptr;
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status TensorBoardWriter::WriteRecord(const std::string& data) {
  std::string record;
  AppendLittleEndian(data.size(), 8, &record);
  AppendLittleEndian(MaskedCrc32c(record.data(), 8), 4, &record);
  record += data;
  AppendLittleEndian(MaskedCrc32c(data.data(), data.size()), 4, &record);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    return absl::DataLossError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status TensorBoardWriter::WriteScalars(int64_t step,
                                             const std::vector<std::pair<std::string, double>>& scalars) {
  tensorboard::Event event;
  event.set_wall_time(WallTime());
  event.set_step(step);
  for (const auto& [tag, value] : scalars) {
    tensorboard::SummaryValue* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  RETURN_IF_ERROR(WriteRecord(event.SerializeAsString()));
  if (std::fflush(file_) != 0) return absl::DataLossError(absl::StrCat("cannot write ", path_));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadTfRecords(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(path));
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const std::string where = absl::StrCat(path, ": record ", records.size(), " at byte ", pos);
    if (bytes.size() - pos < 12) return absl::DataLossError(absl::StrCat(where, " is truncated"));
    const uint64_t length = ReadLittleEndian(&bytes[pos], 8);
    if (ReadLittleEndian(&bytes[pos + 8], 4) != MaskedCrc32c(&bytes[pos], 8)) {
      return absl::DataLossError(absl::StrCat(where, ": length CRC mismatch"));
    }
    if (bytes.size() - pos - 12 < length + 4) return absl::DataLossError(absl::StrCat(where, " is truncated"));
    std::string data = bytes.substr(pos + 12, length);
    if (ReadLittleEndian(&bytes[pos + 12 + length], 4) != MaskedCrc32c(data.data(), data.size())) {
      return absl::DataLossError(absl::StrCat(where, ": data CRC mismatch"));
    }
    records.push_back(std::move(data));
    pos += 12 + length + 4;
  }
  return records;
}

}  // namespace moe::trainer
