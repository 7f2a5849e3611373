// nccl_check: NcclCommunicator against MpiCommunicator, for multi-GPU machines with an MPI launcher:
//   mpirun -np <gpus> nccl_check [--seed=N]
// or, on one GPU without MPI (the device check's smoke test), a one-member NCCL group against
// LocalCommunicator (sums and moves are identities, but each runs through NCCL's kernels and this
// class's enqueue/poll/timeout path):
//   nccl_check --single_process [--seed=N]
// Each rank uses GPU (world rank % visible GPUs). For every collective of the Communicator interface
// it draws random data, runs the MPI version on host buffers and the NCCL version on device copies,
// and compares (sums to FP32/FP64 rounding, since NCCL's reduction order differs from the MPI
// version's rank order; data movement exactly); then, as the trainer uses it, a communicator ordered
// after a compute stream (RunOrdered). Rank 0 prints one PASS/FAIL line per collective;
// exit status 0 iff all passed on every rank. Not run in CI (no GPU there); compiled and linked by
// the CUDA build step.
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "parallel/communicator_mpi.h"
#include "parallel/communicator_nccl.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_world.h"

namespace moe::parallel {
namespace {

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    const cudaError_t e = (call);                                                     \
    if (e != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
                   cudaGetErrorString(e));                                            \
      if (MpiRunning()) MPI_Abort(MPI_COMM_WORLD, 3);                                 \
      std::exit(3);                                                                   \
    }                                                                                 \
  } while (0)

template <typename T>
T* ToDevice(const std::vector<T>& v) {
  T* p = nullptr;
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), sizeof(T) * (v.empty() ? 1 : v.size())));
  if (!v.empty()) CHECK_CUDA(cudaMemcpy(p, v.data(), sizeof(T) * v.size(), cudaMemcpyHostToDevice));
  return p;
}

template <typename T>
std::vector<T> ToHost(const T* p, size_t n) {
  std::vector<T> v(n);
  CHECK_CUDA(cudaDeviceSynchronize());
  if (n > 0) CHECK_CUDA(cudaMemcpy(v.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost));
  return v;
}

template <typename T>
double MaxRelDiff(const std::vector<T>& got, const std::vector<T>& ref) {
  if (got.size() != ref.size()) return 1e30;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    if (std::isnan(g)) return 1e30;
    worst = std::max(worst, std::fabs(g - r) / std::max(1.0, std::fabs(r)));
  }
  return worst;
}

class Runner {
 public:
  // `reference`: MpiCommunicator over host buffers, or LocalCommunicator for --single_process.
  Runner(Communicator& reference, NcclCommunicator& nccl, uint64_t seed)
      : reference_(reference),
        nccl_(nccl),
        gen_(seed * 1000003 + static_cast<uint64_t>(reference.rank())) {}

