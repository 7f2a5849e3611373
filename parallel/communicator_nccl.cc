// NcclCommunicator: NCCL collectives on device buffers with bounded waits (see the header).
#include "parallel/communicator_nccl.h"

#include <mpi.h>
#include <sched.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "parallel/mpi_world.h"

namespace moe::parallel {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Backoff for host-side polling of GPU work: spin briefly (short collectives finish here), then
// yield, then sleep 100 us between polls once the wait is long (a late peer costs no CPU). Unlike
// MPI, NCCL progresses on the GPU and its proxy thread, so sleeping slows nothing down.
class Backoff {
 public:
  void Pause() {
    ++iter_;
    if (iter_ < 1000) return;
    if (iter_ < 3000) {
      sched_yield();
      return;
    }
    const timespec ts{0, 100000};
    nanosleep(&ts, nullptr);
  }

 private:
  int iter_ = 0;
};

template <typename T>
ncclDataType_t NcclType();
template <>
ncclDataType_t NcclType<float>() { return ncclFloat32; }
template <>
ncclDataType_t NcclType<double>() { return ncclFloat64; }
template <>
ncclDataType_t NcclType<int64_t>() { return ncclInt64; }
template <>
ncclDataType_t NcclType<int32_t>() { return ncclInt32; }
template <>
ncclDataType_t NcclType<uint16_t>() { return ncclBfloat16; }  // BF16 bits, only ever moved

}  // namespace

struct NcclCommunicator::Op {
  const char* name;
  const char* unit;
  int64_t count;
  int64_t recv_count = -1;  // AllToAllV: elements received (count is elements sent)
};

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    const MpiCommunicator& bootstrap, cudaStream_t compute) {
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator());
  c->name_ = bootstrap.name();
  c->rank_ = bootstrap.rank();
  c->size_ = bootstrap.size();
  c->world_ranks_ = bootstrap.world_ranks();
  c->timeout_seconds_ = bootstrap.timeout_seconds();
  MPI_Comm_rank(MPI_COMM_WORLD, &c->world_rank_);
  const double deadline = c->Deadline();

  // The unique id, from group rank 0 to everyone (bounded MPI_Ibcast).
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (c->rank_ == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) return c->SetupError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(r)));
  }
  MPI_Request req;
  int err = MPI_Ibcast(&id, sizeof id, MPI_BYTE, 0, bootstrap.comm(), &req);
  if (err != MPI_SUCCESS) return c->SetupError("MPI_Ibcast of the NCCL unique id failed to start");
  for (Backoff b;;) {
    int done = 0;
    err = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (err != MPI_SUCCESS) return c->SetupError("MPI_Ibcast of the NCCL unique id failed");
    if (done) break;
    if (NowSeconds() > deadline) {
      return c->SetupError(absl::StrFormat(
          "the NCCL unique id did not arrive within %g s; a peer rank is dead or hung (group "
          "members: world ranks %s)",
          c->timeout_seconds_, absl::StrJoin(c->world_ranks_, ",")));
    }
    b.Pause();
  }
  absl::Status joined = c->Join(id, compute, deadline);
  if (!joined.ok()) return joined;
  return c;
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::CreateSingleProcess(
    const std::string& name, double timeout_seconds, cudaStream_t compute) {
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator());
  c->name_ = name;
  c->world_ranks_ = {0};
  c->timeout_seconds_ = timeout_seconds;
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) return c->SetupError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(r)));
  absl::Status joined = c->Join(id, compute, c->Deadline());
  if (!joined.ok()) return joined;
  return c;
}

absl::Status NcclCommunicator::SetupError(const std::string& what) const {
  return absl::UnavailableError(
      absl::StrFormat("moe: rank %d (world): NCCL setup of group '%s' (size %d, group rank %d): %s",
                      world_rank_, name_, size_, rank_, what));
}

