// MpiCommunicator: non-blocking MPI collectives with a bounded polling wait (see the header).
#include "parallel/communicator_mpi.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace moe::parallel {
namespace {

// Largest element count handed to one MPI call; lowered by tests to exercise the chunked paths.
int64_t g_max_count = INT_MAX;

template <typename T>
MPI_Datatype MpiType();
template <>
MPI_Datatype MpiType<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype MpiType<double>() { return MPI_DOUBLE; }
template <>
MPI_Datatype MpiType<int64_t>() { return MPI_INT64_T; }
template <>
MPI_Datatype MpiType<int32_t>() { return MPI_INT32_T; }

template <typename T>
const char* UnitName();
template <>
const char* UnitName<float>() { return "floats"; }
template <>
const char* UnitName<double>() { return "doubles"; }
template <>
const char* UnitName<int64_t>() { return "int64s"; }
template <>
const char* UnitName<int32_t>() { return "int32s"; }

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string MpiErrorString(int err) {
  char buf[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(err, buf, &len);
  return std::string(buf, static_cast<size_t>(std::max(len, 0)));
}

// One side (send or receive) of an all-to-all-v in MPI's terms: int counts and displacements in
// units of `type`, which is the base type or a contiguous block of `block` base elements.
struct AllToAllSide {
  std::vector<int> counts, displs;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  bool owns_type = false;
  ~AllToAllSide() {
    if (owns_type) MPI_Type_free(&type);
  }
};

// Builds `side` from int64 element counts; returns false if they cannot be expressed in int counts.
bool MakeSide(const std::vector<int64_t>& counts, MPI_Datatype base, int64_t max_count,
              AllToAllSide* side) {
  int64_t total = 0, block = 0;
  for (int64_t c : counts) {
    total += c;
    block = std::gcd(block, c);
  }
  // Displacements are prefix sums, so the last one and every count are <= total.
  if (total > max_count) {
    if (block > INT_MAX || total / block > max_count) return false;
  } else {
    block = 1;
  }
  if (block > 1) {
    MPI_Type_contiguous(static_cast<int>(block), base, &side->type);
    MPI_Type_commit(&side->type);
    side->owns_type = true;
  } else {
    side->type = base;
  }
  side->counts.resize(counts.size());
  side->displs.resize(counts.size());
  int64_t offset = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    side->counts[r] = static_cast<int>(counts[r] / block);
    side->displs[r] = static_cast<int>(offset / block);
    offset += counts[r];
  }
  return true;
}

}  // namespace

// The collective in flight, for error messages (formatted only when something goes wrong).
struct MpiCommunicator::Op {
  const char* name;
  const char* unit;
  int64_t count;
  int64_t recv_count = -1;  // AllToAllV: elements received (count is elements sent)
};

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, double timeout_seconds)
    : comm_(comm),
      owns_comm_(comm != MPI_COMM_WORLD && comm != MPI_COMM_SELF),
      name_(std::move(name)),
      timeout_seconds_(timeout_seconds) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  // Errors come back to us so that the report names the collective; only on communicators we own,
  // so as not to change MPI_COMM_WORLD's handler under other code.
  if (owns_comm_) MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Group group, world_group;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> ranks(size_);
  std::iota(ranks.begin(), ranks.end(), 0);
  world_ranks_.resize(size_);
  MPI_Group_translate_ranks(group, size_, ranks.data(), world_group, world_ranks_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_comm_ && !finalized) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::World(double timeout_seconds) {
  MPI_Comm dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  return std::make_unique<MpiCommunicator>(dup, "world", timeout_seconds);
}

void MpiCommunicator::SetMaxCountForTesting(int64_t max_count) {
  g_max_count = max_count > 0 && max_count <= INT_MAX ? max_count : INT_MAX;
}

double MpiCommunicator::Deadline() const { return NowSeconds() + timeout_seconds_; }

void MpiCommunicator::Fail(const Op& op, const std::string& why) const {
  std::string what = op.recv_count >= 0
                         ? absl::StrFormat("send %d, recv %d %s", op.count, op.recv_count, op.unit)
                         : absl::StrFormat("%d %s", op.count, op.unit);
  const std::string line = absl::StrFormat(
      "moe: rank %d (world): collective %s on group '%s' (size %d, group rank %d, %s) %s "
      "(group members: world ranks %s)\n",
      world_rank_, op.name, name_, size_, rank_, what, why, absl::StrJoin(world_ranks_, ","));
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::_Exit(2);
}

void MpiCommunicator::CheckStart(int mpi_err, const Op& op) const {
  if (mpi_err != MPI_SUCCESS) Fail(op, "failed to start: " + MpiErrorString(mpi_err));
}

