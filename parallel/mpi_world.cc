#include "parallel/mpi_world.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace moe::parallel {

bool MpiRunning() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

absl::StatusOr<MpiWorld> MpiWorld::Init(int* argc, char*** argv) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    return absl::InternalError("MPI_Init_thread failed");
  }
  MpiWorld w;
  w.owns_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank_, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &w.local_size_);
  MPI_Comm_rank(local, &w.local_rank_);
  MPI_Comm_free(&local);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  w.hostname_ = host;
  return w;
}

MpiWorld::MpiWorld(MpiWorld&& other) noexcept
    : owns_(other.owns_),
      rank_(other.rank_),
      size_(other.size_),
      local_size_(other.local_size_),
      local_rank_(other.local_rank_),
      hostname_(std::move(other.hostname_)) {
  other.owns_ = false;
}

MpiWorld::~MpiWorld() {
  if (owns_) MPI_Finalize();
}

void MpiWorld::Abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace moe::parallel