absl::Status NcclCommunicator::Join(const ncclUniqueId& id, cudaStream_t compute, double deadline) {
  cudaError_t cerr;
  compute_ = compute;
  main_thread_ = std::this_thread::get_id();
  if ((cerr = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)) != cudaSuccess) {
    return SetupError(absl::StrCat("cudaStreamCreate: ", cudaGetErrorString(cerr)));
  }
  if ((cerr = cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming)) != cudaSuccess) {
    return SetupError(absl::StrCat("cudaEventCreate: ", cudaGetErrorString(cerr)));
  }
  if ((cerr = cudaMalloc(reinterpret_cast<void**>(&barrier_buf_), sizeof(float))) !=
      cudaSuccess) {
    return SetupError(absl::StrCat("cudaMalloc: ", cudaGetErrorString(cerr)));
  }
  if ((cerr = cudaMemset(barrier_buf_, 0, sizeof(float))) != cudaSuccess) {
    return SetupError(absl::StrCat("cudaMemset: ", cudaGetErrorString(cerr)));
  }

  // Join a non-blocking communicator and wait (bounded) until it is ready.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  config.commName = name_.c_str();
  ncclResult_t r = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    return SetupError(absl::StrCat("ncclCommInitRankConfig: ", ncclGetErrorString(r)));
  }
  for (Backoff b;;) {
    ncclResult_t state = ncclSuccess;
    r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) {
      return SetupError(absl::StrCat("ncclCommGetAsyncError: ", ncclGetErrorString(r)));
    }
    if (state == ncclSuccess) break;
    if (state != ncclInProgress) {
      const std::string why = absl::StrCat("ncclCommInitRankConfig: ", ncclGetErrorString(state),
                                           " (", ncclGetLastError(comm_), ")");
      ncclCommAbort(comm_);
      comm_ = nullptr;
      return SetupError(why);
    }
    if (NowSeconds() > deadline) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
      return SetupError(absl::StrFormat(
          "the NCCL communicator was not ready within %g s; a peer rank is dead or hung (group "
          "members: world ranks %s)",
          timeout_seconds_, absl::StrJoin(world_ranks_, ",")));
    }
    b.Pause();
  }
  return absl::OkStatus();
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) {
    // Let enqueued work finish and the communicator flush (bounded by the same timeout), then
    // destroy it; if that does not happen in time, abort it instead.
    const double deadline = Deadline();
    for (Backoff b; cudaStreamQuery(stream_) == cudaErrorNotReady && NowSeconds() < deadline;) {
      b.Pause();
    }
    StopWatchdog();  // before the communicator goes: it polls it
    ncclResult_t state = ncclCommFinalize(comm_);
    for (Backoff b; state == ncclInProgress && NowSeconds() < deadline;) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
      b.Pause();
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  StopWatchdog();
  if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
  for (const Watched& w : watched_) cudaEventDestroy(w.event);
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void NcclCommunicator::StopWatchdog() {
  if (!watchdog_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    stop_watchdog_ = true;
  }
  watch_cv_.notify_all();
  watchdog_.join();
}

double NcclCommunicator::Deadline() const { return NowSeconds() + timeout_seconds_; }

void NcclCommunicator::Fail(const Op& op, const std::string& why) {
  // One failure ends the process: should the watchdog and the main thread both find one, the second
  // waits for the first to finish it.
  static std::atomic<bool> failing{false};
  if (failing.exchange(true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const bool main_thread = std::this_thread::get_id() == main_thread_;
  const std::string what = op.recv_count >= 0 ? absl::StrFormat("send %d, recv %d %s", op.count,
                                                                op.recv_count, op.unit)
                                              : absl::StrFormat("%d %s", op.count, op.unit);
  const std::string line = absl::StrFormat(
      "moe: rank %d (world): NCCL collective %s on group '%s' (size %d, group rank %d, %s) %s "
      "(group members: world ranks %s)\n",
      world_rank_, op.name, name_, size_, rank_, what, why, absl::StrJoin(world_ranks_, ","));
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  if (comm_ != nullptr) ncclCommAbort(comm_);  // stops the hung kernel, so the process can exit
  // MPI serves the main thread only (MPI_THREAD_FUNNELED); from the watchdog the exit status ends the job.
  if (main_thread && MpiRunning()) MPI_Abort(MPI_COMM_WORLD, 2);
  std::_Exit(2);
}

void NcclCommunicator::Enqueued(ncclResult_t r, const Op& op, double deadline) {
  if (r == ncclSuccess) return;
  if (r != ncclInProgress) {
    Fail(op, absl::StrCat("failed to start: ", ncclGetErrorString(r), " (",
                          ncclGetLastError(comm_), ")"));
  }
  for (Backoff b;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
    if (q != ncclSuccess) Fail(op, absl::StrCat("ncclCommGetAsyncError: ", ncclGetErrorString(q)));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      Fail(op, absl::StrCat("failed: ", ncclGetErrorString(state), " (", ncclGetLastError(comm_),
                            ")"));
    }
    if (NowSeconds() > deadline) {
      Fail(op, absl::StrFormat("was not enqueued within %g s; a peer rank is dead or hung",
                               timeout_seconds_));
    }
    b.Pause();
  }
}

void NcclCommunicator::AfterCompute(const Op& op) {
  if (compute_ == nullptr) return;
  cudaError_t err = cudaEventRecord(compute_ready_, compute_);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(stream_, compute_ready_, 0);
  if (err != cudaSuccess) Fail(op, absl::StrCat("ordering after the compute stream: ", cudaGetErrorString(err)));
}

void NcclCommunicator::Complete(const Op& op, double deadline) { OrderAfter(Watch(op, deadline), op, deadline); }

void NcclCommunicator::OrderAfter(cudaEvent_t done, const Op& op, double deadline) {
  if (compute_ == nullptr) {
    WaitEvent(done, op, deadline);
    return;
  }
  const cudaError_t err = cudaStreamWaitEvent(compute_, done, 0);
  if (err != cudaSuccess) Fail(op, absl::StrCat("ordering the compute stream after it: ", cudaGetErrorString(err)));
}

cudaEvent_t NcclCommunicator::Watch(const Op& op, double deadline) {
  cudaEvent_t event = nullptr;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    if (!free_events_.empty()) {
      event = free_events_.back();
      free_events_.pop_back();
    }
  }
  cudaError_t err = event != nullptr ? cudaSuccess : cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventRecord(event, stream_);
  if (err != cudaSuccess) Fail(op, absl::StrCat("cudaEventRecord: ", cudaGetErrorString(err)));
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watched_.push_back({event, op.name, op.unit, op.count, op.recv_count, deadline});
    if (!watchdog_.joinable()) {
      int device = 0;
      cudaGetDevice(&device);
      watchdog_ = std::thread([this, device] { WatchdogLoop(device); });
    }
  }
  watch_cv_.notify_one();
  return event;
}