// Backoff: a few hundred MPI_Test calls back to back (small collectives finish here), then
// sched_yield (lets co-located ranks run when cores are oversubscribed), then sleeps doubling from
// 2 us to 1 ms so an idle wait costs almost no CPU. MPI_Test also drives MPI's progress engine.
void MpiCommunicator::Wait(MPI_Request* req, const Op& op, double deadline) const {
  constexpr int kSpin = 200, kYield = 2000;
  long sleep_ns = 2000;
  for (int iter = 0;; ++iter) {
    int done = 0;
    const int err = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (err != MPI_SUCCESS) Fail(op, "failed: " + MpiErrorString(err));
    if (done) return;
    if (iter < kSpin) continue;
    if (NowSeconds() > deadline) {
      Fail(op, absl::StrFormat("did not complete within %g s; a peer rank is dead or hung",
                               timeout_seconds_));
    }
    if (iter < kYield) {
      sched_yield();
    } else {
      const timespec ts{0, sleep_ns};
      nanosleep(&ts, nullptr);
      sleep_ns = std::min(sleep_ns * 2, 1000000L);
    }
  }
}

template <typename T>
void MpiCommunicator::AllReduceImpl(T* x, int64_t n, MPI_Op mpi_op, const char* what) {
  if (size_ == 1 || n == 0) return;
  const Op op{what, UnitName<T>(), n};
  const double deadline = Deadline();
  for (int64_t off = 0; off < n; off += g_max_count) {
    const int c = static_cast<int>(std::min(g_max_count, n - off));
    MPI_Request req;
    CheckStart(MPI_Iallreduce(MPI_IN_PLACE, x + off, c, MpiType<T>(), mpi_op, comm_, &req), op);
    Wait(&req, op, deadline);
  }
}

void MpiCommunicator::AllReduceSum(float* x, int64_t n) { AllReduceImpl(x, n, MPI_SUM, "AllReduceSum"); }
void MpiCommunicator::AllReduceSum(double* x, int64_t n) { AllReduceImpl(x, n, MPI_SUM, "AllReduceSum"); }
void MpiCommunicator::AllReduceSum(int64_t* x, int64_t n) { AllReduceImpl(x, n, MPI_SUM, "AllReduceSum"); }
void MpiCommunicator::AllReduceMax(double* x, int64_t n) { AllReduceImpl(x, n, MPI_MAX, "AllReduceMax"); }

void MpiCommunicator::ReduceScatterSum(const float* in, float* out, int64_t n) {
  if (size_ == 1) {
    if (n > 0) std::memmove(out, in, sizeof(float) * n);
    return;
  }
  if (n == 0) return;
  const Op op{"ReduceScatterSum", "floats", n};
  const double deadline = Deadline();
  if (size_ * n <= g_max_count) {
    MPI_Request req;
    CheckStart(MPI_Ireduce_scatter_block(in, out, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_,
                                         &req),
               op);
    Wait(&req, op, deadline);
    return;
  }
  // Chunk j reduces elements [off, off + c) of every rank's block; stage them contiguously.
  const int64_t chunk = std::max<int64_t>(1, g_max_count / size_);
  std::vector<float> stage(static_cast<size_t>(size_ * std::min(chunk, n)));
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t c = std::min(chunk, n - off);
    for (int r = 0; r < size_; ++r) {
      std::memcpy(stage.data() + r * c, in + r * n + off, sizeof(float) * c);
    }
    MPI_Request req;
    CheckStart(MPI_Ireduce_scatter_block(stage.data(), out + off, static_cast<int>(c), MPI_FLOAT,
                                         MPI_SUM, comm_, &req),
               op);
    Wait(&req, op, deadline);
  }
}

template <typename T>
void MpiCommunicator::AllGatherImpl(const T* in, T* out, int64_t n) {
  if (size_ == 1) {
    if (n > 0) std::memmove(out, in, sizeof(T) * n);
    return;
  }
  if (n == 0) return;
  const Op op{"AllGather", UnitName<T>(), n};
  const double deadline = Deadline();
  if (size_ * n <= g_max_count) {
    MPI_Request req;
    CheckStart(MPI_Iallgather(in, static_cast<int>(n), MpiType<T>(), out, static_cast<int>(n),
                              MpiType<T>(), comm_, &req),
               op);
    Wait(&req, op, deadline);
    return;
  }
  // Chunk j gathers elements [off, off + c) of every rank's block into a stage, then scatters it.
  const int64_t chunk = std::max<int64_t>(1, g_max_count / size_);
  std::vector<T> stage(static_cast<size_t>(size_ * std::min(chunk, n)));
  for (int64_t off = 0; off < n; off += chunk) {
    const int c = static_cast<int>(std::min(chunk, n - off));
    MPI_Request req;
    CheckStart(MPI_Iallgather(in + off, c, MpiType<T>(), stage.data(), c, MpiType<T>(), comm_, &req),
               op);
    Wait(&req, op, deadline);
    for (int r = 0; r < size_; ++r) {
      std::memcpy(out + r * n + off, stage.data() + static_cast<int64_t>(r) * c, sizeof(T) * c);
    }
  }
}

