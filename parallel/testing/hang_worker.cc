// A rank for hang_test.sh: writes its pid to DIR/pid.<world rank>, then repeats one collective for up
// to 60 s with a 5 s collective timeout. hang_test.sh stops one rank (SIGSTOP); the others' waits must
// then time out, print the stuck collective, and abort the job.
//   hang_worker DIR allreduce   AllReduceSum over the world group
//   hang_worker DIR alltoallv   AllToAllV over the dp group of a (dp, tp, ep) = (2, 2, 2) mesh
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/mesh.h"
#include "parallel/mpi_world.h"

int main(int argc, char** argv) {
  auto world = moe::parallel::MpiWorld::Init(&argc, &argv);
  if (!world.ok() || argc != 3) {
    std::fprintf(stderr, "usage: hang_worker DIR allreduce|alltoallv\n");
    return 1;
  }
  const std::string dir = argv[1], mode = argv[2];
  constexpr double kTimeout = 5;
  auto mesh = moe::parallel::ProcessMesh::Create({world->size() / 2, 2, 2}, kTimeout);
  if (!mesh.ok()) {
    std::fprintf(stderr, "hang_worker: %s\n", std::string(mesh.status().message()).c_str());
    return 1;
  }
  {  // Write the pid under a temporary name, then rename, so the script never reads half a file.
    const std::string path = absl::StrCat(dir, "/pid.", world->rank());
    FILE* f = std::fopen((path + ".tmp").c_str(), "w");
    if (f == nullptr) return 1;
    std::fprintf(f, "%d\n", static_cast<int>(getpid()));
    std::fclose(f);
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  moe::parallel::Communicator& world_group = (*mesh)->world();
  moe::parallel::Communicator& dp = (*mesh)->dp();
  std::vector<float> x(1 << 14, 1.0f), y(x.size());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < end) {
    if (mode == "allreduce") {
      world_group.AllReduceSum(x.data(), static_cast<int64_t>(x.size()));
      std::fill(x.begin(), x.end(), 1.0f);
    } else {
      const std::vector<int64_t> counts(dp.size(), static_cast<int64_t>(x.size()) / dp.size());
      dp.AllToAllV(x.data(), counts, y.data(), counts);
    }
    usleep(1000);
  }
  std::printf("hang_worker: rank %d finished without a hang\n", world->rank());
  return 0;
}