// The watchdog thread: the oldest collective in flight is polled until it completes (its event goes
// back to the pool), fails, or passes its deadline (Fail: this process ends).
void NcclCommunicator::WatchdogLoop(int device) {
  cudaSetDevice(device);
  for (;;) {
    Watched w;
    {
      std::unique_lock<std::mutex> lock(watch_mu_);
      watch_cv_.wait(lock, [&] { return stop_watchdog_ || !watched_.empty(); });
      if (watched_.empty()) return;  // stopping, nothing in flight
      w = watched_.front();
    }
    const Op op{w.name, w.unit, w.count, w.recv_count};
    const cudaError_t err = cudaEventQuery(w.event);
    if (err == cudaSuccess) {
      std::lock_guard<std::mutex> lock(watch_mu_);
      watched_.pop_front();
      free_events_.push_back(w.event);
      continue;
    }
    if (err != cudaErrorNotReady) Fail(op, absl::StrCat("CUDA error: ", cudaGetErrorString(err)));
    const std::string why = Stalled(w.deadline);
    if (!why.empty()) Fail(op, why);
    std::unique_lock<std::mutex> lock(watch_mu_);
    // No hurry: the watchdog only bounds; a millisecond between polls costs the GPU nothing.
    if (watch_cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return stop_watchdog_; })) return;
  }
}

std::string NcclCommunicator::Stalled(double deadline) {
  ncclResult_t state = ncclSuccess;
  ncclCommGetAsyncError(comm_, &state);
  if (state != ncclSuccess && state != ncclInProgress) {
    return absl::StrCat("failed: ", ncclGetErrorString(state), " (", ncclGetLastError(comm_), ")");
  }
  if (NowSeconds() > deadline) {
    return absl::StrFormat("did not complete within %g s; a peer rank is dead or hung", timeout_seconds_);
  }
  return "";
}

void NcclCommunicator::WaitEvent(cudaEvent_t event, const Op& op, double deadline) {
  for (Backoff b;;) {
    const cudaError_t err = cudaEventQuery(event);
    if (err == cudaSuccess) return;
    if (err != cudaErrorNotReady) Fail(op, absl::StrCat("CUDA error: ", cudaGetErrorString(err)));
    const std::string why = Stalled(deadline);
    if (!why.empty()) Fail(op, why);
    b.Pause();
  }
}

