// POSIX file helpers shared by the safetensors writer and the HF directory reader/writer: whole-file
// reads, directory creation, and crash-safe writes (temp file in the same directory, fsync, rename,
// fsync of the directory) so that a reader never sees a half-written checkpoint file.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

bool FileExists(const std::string& path);
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Creates `dir` and any missing parents (like `mkdir -p`).
absl::Status MakeDirs(const std::string& dir);

// Removes `path` if it exists (a missing file is not an error).
absl::Status RemoveIfExists(const std::string& path);

// "a/b" + "c" -> "a/b/c".
std::string JoinPath(absl::string_view dir, absl::string_view name);

// Writes `path` through a temporary sibling file that is fsynced and renamed over `path` on
// Commit(). Destroying an uncommitted writer deletes the temporary file. Move-only.
class AtomicFileWriter {
 public:
  static absl::StatusOr<AtomicFileWriter> Create(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  absl::Status Append(const void* bytes, size_t n);
  absl::Status Append(absl::string_view s) { return Append(s.data(), s.size()); }
  // fsync, close, rename onto the final path, fsync the directory.
  absl::Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp_path, int fd)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd) {}
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;  // -1 once committed or moved from
};

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace moe