  int Run() {
    const int p = reference_.size();
    const int64_t n = 1000003;
    {
      std::vector<float> x = Floats(n), ref = x;
      float* d = ToDevice(x);
      reference_.AllReduceSum(ref.data(), n);
      nccl_.AllReduceSum(d, n);
      Report("AllReduceSum(float)", MaxRelDiff(ToHost(d, n), ref), 1e-5);
      cudaFree(d);
    }
    {
      std::vector<double> x = Doubles(n), ref = x;
      double* d = ToDevice(x);
      reference_.AllReduceSum(ref.data(), n);
      nccl_.AllReduceSum(d, n);
      Report("AllReduceSum(double)", MaxRelDiff(ToHost(d, n), ref), 1e-12);
      std::vector<double> m = Doubles(n), mref = m;
      double* dm = ToDevice(m);
      reference_.AllReduceMax(mref.data(), n);
      nccl_.AllReduceMax(dm, n);
      Report("AllReduceMax(double)", MaxRelDiff(ToHost(dm, n), mref), 0.0);
      cudaFree(d);
      cudaFree(dm);
    }
    {
      std::vector<int64_t> x = Ints(n), ref = x;
      int64_t* d = ToDevice(x);
      reference_.AllReduceSum(ref.data(), n);
      nccl_.AllReduceSum(d, n);
      Report("AllReduceSum(int64)", MaxRelDiff(ToHost(d, n), ref), 0.0);
      cudaFree(d);
    }
    {
      std::vector<float> in = Floats(p * n), ref(n);
      float* din = ToDevice(in);
      float* dout = ToDevice(std::vector<float>(n, NAN));
      reference_.ReduceScatterSum(in.data(), ref.data(), n);
      nccl_.ReduceScatterSum(din, dout, n);
      Report("ReduceScatterSum", MaxRelDiff(ToHost(dout, n), ref), 1e-5);
      // The started forms (the optimizer's overlap): the same results, with a blocking collective
      // enqueued between the start and the finish.
      float* dout2 = ToDevice(std::vector<float>(n, NAN));
      uint16_t* dbits = ToDevice(std::vector<uint16_t>(n, 0x3f80));
      uint16_t* dbits_out = ToDevice(std::vector<uint16_t>(p * n, 0));
      auto rs = nccl_.StartReduceScatterSum(din, dout2, n);
      auto ag = nccl_.StartAllGather(dbits, dbits_out, n);
      std::vector<float> x = Floats(n), xref = x;
      float* dx = ToDevice(x);
      reference_.AllReduceSum(xref.data(), n);
      nccl_.AllReduceSum(dx, n);
      ag->Finish();
      rs->Finish();
      Report("StartReduceScatterSum", MaxRelDiff(ToHost(dout2, n), ToHost(dout, n)), 0.0);
      Report("AllReduceSum between started ones", MaxRelDiff(ToHost(dx, n), xref), 1e-5);
      const std::vector<uint16_t> bits = ToHost(dbits_out, p * n);
      const bool bits_ok = std::all_of(bits.begin(), bits.end(), [](uint16_t v) { return v == 0x3f80; });
      Report("StartAllGather(BF16 bits)", bits_ok ? 0.0 : 1.0, 0.0);
      cudaFree(dout2);
      cudaFree(dbits);
      cudaFree(dbits_out);
      cudaFree(dx);
      cudaFree(din);
      cudaFree(dout);
    }
    {
      std::vector<float> in = Floats(n), ref(p * n);
      float* din = ToDevice(in);
      float* dout = ToDevice(std::vector<float>(p * n, NAN));
      reference_.AllGather(in.data(), ref.data(), n);
      nccl_.AllGather(din, dout, n);
      Report("AllGather(float)", MaxRelDiff(ToHost(dout, p * n), ref), 0.0);
      std::vector<int64_t> iin = Ints(n), iref(p * n);
      int64_t* diin = ToDevice(iin);
      int64_t* diout = ToDevice(std::vector<int64_t>(p * n, -1));
      reference_.AllGather(iin.data(), iref.data(), n);
      nccl_.AllGather(diin, diout, n);
      Report("AllGather(int64)", MaxRelDiff(ToHost(diout, p * n), iref), 0.0);
      cudaFree(din);
      cudaFree(dout);
      cudaFree(diin);
      cudaFree(diout);
    }
    {
      const PeerCounts c = DrawPeerCounts(0, 5000);
      std::vector<float> send = Floats(c.sent), ref(c.received);
      float* dsend = ToDevice(send);
      float* drecv = ToDevice(std::vector<float>(c.received, NAN));
      reference_.AllToAllV(send.data(), c.send, ref.data(), c.recv);
      nccl_.AllToAllV(dsend, c.send, drecv, c.recv);
      Report("AllToAllV(float)", MaxRelDiff(ToHost(drecv, c.received), ref), 0.0);
      std::vector<int32_t> isend(c.sent), iref(c.received);
      for (auto& v : isend) v = static_cast<int32_t>(gen_() % 100000);
      int32_t* disend = ToDevice(isend);
      int32_t* direcv = ToDevice(std::vector<int32_t>(c.received, -1));
      reference_.AllToAllV(isend.data(), c.send, iref.data(), c.recv);
      nccl_.AllToAllV(disend, c.send, direcv, c.recv);
      Report("AllToAllV(int32)", MaxRelDiff(ToHost(direcv, c.received), iref), 0.0);
      std::vector<int64_t> a = Ints(p * 7), aref(p * 7);
      int64_t* da = ToDevice(a);
      int64_t* daout = ToDevice(std::vector<int64_t>(p * 7, -1));
      reference_.AllToAll(a.data(), aref.data(), 7);
      nccl_.AllToAll(da, daout, 7);
      Report("AllToAll(int64)", MaxRelDiff(ToHost(daout, p * 7), aref), 0.0);
      for (void* q : {static_cast<void*>(dsend), static_cast<void*>(drecv),
                      static_cast<void*>(disend), static_cast<void*>(direcv),
                      static_cast<void*>(da), static_cast<void*>(daout)}) {
        cudaFree(q);
      }
    }
    {
      const int root = p - 1;
      std::vector<float> x = Floats(n), ref = x;
      float* d = ToDevice(x);
      reference_.Broadcast(ref.data(), n, root);
      nccl_.Broadcast(d, n, root);
      Report("Broadcast(float)", MaxRelDiff(ToHost(d, n), ref), 0.0);
      std::vector<int64_t> y = Ints(n), yref = y;
      int64_t* dy = ToDevice(y);
      reference_.Broadcast(yref.data(), n, root);
      nccl_.Broadcast(dy, n, root);
      Report("Broadcast(int64)", MaxRelDiff(ToHost(dy, n), yref), 0.0);
      cudaFree(d);
      cudaFree(dy);
    }
    nccl_.Barrier();
    Report("Barrier", 0.0, 0.0);
    return failures_;
  }