// A collective enqueued on the stream and not finished: an event of its own recorded behind it (the
// watchdog's is pooled and may be reused once it completes), polled by Test. Finish completes it as a
// blocking call would: the compute stream waits for it, or without one the host (bounded).
class NcclCommunicator::PendingEnqueued final : public PendingCollective {
 public:
  PendingEnqueued(NcclCommunicator* comm, const Op& op, double deadline)
      : comm_(comm), op_(op), deadline_(deadline) {
    cudaError_t err = cudaEventCreateWithFlags(&event_, cudaEventDisableTiming);
    if (err == cudaSuccess) err = cudaEventRecord(event_, comm->stream_);
    if (err != cudaSuccess) comm->Fail(op, absl::StrCat("cudaEventRecord: ", cudaGetErrorString(err)));
    comm->Watch(op, deadline);  // bounded from now, even if Finish comes late
  }
  ~PendingEnqueued() override {
    Finish();
    cudaEventDestroy(event_);
  }
  bool Test() override { return finished_ || cudaEventQuery(event_) == cudaSuccess; }
  void Finish() override {
    if (finished_) return;
    comm_->OrderAfter(event_, op_, deadline_);
    finished_ = true;
  }

 private:
  NcclCommunicator* comm_;
  Op op_;
  double deadline_;
  cudaEvent_t event_ = nullptr;
  bool finished_ = false;
};

template <typename T>
void NcclCommunicator::AllReduceImpl(T* x, int64_t n, ncclRedOp_t red, const char* what) {
  if (size_ == 1 || n <= 0) return;
  const Op op{what, UnitName<T>(), n};
  const double deadline = Deadline();
  AfterCompute(op);
  Enqueued(ncclAllReduce(x, x, static_cast<size_t>(n), NcclType<T>(), red, comm_, stream_), op,
           deadline);
  Complete(op, deadline);
}

void NcclCommunicator::AllReduceSum(float* x, int64_t n) {
  AllReduceImpl(x, n, ncclSum, "AllReduceSum");
}
void NcclCommunicator::AllReduceSum(double* x, int64_t n) {
  AllReduceImpl(x, n, ncclSum, "AllReduceSum");
}
void NcclCommunicator::AllReduceSum(int64_t* x, int64_t n) {
  AllReduceImpl(x, n, ncclSum, "AllReduceSum");
}
void NcclCommunicator::AllReduceMax(double* x, int64_t n) {
  AllReduceImpl(x, n, ncclMax, "AllReduceMax");
}

void NcclCommunicator::ReduceScatterSum(const float* in, float* out, int64_t n) {
  StartReduceScatterSum(in, out, n)->Finish();
}

std::unique_ptr<PendingCollective> NcclCommunicator::StartReduceScatterSum(const float* in, float* out,
                                                                           int64_t n) {
  if (n <= 0) return std::make_unique<internal::FinishedCollective>();  // nothing to wait for on the stream
  const Op op{"ReduceScatterSum", "floats", n};
  const double deadline = Deadline();
  AfterCompute(op);
  Enqueued(ncclReduceScatter(in, out, static_cast<size_t>(n), ncclFloat32, ncclSum, comm_, stream_), op,
           deadline);
  return std::make_unique<PendingEnqueued>(this, op, deadline);
}

template <typename T>
std::unique_ptr<PendingCollective> NcclCommunicator::StartAllGatherImpl(const T* in, T* out, int64_t n) {
  if (n <= 0) return std::make_unique<internal::FinishedCollective>();
  const Op op{"AllGather", UnitName<T>(), n};
  const double deadline = Deadline();
  AfterCompute(op);
  Enqueued(ncclAllGather(in, out, static_cast<size_t>(n), NcclType<T>(), comm_, stream_), op, deadline);
  return std::make_unique<PendingEnqueued>(this, op, deadline);
}

template <typename T>
void NcclCommunicator::AllGatherImpl(const T* in, T* out, int64_t n) {
  StartAllGatherImpl(in, out, n)->Finish();
}

