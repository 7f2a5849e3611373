// NcclCommunicator: the Communicator interface over NCCL, on DEVICE buffers (built only with
// --config=cuda). Every pointer passed to a collective is device memory on the caller's current
// CUDA device; element counts and AllToAllV's per-peer counts are host values.
//
// Bootstrap: one NCCL communicator per process group, built over an existing MpiCommunicator of the
// same group (the mesh's tp/dp/ep/expert_dp groups): group rank 0 draws the ncclUniqueId, a bounded
// MPI_Ibcast hands it to the others, and every member joins a NON-BLOCKING NCCL communicator
// (config.blocking = 0), so no NCCL call can stall the host without the deadline being checked.
//
// Streams: each communicator runs its collectives on a stream of its own (the communication stream),
// so the GPU runs them beside the compute kernels instead of between them. Given the stream the
// compute runs on (`compute`: the op backend's), each collective first waits, by an event, for the
// work enqueued there before it: it reads its inputs after they are written. Work the host enqueues
// there after a blocking collective returns, or after a started one's Finish, runs after the collective
// (the host waited for it), so a started collective overlaps with exactly the compute enqueued between
// its start and its finish, which must leave its buffers alone.
//
// Waits: the host waits only where it reads a result. Each collective is enqueued on the communication
// stream (if NCCL answers ncclInProgress, the host polls ncclCommGetAsyncError until the enqueue
// completes) and an event is recorded behind it. With a compute stream, the call then returns: the
// compute stream waits for that event (a started collective's Finish makes it wait), so the kernels
// enqueued after the call read the result, and the host reads it through the backend's copies, which
// wait for the compute stream. A watchdog thread per communicator (as PyTorch's NCCL process groups
// have) polls the events of the collectives in flight, in order, with cudaEventQuery and
// ncclCommGetAsyncError (which reports a failed peer or network) against each one's deadline, its
// enqueue time plus the group's timeout (the MPI group's). Without a compute stream the host itself
// polls the same way until the collective is done, so each call returns with its result in place.
// When a deadline passes or NCCL reports an error, this rank prints one line naming itself, the
// group, the collective and the element count, calls ncclCommAbort (which frees the GPU from the hung
// kernel) and ends: MPI_Abort(MPI_COMM_WORLD, 2) from the main thread, as MpiCommunicator does, or
// exit status 2 from the watchdog (MPI is initialised for the main thread only; mpirun ends the job
// when a rank exits non-zero). No collective may hang.
//
// Numerics: sums are NCCL's (ring or tree order chosen by NCCL from the group and message size): the
// same bits every call for a fixed group, size and NCCL version, but not the MPI version's strict
// rank order (x_0 + x_1) + x_2 ..., so CPU and GPU runs agree to FP32 rounding, not bit for bit.
//
// Threading: one thread drives a communicator. The caller sets the CUDA device (one GPU per rank,
// usually the node-local rank) before Create and keeps it current.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/communicator_mpi.h"