  // The trainer's mode: `ordered` was created with a compute stream, so its collectives wait for the
  // work enqueued there before them and the compute stream waits for them, with no host wait. Each
  // input is written by the last of a long chain of copies on the compute stream, and each result read
  // by a copy on it: a missing event in either direction reads NaN or stale values.
  int RunOrdered(NcclCommunicator& ordered, cudaStream_t compute) {
    const int p = reference_.size();
    const int64_t n = 1 << 22;
    const size_t slow_bytes = size_t{256} << 20;
    char *slow_a = nullptr, *slow_b = nullptr;
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&slow_a), slow_bytes));
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&slow_b), slow_bytes));
    float *host_in = nullptr, *host_out = nullptr;
    CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host_in), sizeof(float) * p * n));
    CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host_out), sizeof(float) * p * n));
    float *d_in = nullptr, *d_out = nullptr;
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_in), sizeof(float) * p * n));
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_out), sizeof(float) * p * n));
    auto reset = [&] {  // NaN everywhere, then a slow stretch of compute, then the input
      CHECK_CUDA(cudaMemsetAsync(d_in, 0xFF, sizeof(float) * p * n, compute));
      CHECK_CUDA(cudaMemsetAsync(d_out, 0xFF, sizeof(float) * p * n, compute));
      for (int i = 0; i < 8; ++i) CHECK_CUDA(cudaMemcpyAsync(slow_b, slow_a, slow_bytes, cudaMemcpyDeviceToDevice, compute));
    };
    auto read = [&](const float* d, int64_t count) {
      CHECK_CUDA(cudaMemcpyAsync(host_out, d, sizeof(float) * count, cudaMemcpyDeviceToHost, compute));
      CHECK_CUDA(cudaStreamSynchronize(compute));
      return std::vector<float>(host_out, host_out + count);
    };
    {
      std::vector<float> x = Floats(n), ref = x;
      std::copy(x.begin(), x.end(), host_in);
      reference_.AllReduceSum(ref.data(), n);
      reset();
      CHECK_CUDA(cudaMemcpyAsync(d_in, host_in, sizeof(float) * n, cudaMemcpyHostToDevice, compute));
      ordered.AllReduceSum(d_in, n);
      Report("ordered AllReduceSum", MaxRelDiff(read(d_in, n), ref), 1e-5);
    }
    {
      std::vector<float> in = Floats(p * n), ref(n);
      std::copy(in.begin(), in.end(), host_in);
      reference_.ReduceScatterSum(in.data(), ref.data(), n);
      reset();
      CHECK_CUDA(cudaMemcpyAsync(d_in, host_in, sizeof(float) * p * n, cudaMemcpyHostToDevice, compute));
      auto started = ordered.StartReduceScatterSum(d_in, d_out, n);
      for (int i = 0; i < 4; ++i) CHECK_CUDA(cudaMemcpyAsync(slow_b, slow_a, slow_bytes, cudaMemcpyDeviceToDevice, compute));
      started->Finish();
      Report("ordered started ReduceScatter", MaxRelDiff(read(d_out, n), ref), 1e-5);
    }
    {
      std::vector<float> x = Floats(n), ref(p * n);
      std::copy(x.begin(), x.end(), host_in);
      reference_.AllGather(x.data(), ref.data(), n);
      reset();
      CHECK_CUDA(cudaMemcpyAsync(d_in, host_in, sizeof(float) * n, cudaMemcpyHostToDevice, compute));
      ordered.AllGather(d_in, d_out, n);
      Report("ordered AllGather", MaxRelDiff(read(d_out, p * n), ref), 0.0);
    }
    {  // the expert dispatch's exchange
      const PeerCounts c = DrawPeerCounts(1, n / p);
      std::vector<float> send = Floats(c.sent), ref(c.received);
      std::copy(send.begin(), send.end(), host_in);
      reference_.AllToAllV(send.data(), c.send, ref.data(), c.recv);
      reset();
      CHECK_CUDA(cudaMemcpyAsync(d_in, host_in, sizeof(float) * c.sent, cudaMemcpyHostToDevice, compute));
      ordered.AllToAllV(d_in, c.send, d_out, c.recv);
      Report("ordered AllToAllV", MaxRelDiff(read(d_out, c.received), ref), 0.0);
    }
    for (void* q : {static_cast<void*>(slow_a), static_cast<void*>(slow_b), static_cast<void*>(d_in),
                    static_cast<void*>(d_out)}) {
      cudaFree(q);
    }
    cudaFreeHost(host_in);
    cudaFreeHost(host_out);
    return failures_;
  }

 private:
  // AllToAllV's per-peer counts, each drawn from [least, most] but every third pairing zero, exchanged
  // so every rank knows what it receives.
  struct PeerCounts {
    std::vector<int64_t> send, recv;
    int64_t sent = 0, received = 0;
  };
  PeerCounts DrawPeerCounts(int64_t least, int64_t most) {
    const int p = reference_.size();
    PeerCounts c{std::vector<int64_t>(p), std::vector<int64_t>(p)};
    std::uniform_int_distribution<int64_t> count(least, most);
    for (int r = 0; r < p; ++r) c.send[r] = (r + reference_.rank()) % 3 == 1 ? 0 : count(gen_);
    reference_.AllToAll(c.send.data(), c.recv.data(), 1);
    for (int r = 0; r < p; ++r) {
      c.sent += c.send[r];
      c.received += c.recv[r];
    }
    return c;
  }

  std::vector<float> Floats(int64_t n) {
    std::normal_distribution<float> d;
    std::vector<float> v(n);
    for (float& x : v) x = d(gen_);
    return v;
  }
  std::vector<double> Doubles(int64_t n) {
    std::normal_distribution<double> d;
    std::vector<double> v(n);
    for (double& x : v) x = d(gen_);
    return v;
  }
  std::vector<int64_t> Ints(int64_t n) {
    std::vector<int64_t> v(n);
    for (int64_t& x : v) x = static_cast<int64_t>(gen_() % 2000001) - 1000000;
    return v;
  }

  // A collective passes if it passes on every rank.
  void Report(const char* name, double diff, double tol) {
    int ok = diff <= tol ? 1 : 0, all = ok;
    double worst = diff;
    if (MpiRunning()) {
      MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
      MPI_Allreduce(&diff, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    if (!all) ++failures_;
    if (reference_.rank() == 0) {
      std::printf("%s  %-24s max_rel_diff=%.2e (tol %.0e) over %d ranks\n", all ? "PASS" : "FAIL",
                  name, worst, tol, reference_.size());
      std::fflush(stdout);
    }
  }

  Communicator& reference_;
  NcclCommunicator& nccl_;
  std::mt19937_64 gen_;
  int failures_ = 0;
};

}  // namespace
}  // namespace moe::parallel