std::unique_ptr<PendingCollective> NcclCommunicator::StartAllGather(const float* in, float* out, int64_t n) {
  return StartAllGatherImpl(in, out, n);
}
std::unique_ptr<PendingCollective> NcclCommunicator::StartAllGather(const uint16_t* in, uint16_t* out,
                                                                    int64_t n) {
  return StartAllGatherImpl(in, out, n);
}

void NcclCommunicator::AllGather(const float* in, float* out, int64_t n) {
  AllGatherImpl(in, out, n);
}
void NcclCommunicator::AllGather(const uint16_t* in, uint16_t* out, int64_t n) {
  AllGatherImpl(in, out, n);
}
void NcclCommunicator::AllGather(const int64_t* in, int64_t* out, int64_t n) {
  AllGatherImpl(in, out, n);
}

// One group of point-to-point calls: a send to and a receive from every peer with a non-zero
// count (contiguous blocks in rank order), fused so they progress together.
template <typename T>
void NcclCommunicator::AllToAllVImpl(const T* send, const std::vector<int64_t>& send_counts,
                                     T* recv, const std::vector<int64_t>& recv_counts,
                                     const char* what) {
  Op op{what, UnitName<T>(), 0};
  if (static_cast<int>(send_counts.size()) != size_ ||
      static_cast<int>(recv_counts.size()) != size_) {
    Fail(op, "called with count vectors whose length is not the group size");
  }
  int64_t sent = 0, received = 0;
  for (int r = 0; r < size_; ++r) {
    sent += send_counts[r];
    received += recv_counts[r];
  }
  op.count = sent;
  op.recv_count = received;
  if (sent == 0 && received == 0) return;
  const double deadline = Deadline();
  AfterCompute(op);
  Enqueued(ncclGroupStart(), op, deadline);
  int64_t send_off = 0, recv_off = 0;
  for (int r = 0; r < size_; ++r) {
    if (send_counts[r] > 0) {
      Enqueued(ncclSend(send + send_off, static_cast<size_t>(send_counts[r]), NcclType<T>(), r,
                        comm_, stream_),
               op, deadline);
    }
    if (recv_counts[r] > 0) {
      Enqueued(ncclRecv(recv + recv_off, static_cast<size_t>(recv_counts[r]), NcclType<T>(), r,
                        comm_, stream_),
               op, deadline);
    }
    send_off += send_counts[r];
    recv_off += recv_counts[r];
  }
  Enqueued(ncclGroupEnd(), op, deadline);
  Complete(op, deadline);
}

void NcclCommunicator::AllToAllV(const float* send, const std::vector<int64_t>& send_counts,
                                 float* recv, const std::vector<int64_t>& recv_counts) {
  AllToAllVImpl(send, send_counts, recv, recv_counts, "AllToAllV");
}
void NcclCommunicator::AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts,
                                 int32_t* recv, const std::vector<int64_t>& recv_counts) {
  AllToAllVImpl(send, send_counts, recv, recv_counts, "AllToAllV");
}
void NcclCommunicator::AllToAll(const int64_t* in, int64_t* out, int64_t n) {
  if (n <= 0) return;
  const std::vector<int64_t> counts(static_cast<size_t>(size_), n);
  AllToAllVImpl(in, counts, out, counts, "AllToAll");
}

template <typename T>
void NcclCommunicator::BroadcastImpl(T* x, int64_t n, int root) {
  if (size_ == 1 || n <= 0) return;
  const Op op{"Broadcast", UnitName<T>(), n};
  const double deadline = Deadline();
  AfterCompute(op);
  Enqueued(ncclBroadcast(x, x, static_cast<size_t>(n), NcclType<T>(), root, comm_, stream_), op,
           deadline);
  Complete(op, deadline);
}

void NcclCommunicator::Broadcast(float* x, int64_t n, int root) { BroadcastImpl(x, n, root); }
void NcclCommunicator::Broadcast(int64_t* x, int64_t n, int root) { BroadcastImpl(x, n, root); }

void NcclCommunicator::Barrier() {
  if (size_ == 1) return;
  const Op op{"Barrier", "floats", 1};
  const double deadline = Deadline();
  AfterCompute(op);
  Enqueued(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, comm_, stream_), op,
           deadline);
  WaitEvent(Watch(op, deadline), op, deadline);  // a barrier of the hosts: always waited for here
}

}  // namespace moe::parallel