void MpiCommunicator::AllGather(const float* in, float* out, int64_t n) { AllGatherImpl(in, out, n); }
void MpiCommunicator::AllGather(const int64_t* in, int64_t* out, int64_t n) { AllGatherImpl(in, out, n); }

template <typename T>
void MpiCommunicator::AllToAllVImpl(const T* send, const std::vector<int64_t>& send_counts, T* recv,
                                    const std::vector<int64_t>& recv_counts) {
  const int64_t send_total = std::accumulate(send_counts.begin(), send_counts.end(), int64_t{0});
  const int64_t recv_total = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t{0});
  const Op op{"AllToAllV", UnitName<T>(), send_total, recv_total};
  if (static_cast<int>(send_counts.size()) != size_ || static_cast<int>(recv_counts.size()) != size_) {
    Fail(op, absl::StrFormat("was given %d send counts and %d recv counts for a group of %d",
                             send_counts.size(), recv_counts.size(), size_));
  }
  for (int r = 0; r < size_; ++r) {
    if (send_counts[r] < 0 || recv_counts[r] < 0) Fail(op, "was given a negative count");
  }
  if (size_ == 1) {
    if (send_counts[0] != recv_counts[0]) Fail(op, "has send count != recv count on a group of 1");
    if (send_total > 0) std::memmove(recv, send, sizeof(T) * send_total);
    return;
  }
  AllToAllSide s, r;
  if (!MakeSide(send_counts, MpiType<T>(), g_max_count, &s) ||
      !MakeSide(recv_counts, MpiType<T>(), g_max_count, &r)) {
    Fail(op, absl::StrFormat("cannot be expressed in MPI int counts (limit %d elements per call, "
                             "counts not a multiple of a common block)",
                             g_max_count));
  }
  const double deadline = Deadline();
  MPI_Request req;
  CheckStart(MPI_Ialltoallv(send, s.counts.data(), s.displs.data(), s.type, recv, r.counts.data(),
                            r.displs.data(), r.type, comm_, &req),
             op);
  Wait(&req, op, deadline);
}

void MpiCommunicator::AllToAllV(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                                const std::vector<int64_t>& recv_counts) {
  AllToAllVImpl(send, send_counts, recv, recv_counts);
}
void MpiCommunicator::AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts,
                                int32_t* recv, const std::vector<int64_t>& recv_counts) {
  AllToAllVImpl(send, send_counts, recv, recv_counts);
}

void MpiCommunicator::AllToAll(const int64_t* in, int64_t* out, int64_t n) {
  if (size_ == 1) {
    if (n > 0) std::memmove(out, in, sizeof(int64_t) * n);
    return;
  }
  if (n == 0) return;
  const Op op{"AllToAll", "int64s", size_ * n};
  if (size_ * n > g_max_count) {
    Fail(op, absl::StrFormat("exceeds the limit of %d elements per call", g_max_count));
  }
  const double deadline = Deadline();
  MPI_Request req;
  CheckStart(MPI_Ialltoall(in, static_cast<int>(n), MPI_INT64_T, out, static_cast<int>(n), MPI_INT64_T,
                           comm_, &req),
             op);
  Wait(&req, op, deadline);
}

template <typename T>
void MpiCommunicator::BroadcastImpl(T* x, int64_t n, int root) {
  const Op op{"Broadcast", UnitName<T>(), n};
  if (root < 0 || root >= size_) Fail(op, absl::StrFormat("was given root %d", root));
  if (size_ == 1 || n == 0) return;
  const double deadline = Deadline();
  for (int64_t off = 0; off < n; off += g_max_count) {
    const int c = static_cast<int>(std::min(g_max_count, n - off));
    MPI_Request req;
    CheckStart(MPI_Ibcast(x + off, c, MpiType<T>(), root, comm_, &req), op);
    Wait(&req, op, deadline);
  }
}

void MpiCommunicator::Broadcast(float* x, int64_t n, int root) { BroadcastImpl(x, n, root); }
void MpiCommunicator::Broadcast(int64_t* x, int64_t n, int root) { BroadcastImpl(x, n, root); }

void MpiCommunicator::Barrier() {
  if (size_ == 1) return;
  const Op op{"Barrier", "elements", 0};
  const double deadline = Deadline();
  MPI_Request req;
  CheckStart(MPI_Ibarrier(comm_, &req), op);
  Wait(&req, op, deadline);
}

}  // namespace moe::parallel
