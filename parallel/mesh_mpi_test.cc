// Multi-rank tests of ProcessMesh (run as 4 ranks by the mesh_mpi_test sh_test): for each layout the
// members of every group, found by all-gathering world ranks over that group, match the rank order
// that docs/architecture.md fixes (TP innermost; EP in consecutive blocks; expert-DP strided by ep).
#include <mpi.h>

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/mesh.h"

namespace moe::parallel {
namespace {

constexpr double kTimeout = 20;

int WorldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// World ranks of `group`'s members in group rank order, via the group's own AllGather.
std::vector<int64_t> Members(Communicator& group, int world_rank) {
  const int64_t me = world_rank;
  std::vector<int64_t> all(group.size());
  group.AllGather(&me, all.data(), 1);
  return all;
}

std::vector<int64_t> Range(int64_t start, int64_t count, int64_t stride) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < count; ++i) v.push_back(start + i * stride);
  return v;
}

void CheckLayout(const MeshShape& shape) {
  SCOPED_TRACE(testing::Message() << "dp=" << shape.dp << " tp=" << shape.tp << " ep=" << shape.ep);
  auto mesh_or = ProcessMesh::Create(shape, kTimeout);
  ASSERT_TRUE(mesh_or.ok()) << mesh_or.status();
  ProcessMesh& mesh = **mesh_or;
  const int world = WorldSize(), rank = mesh.world_rank();
  const int64_t dp = shape.dp, tp = shape.tp, ep = shape.ep;
  EXPECT_EQ(mesh.world_size(), world);
  EXPECT_EQ(mesh.dp_rank(), rank / tp);
  EXPECT_EQ(mesh.tp_rank(), rank % tp);
  EXPECT_EQ(mesh.ep_rank(), rank % ep);
  EXPECT_EQ(mesh.expert_dp_rank(), rank / ep);
  EXPECT_EQ(rank, mesh.dp_rank() * tp + mesh.tp_rank());

  EXPECT_EQ(mesh.world().name(), "world");
  EXPECT_EQ(mesh.dp().name(), "dp");
  EXPECT_EQ(mesh.tp().name(), "tp");
  EXPECT_EQ(mesh.ep().name(), "ep");
  EXPECT_EQ(mesh.expert_dp().name(), "expert_dp");
  EXPECT_EQ(mesh.world().rank(), rank);
  EXPECT_EQ(mesh.dp().rank(), mesh.dp_rank());
  EXPECT_EQ(mesh.tp().rank(), mesh.tp_rank());
  EXPECT_EQ(mesh.ep().rank(), mesh.ep_rank());
  EXPECT_EQ(mesh.expert_dp().rank(), mesh.expert_dp_rank());

  EXPECT_EQ(Members(mesh.world(), rank), Range(0, world, 1));
  EXPECT_EQ(Members(mesh.tp(), rank), Range(mesh.dp_rank() * tp, tp, 1));
  EXPECT_EQ(Members(mesh.dp(), rank), Range(mesh.tp_rank(), dp, tp));
  EXPECT_EQ(Members(mesh.ep(), rank), Range((rank / ep) * ep, ep, 1));
  EXPECT_EQ(Members(mesh.expert_dp(), rank), Range(mesh.ep_rank(), world / ep, ep));

  // A sum over each group stays inside it.
  double x = 1;
  mesh.expert_dp().AllReduceSum(&x, 1);
  EXPECT_EQ(x, world / ep);
}

TEST(ProcessMeshTest, Layouts) {
  ASSERT_EQ(WorldSize(), 4) << "run this test with 4 ranks";
  CheckLayout({2, 2, 4});
  CheckLayout({4, 1, 2});
  CheckLayout({1, 4, 2});
  CheckLayout({2, 2, 2});
  CheckLayout({4, 1, 1});
  CheckLayout({1, 4, 4});
}

TEST(ProcessMeshTest, RefusesBadShapesOnEveryRank) {
  auto a = ProcessMesh::Create({3, 1, 1}, kTimeout);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("parallel.dp (3)"), std::string::npos) << a.status();
  auto b = ProcessMesh::Create({2, 2, 3}, kTimeout);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "parallel.ep (3) must divide the world size dp*tp (4)");
  auto c = ProcessMesh::Create({2, 2, 2}, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("collective_timeout_s"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace moe::parallel
