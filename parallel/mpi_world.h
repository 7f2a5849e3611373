// The MPI world this process runs in: initialised once per process (MPI_Init_thread), finalised on
// destruction. The process mesh and communicators (DP/TP/EP groups) build on it.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace moe::parallel {

// Whether MPI is initialised and not yet finalised in this process: code that may run without MPI
// (a one-GPU NCCL group, say) ends the job with MPI_Abort only then.
bool MpiRunning();

class MpiWorld {
 public:
  // Initialises MPI (a plain `train` run without mpirun is a singleton world of size 1).
  static absl::StatusOr<MpiWorld> Init(int* argc, char*** argv);
  MpiWorld(MpiWorld&& other) noexcept;
  MpiWorld& operator=(MpiWorld&&) = delete;
  ~MpiWorld();

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ranks on this host (for splitting cores between co-located ranks).
  int local_size() const { return local_size_; }
  // This rank's index among them (its GPU in a one-GPU-per-rank run).
  int local_rank() const { return local_rank_; }
  std::string hostname() const { return hostname_; }

  // Ends the whole job (every rank) with `code`; used when one rank hits a fatal error.
  [[noreturn]] void Abort(int code) const;

 private:
  MpiWorld() = default;
  bool owns_ = false;
  int rank_ = 0, size_ = 1, local_size_ = 1, local_rank_ = 0;
  std::string hostname_;
};

}  // namespace moe::parallel