int main(int argc, char** argv) {
  using namespace moe::parallel;
  uint64_t seed = 1;
  bool single_process = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--seed=", 0) == 0) {
      seed = std::strtoull(a.c_str() + 7, nullptr, 10);
    } else if (a == "--single_process") {
      single_process = true;
    }
  }
  if (single_process) {
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) {
      std::fprintf(stderr, "nccl_check: no CUDA device\n");
      return 2;
    }
    CHECK_CUDA(cudaSetDevice(0));
    auto nccl = NcclCommunicator::CreateSingleProcess("single_process", /*timeout_seconds=*/60);
    if (!nccl.ok()) {
      std::fprintf(stderr, "%s\n", nccl.status().ToString().c_str());
      return 2;
    }
    int version = 0;
    ncclGetVersion(&version);
    std::printf("nccl_check: one process, one GPU, NCCL %d\n", version);
    LocalCommunicator local;
    Runner runner(local, **nccl, seed);
    int failures = runner.Run();
    cudaStream_t compute = nullptr;
    CHECK_CUDA(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    auto ordered = NcclCommunicator::CreateSingleProcess("single_process_ordered", 60, compute);
    if (!ordered.ok()) {
      std::fprintf(stderr, "%s\n", ordered.status().ToString().c_str());
      return 2;
    }
    failures = runner.RunOrdered(**ordered, compute);
    ordered->reset();
    return failures == 0 ? 0 : 1;
  }
  auto world = MpiWorld::Init(&argc, &argv);
  if (!world.ok()) {
    std::fprintf(stderr, "nccl_check: %s\n", world.status().ToString().c_str());
    return 2;
  }
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) {
    std::fprintf(stderr, "nccl_check: rank %d sees no CUDA device\n", world->rank());
    world->Abort(2);
  }
  CHECK_CUDA(cudaSetDevice(world->rank() % gpus));
  auto mpi = MpiCommunicator::World(/*timeout_seconds=*/60);
  auto nccl = NcclCommunicator::Create(*mpi);
  if (!nccl.ok()) {
    std::fprintf(stderr, "%s\n", nccl.status().ToString().c_str());
    world->Abort(2);
  }
  Runner runner(*mpi, **nccl, seed);
  int failures = runner.Run();
  cudaStream_t compute = nullptr;
  CHECK_CUDA(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  auto ordered = NcclCommunicator::Create(*mpi, compute);
  if (!ordered.ok()) {
    std::fprintf(stderr, "%s\n", ordered.status().ToString().c_str());
    world->Abort(2);
  }
  failures = runner.RunOrdered(**ordered, compute);
  ordered->reset();
  nccl->reset();
  mpi.reset();
  return failures == 0 ? 0 : 1;
}
