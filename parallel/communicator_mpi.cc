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
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace moe::parallel {
namespace {

// Largest element count handed to one MPI call; lowered by tests to exercise the chunked paths.
int64_t g_max_count = INT_MAX;
// Float/double sums of at least this many bytes take the two-phase rank-order path (below it,
// latency dominates and MPI_Iallreduce's tree wins); lowered by tests.
int64_t g_two_phase_min_bytes = 64 << 10;
// The two-phase sums work on pieces of at most this many elements, bounding their scratch memory.
constexpr int64_t kPieceElements = int64_t{1} << 24;

int64_t PieceElements() { return std::min(g_max_count, kPieceElements); }

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
template <>
MPI_Datatype MpiType<uint16_t>() { return MPI_UINT16_T; }


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

// out[i] = ((c_0[i] + c_1[i]) + c_2[i]) + ... + c_{p-1}[i], added in that order, where c_r = copies +
// r * stride except c_self = self_copy (this rank's own contribution, never sent to itself). Works
// through tiles that stay in L1, so `out` may alias `self_copy`.
template <typename T>
void SumInRankOrder(const T* copies, int64_t stride, int p, int self, const T* self_copy, int64_t n,
                    T* out) {
  constexpr int64_t kTile = 2048;
  T acc[kTile];
  for (int64_t t = 0; t < n; t += kTile) {
    const int64_t m = std::min(kTile, n - t);
    for (int r = 0; r < p; ++r) {
      const T* c = (r == self ? self_copy : copies + r * stride) + t;
      if (r == 0) {
        std::memcpy(acc, c, sizeof(T) * m);
      } else {
        for (int64_t i = 0; i < m; ++i) acc[i] += c[i];
      }
    }
    std::memcpy(out + t, acc, sizeof(T) * m);
  }
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

void MpiCommunicator::SetTwoPhaseMinBytesForTesting(int64_t min_bytes) {
  g_two_phase_min_bytes = min_bytes > 0 ? min_bytes : 64 << 10;
}

template <typename T>
T* MpiCommunicator::Scratch(int64_t n) {
  const size_t words = (static_cast<size_t>(n) * sizeof(T) + sizeof(double) - 1) / sizeof(double);
  if (scratch_.size() < words) scratch_.resize(words);
  return reinterpret_cast<T*>(scratch_.data());
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

// Backoff. MPI_Test drives MPI's progress engine: libnbc advances a collective's rounds, and the
// shared-memory transport copies a message fragment by fragment, only inside MPI calls on both
// sides. So sleeping while data flows is ruinous (measured: 1/16-of-elapsed sleeps after 2 ms made
// a 32 MB all-to-all 25x slower). Hence: a few hundred MPI_Test calls back to back (small
// collectives finish here); then MPI_Test + sched_yield (lets co-located ranks run when cores are
// oversubscribed; what blocking Open MPI does too); only after 100 ms without visible progress,
// 1 ms sleeps between tests, so a rank waiting for a late peer costs almost no CPU. A test that took
// over 2 us did real work (copied a fragment): it counts as progress and resumes yielding.
void MpiCommunicator::Wait(MPI_Request* req, const Op& op, double deadline) const {
  constexpr int kSpin = 200;
  constexpr double kIdleBeforeSleep = 0.1, kBusyTest = 2e-6;
  double last_progress = 0;
  for (int iter = 0;; ++iter) {
    int done = 0;
    const double before = iter < kSpin ? 0 : NowSeconds();
    const int err = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (err != MPI_SUCCESS) Fail(op, "failed: " + MpiErrorString(err));
    if (done) return;
    if (iter < kSpin) continue;
    const double now = NowSeconds();
    if (iter == kSpin || now - before > kBusyTest) last_progress = now;
    if (now > deadline) {
      Fail(op, absl::StrFormat("did not complete within %g s; a peer rank is dead or hung",
                               timeout_seconds_));
    }
    if (now - last_progress < kIdleBeforeSleep) {
      sched_yield();
    } else {
      const timespec ts{0, 1000000};
      nanosleep(&ts, nullptr);
    }
  }
}

template <typename T>
void MpiCommunicator::AllReduceImpl(T* x, int64_t n, MPI_Op mpi_op, const char* what) {
  if (size_ == 1 || n == 0) return;
  const Op op{what, UnitName<T>(), n};
  const double deadline = Deadline();
  const bool two_phase = mpi_op == MPI_SUM && std::is_floating_point<T>::value &&
                         n * static_cast<int64_t>(sizeof(T)) >= g_two_phase_min_bytes;
  const int64_t piece = two_phase ? PieceElements() : g_max_count;
  for (int64_t off = 0; off < n; off += piece) {
    const int64_t c = std::min(piece, n - off);
    if (two_phase) {
      RankOrderSum(x + off, c, op, deadline);
      continue;
    }
    MPI_Request req;
    CheckStart(MPI_Iallreduce(MPI_IN_PLACE, x + off, static_cast<int>(c), MpiType<T>(), mpi_op, comm_,
                              &req),
               op);
    Wait(&req, op, deadline);
  }
}

// x [n] is cut into size_ blocks, block r = [n r / size, n (r + 1) / size). Phase 1 (all-to-all-v):
// rank r receives every rank's block r and sums the copies in rank order 0, 1, ..., size - 1.
// Phase 2 (all-gather-v): every rank receives every summed block. n <= PieceElements().
template <typename T>
void MpiCommunicator::RankOrderSum(T* x, int64_t n, const Op& op, double deadline) {
  const int p = size_;
  std::vector<int> counts(p), displs(p), send_counts(p), recv_counts(p), recv_displs(p);
  for (int r = 0; r < p; ++r) {
    displs[r] = static_cast<int>(n * r / p);
    counts[r] = static_cast<int>(n * (r + 1) / p) - displs[r];
  }
  const int mine = counts[rank_];
  for (int r = 0; r < p; ++r) {  // nothing to or from this rank itself: its copy stays in x
    send_counts[r] = r == rank_ ? 0 : counts[r];
    recv_counts[r] = r == rank_ ? 0 : mine;
    recv_displs[r] = r * mine;
  }
  T* copies = Scratch<T>(static_cast<int64_t>(p) * mine);  // [p][mine]: rank r's copy of my block
  MPI_Request req;
  CheckStart(MPI_Ialltoallv(x, send_counts.data(), displs.data(), MpiType<T>(), copies,
                            recv_counts.data(), recv_displs.data(), MpiType<T>(), comm_, &req),
             op);
  Wait(&req, op, deadline);
  T* my_block = x + displs[rank_];
  SumInRankOrder(copies, mine, p, rank_, my_block, mine, my_block);
  CheckStart(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts.data(), displs.data(),
                             MpiType<T>(), comm_, &req),
             op);
  Wait(&req, op, deadline);
}

void MpiCommunicator::AllReduceSum(float* x, int64_t n) { AllReduceImpl(x, n, MPI_SUM, "AllReduceSum"); }
void MpiCommunicator::AllReduceSum(double* x, int64_t n) { AllReduceImpl(x, n, MPI_SUM, "AllReduceSum"); }
void MpiCommunicator::AllReduceSum(int64_t* x, int64_t n) { AllReduceImpl(x, n, MPI_SUM, "AllReduceSum"); }
void MpiCommunicator::AllReduceMax(double* x, int64_t n) { AllReduceImpl(x, n, MPI_MAX, "AllReduceMax"); }

// A collective done in chunks of a fixed length, one in flight at a time (bounded buffers). Only the
// start and Finish post chunks: they run at the same point of every rank's program, so every rank posts
// its collectives on the group in the same order (a chunk posted from Test, whose timing differs
// between ranks, could cross another collective: MPI_ERR_TRUNCATE, seen). Test completes only the
// last chunk. Subclasses post a chunk and complete it once it has arrived.
class MpiCommunicator::ChunkedCollective : public PendingCollective {
 public:
  ~ChunkedCollective() override = default;  // subclasses Finish in theirs, while their buffers live

  bool Test() override {
    if (!active_) return true;
    int done = 0;
    const int err = MPI_Test(&req_, &done, MPI_STATUS_IGNORE);  // a completed request reads as done again
    if (err != MPI_SUCCESS) comm_->Fail(op_, "failed: " + MpiErrorString(err));
    if (!done || off_ + c_ < n_) return false;  // more chunks: Finish posts them
    CompleteAndPostNext();
    return true;
  }

  void Finish() override {
    const double deadline = comm_->Deadline();  // from the finish: the start may precede long compute
    while (active_) {
      comm_->Wait(&req_, op_, deadline);
      CompleteAndPostNext();
    }
  }

 protected:
  ChunkedCollective(MpiCommunicator* comm, const char* name, const char* unit, int64_t n, int64_t chunk)
      : comm_(comm), op_{name, unit, n}, n_(n), chunk_(std::max<int64_t>(1, chunk)) {}
  // Posts the first chunk (from the subclass's constructor, once its buffers exist).
  void Begin() {
    if (n_ > 0) Post(0);
  }
  // Starts the collective of elements [off, off + c) into *req; completes them once arrived.
  virtual void PostChunk(int64_t off, int64_t c, MPI_Request* req) = 0;
  virtual void CompleteChunk(int64_t off, int64_t c) = 0;
  virtual void ReleaseBuffers() = 0;

  MpiCommunicator* comm_;
  Op op_;
  int64_t n_, chunk_;

 private:
  void Post(int64_t off) {
    off_ = off;
    c_ = std::min(chunk_, n_ - off);
    PostChunk(off_, c_, &req_);
    active_ = true;
  }
  void CompleteAndPostNext() {
    CompleteChunk(off_, c_);
    if (off_ + c_ < n_) {
      Post(off_ + c_);
      return;
    }
    active_ = false;
    ReleaseBuffers();
  }

  int64_t off_ = 0, c_ = 0;  // the posted chunk [off_, off_ + c_)
  bool active_ = false;      // a chunk is posted
  MPI_Request req_ = MPI_REQUEST_NULL;
};

// All-to-all-v of the blocks, then the received copies summed in rank order (deterministic by
// construction; Open MPI's own reduce-scatter was also ~14x slower here on 4 ranks x 16 MB). Chunk
// [off, off + c) of every rank's block: p * c <= PieceElements() <= INT_MAX.
class MpiCommunicator::PendingReduceScatter final : public ChunkedCollective {
 public:
  PendingReduceScatter(MpiCommunicator* comm, const float* in, float* out, int64_t n)
      : ChunkedCollective(comm, "ReduceScatterSum", "floats", comm->size_ == 1 ? 0 : n,
                          PieceElements() / comm->size_),
        in_(in), out_(out), block_(n) {
    const int p = comm->size_;
    if (p == 1) {
      if (n > 0) std::memmove(out, in, sizeof(float) * n);
      return;
    }
    if (n == 0) return;
    copies_ = comm->TakeBuffer(p * std::min(chunk_, n));  // [p][c]: rank r's copy of my block's chunk
    if (chunk_ < n) stage_ = comm->TakeBuffer(p * chunk_);  // [p][c]: the chunk of every block
    Begin();
  }
  ~PendingReduceScatter() override { Finish(); }

 private:
  void PostChunk(int64_t off, int64_t c, MPI_Request* req) override {
    const int p = comm_->size_, rank = comm_->rank_;
    const float* send = in_;
    if (!stage_.empty()) {
      for (int r = 0; r < p; ++r) {
        if (r != rank) std::memcpy(stage_.data() + r * c, in_ + r * block_ + off, sizeof(float) * c);
      }
      send = stage_.data();
    }
    std::vector<int> counts(p), displs(p);
    for (int r = 0; r < p; ++r) {  // this rank's own block is read from `in`, not sent to itself
      counts[r] = r == rank ? 0 : static_cast<int>(c);
      displs[r] = static_cast<int>(r * c);
    }
    comm_->CheckStart(MPI_Ialltoallv(send, counts.data(), displs.data(), MPI_FLOAT, copies_.data(), counts.data(),
                                     displs.data(), MPI_FLOAT, comm_->comm_, req),
                      op_);
  }
  void CompleteChunk(int64_t off, int64_t c) override {
    const int rank = comm_->rank_;
    SumInRankOrder(copies_.data(), c, comm_->size_, rank, in_ + rank * block_ + off, c, out_ + off);
  }
  void ReleaseBuffers() override {
    comm_->ReturnBuffer(std::move(copies_));
    comm_->ReturnBuffer(std::move(stage_));
  }

  const float* in_;
  float* out_;
  int64_t block_;
  std::vector<float> copies_, stage_;
};

// One MPI_Iallgather when size * n fits an MPI count; otherwise chunks [off, off + c) of every rank's
// block through a stage, scattered to their places as each arrives.
template <typename T>
class MpiCommunicator::PendingAllGather final : public ChunkedCollective {
 public:
  PendingAllGather(MpiCommunicator* comm, const T* in, T* out, int64_t n)
      : ChunkedCollective(comm, "AllGather", UnitName<T>(), comm->size_ == 1 ? 0 : n,
                          comm->size_ * n <= g_max_count ? n : g_max_count / comm->size_),
        in_(in), out_(out), block_(n) {
    if (comm->size_ == 1) {
      if (n > 0) std::memmove(out, in, sizeof(T) * n);
      return;
    }
    if (chunk_ < n) stage_.resize(static_cast<size_t>(comm->size_ * chunk_));
    Begin();
  }
  ~PendingAllGather() override { Finish(); }

 private:
  void PostChunk(int64_t off, int64_t c, MPI_Request* req) override {
    T* recv = stage_.empty() ? out_ : stage_.data();
    comm_->CheckStart(MPI_Iallgather(in_ + off, static_cast<int>(c), MpiType<T>(), recv, static_cast<int>(c),
                                     MpiType<T>(), comm_->comm_, req),
                      op_);
  }
  void CompleteChunk(int64_t off, int64_t c) override {
    if (stage_.empty()) return;
    for (int r = 0; r < comm_->size_; ++r) {
      std::memcpy(out_ + r * block_ + off, stage_.data() + r * c, sizeof(T) * c);
    }
  }
  void ReleaseBuffers() override { std::vector<T>().swap(stage_); }

  const T* in_;
  T* out_;
  int64_t block_;
  std::vector<T> stage_;  // chunked only: [p][c]
};

std::unique_ptr<PendingCollective> MpiCommunicator::StartReduceScatterSum(const float* in, float* out,
                                                                          int64_t n) {
  return std::make_unique<PendingReduceScatter>(this, in, out, n);
}

void MpiCommunicator::ReduceScatterSum(const float* in, float* out, int64_t n) {
  PendingReduceScatter(this, in, out, n).Finish();
}

std::vector<float> MpiCommunicator::TakeBuffer(int64_t n) {
  std::vector<float> buffer;
  if (!spare_buffers_.empty()) {
    buffer = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
  }
  buffer.resize(static_cast<size_t>(n));
  return buffer;
}

void MpiCommunicator::ReturnBuffer(std::vector<float> buffer) {
  if (buffer.capacity() > 0) spare_buffers_.push_back(std::move(buffer));
}

template <typename T>
void MpiCommunicator::AllGatherImpl(const T* in, T* out, int64_t n) {
  PendingAllGather<T>(this, in, out, n).Finish();
}

std::unique_ptr<PendingCollective> MpiCommunicator::StartAllGather(const float* in, float* out, int64_t n) {
  return std::make_unique<PendingAllGather<float>>(this, in, out, n);
}

std::unique_ptr<PendingCollective> MpiCommunicator::StartAllGather(const uint16_t* in, uint16_t* out, int64_t n) {
  return std::make_unique<PendingAllGather<uint16_t>>(this, in, out, n);
}

void MpiCommunicator::AllGather(const float* in, float* out, int64_t n) { AllGatherImpl(in, out, n); }
void MpiCommunicator::AllGather(const uint16_t* in, uint16_t* out, int64_t n) { AllGatherImpl(in, out, n); }
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