namespace moe::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`'s group (every member must call it). `compute`: the stream whose
  // earlier work each collective waits for (null: none; the caller's data is ready when it calls, e.g.
  // written by a synchronous copy). The timeout is bootstrap's. Errors (bootstrap timed out, NCCL or
  // CUDA failed to start) name this rank and the group.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(const MpiCommunicator& bootstrap,
                                                                  cudaStream_t compute = nullptr);
  // A one-member group on the current device that needs no MPI (a one-GPU smoke test: every
  // collective runs through NCCL's kernels, the sums and moves being identities). On a failed
  // collective the process exits with status 2 (MPI_Abort when MPI is running).
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> CreateSingleProcess(
      const std::string& name, double timeout_seconds, cudaStream_t compute = nullptr);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  cudaStream_t stream() const { return stream_; }  // the communication stream
  ncclComm_t comm() const { return comm_; }
  double timeout_seconds() const { return timeout_seconds_; }

  void AllReduceSum(float* x, int64_t n) override;
  void AllReduceSum(double* x, int64_t n) override;
  void AllReduceSum(int64_t* x, int64_t n) override;
  void AllReduceMax(double* x, int64_t n) override;

  void ReduceScatterSum(const float* in, float* out, int64_t n) override;
  void AllGather(const float* in, float* out, int64_t n) override;
  void AllGather(const uint16_t* in, uint16_t* out, int64_t n) override;
  void AllGather(const int64_t* in, int64_t* out, int64_t n) override;
  // Enqueued now; the handle's Test polls an event behind the collective and Finish waits for it
  // (bounded), so the host goes on enqueuing work meanwhile. The blocking forms are Start + Finish.
  std::unique_ptr<PendingCollective> StartReduceScatterSum(const float* in, float* out, int64_t n) override;
  std::unique_ptr<PendingCollective> StartAllGather(const float* in, float* out, int64_t n) override;
  std::unique_ptr<PendingCollective> StartAllGather(const uint16_t* in, uint16_t* out, int64_t n) override;

  void AllToAllV(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                 const std::vector<int64_t>& recv_counts) override;
  void AllToAllV(const int32_t* send, const std::vector<int64_t>& send_counts, int32_t* recv,
                 const std::vector<int64_t>& recv_counts) override;
  void AllToAll(const int64_t* in, int64_t* out, int64_t n) override;

  void Broadcast(float* x, int64_t n, int root) override;
  void Broadcast(int64_t* x, int64_t n, int root) override;
  void Barrier() override;

 private:
  struct Op;  // the collective in flight, for the timeout message
  class PendingEnqueued;

  NcclCommunicator() = default;
  // Creates the stream, events and barrier buffer, then joins the NCCL communicator of `id` as
  // rank_ of size_ and waits (until `deadline`) until it is ready.
  absl::Status Join(const ncclUniqueId& id, cudaStream_t compute, double deadline);
  // Before each enqueue: the communication stream waits for the work enqueued on compute_ so far.
  void AfterCompute(const Op& op);
  // After a blocking collective's enqueue: the compute stream waits for it and the watchdog bounds it;
  // without a compute stream, the host waits for it (bounded by `deadline`).
  void Complete(const Op& op, double deadline);
  // What follows the collective behind `done` sees its result: the compute stream waits for the event,
  // or without one the host (bounded by `deadline`).
  void OrderAfter(cudaEvent_t done, const Op& op, double deadline);
  // Records a pooled event behind the collective just enqueued and hands it to the watchdog; returns it.
  cudaEvent_t Watch(const Op& op, double deadline);
  void WatchdogLoop(int device);
  void StopWatchdog();  // lets it finish its current poll and joins it
  absl::Status SetupError(const std::string& what) const;  // names this rank and the group

  template <typename T>
  void AllReduceImpl(T* x, int64_t n, ncclRedOp_t op, const char* what);
  template <typename T>
  void AllGatherImpl(const T* in, T* out, int64_t n);
  template <typename T>
  std::unique_ptr<PendingCollective> StartAllGatherImpl(const T* in, T* out, int64_t n);
  template <typename T>
  void AllToAllVImpl(const T* send, const std::vector<int64_t>& send_counts, T* recv,
                     const std::vector<int64_t>& recv_counts, const char* what);
  template <typename T>
  void BroadcastImpl(T* x, int64_t n, int root);

  // Checks an enqueue call's result; on ncclInProgress polls until the enqueue completed.
  void Enqueued(ncclResult_t r, const Op& op, double deadline);
  // Polls `event` until it completes, NCCL reports a failure, or the deadline passes (then Fail).
  void WaitEvent(cudaEvent_t event, const Op& op, double deadline);
  // The poll's verdict on a collective not yet complete: "" while it may go on, else why it failed.
  std::string Stalled(double deadline);
  // Prints the failure, aborts the NCCL communicator and ends the process (see "Waits").
  [[noreturn]] void Fail(const Op& op, const std::string& why);
  double Deadline() const;

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;   // the communication stream (owned)
  cudaStream_t compute_ = nullptr;  // the stream collectives are ordered after (not owned; may be null)
  cudaEvent_t compute_ready_ = nullptr;  // recorded on compute_ before each collective

  // The watchdog: the collectives in flight (in enqueue order), the events no collective holds.
  struct Watched {
    cudaEvent_t event;
    const char* name;
    const char* unit;
    int64_t count, recv_count;
    double deadline;
  };
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  std::deque<Watched> watched_;
  std::vector<cudaEvent_t> free_events_;
  bool stop_watchdog_ = false;
  std::thread watchdog_;
  std::thread::id main_thread_;  // the thread that made the communicator (and calls MPI)

  float* barrier_buf_ = nullptr;  // one device float for Barrier
  std::string name_;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  std::vector<int> world_ranks_;
  double timeout_seconds_ = 0;
};

}  // namespace moe::parallel
