// The NCCL calls of parallel/communicator_nccl.cc on the CPU, for multi-rank runs of the emulated CUDA
// backend (run_multirank_emulation.sh): each NCCL communicator is an MPI communicator of the same
// members, and each collective stages the device data through host vectors into a non-blocking MPI
// collective started at the call, then waits for it and lands its result as stream work
// (EmuNcclCollective). It checks how the trainer drives NCCL (which buffers, counts, groups, order,
// synchronisation), not NCCL itself: sums are MPI's, in MPI's order.
//
// Needs MPI initialised (the trainer does it); a one-member communicator (NcclCommunicator::
// CreateSingleProcess) runs without MPI.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7
} ncclResult_t;
typedef enum { ncclInt32 = 2, ncclInt64 = 4, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 } ncclRedOp_t;

#define NCCL_UNIQUE_ID_BYTES 128
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};
struct ncclConfig_t {
  int blocking = 1;
  const char* commName = nullptr;
};
#define NCCL_CONFIG_INITIALIZER \
  {}

struct ncclComm {
  MPI_Comm comm = MPI_COMM_NULL;  // MPI_COMM_NULL: a one-member communicator without MPI
  int rank = 0, size = 1;
};
typedef ncclComm* ncclComm_t;

inline int g_emu_nccl_group_depth = 0;
// The point-to-point calls between ncclGroupStart and ncclGroupEnd, run together at the end.
struct EmuP2p {
  bool send;
  void* buf;
  size_t bytes;
  int peer;
  ncclComm_t comm;
  cudaStream_t stream;
};
inline std::vector<EmuP2p>& EmuP2pGroup() {
  static std::vector<EmuP2p> group;
  return group;
}

inline size_t EmuNcclBytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt32: case ncclFloat32: return 4;
    case ncclInt64: case ncclFloat64: return 8;
    case ncclBfloat16: return 2;
  }
  return 0;
}
inline MPI_Datatype EmuNcclMpiType(ncclDataType_t t) {
  switch (t) {
    case ncclInt32: return MPI_INT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    case ncclBfloat16: return MPI_UINT16_T;  // only ever moved
  }
  return MPI_DATATYPE_NULL;
}
[[noreturn]] inline void EmuNcclFail(const char* what) {
  std::fprintf(stderr, "EMU error: NCCL emulation: %s\n", what);
  std::fflush(stderr);
  std::abort();
}
inline void EmuMpiCheck(int err, const char* what) {
  if (err != MPI_SUCCESS) EmuNcclFail(what);
}

inline const char* ncclGetErrorString(ncclResult_t) { return "emu"; }
inline const char* ncclGetLastError(ncclComm_t) { return ""; }
inline ncclResult_t ncclGetVersion(int* version) {
  *version = 0;
  return ncclSuccess;
}

// The id names the process that drew it and its draw count; the members split MPI_COMM_WORLD by it.
inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static int draws = 0;
  int world_rank = 0, initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  std::memset(id, 0, sizeof *id);
  const int color = world_rank * 1024 + (draws++ % 1024);
  std::memcpy(id->internal, &color, sizeof color);
  return ncclSuccess;
}

// Collective over MPI_COMM_WORLD when nranks > 1: the trainer creates the groups of one kind (tp, dp,
// ...) at the same point on every rank, each rank in one of them, so every world rank calls this
// together; ranks are ordered by their NCCL rank.
inline ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                           ncclConfig_t*) {
  auto* c = new ncclComm;
  c->rank = rank;
  c->size = nranks;
  if (nranks > 1) {
    int color = 0;
    std::memcpy(&color, id.internal, sizeof color);
    EmuMpiCheck(MPI_Comm_split(MPI_COMM_WORLD, color, rank, &c->comm), "MPI_Comm_split");
    int size = 0;
    MPI_Comm_size(c->comm, &size);
    if (size != nranks) EmuNcclFail("a communicator's members did not all join it together");
  }
  *comm = c;
  return ncclSuccess;
}
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t* state) {
  *state = ncclSuccess;
  return ncclSuccess;
}
inline ncclResult_t ncclCommFinalize(ncclComm_t) {
  EmuDrain();
  return ncclSuccess;
}
inline ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm->comm != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}
inline ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

// A collective's data exchange starts at the call, in program order, as a non-blocking MPI collective
// (so the ranks start them in the same order whatever each one's stream does, and MPI moves the data
// while any rank is inside any MPI call); first its stream runs up to the call, so the inputs it
// stages are those the stream would read. The exchange is waited for, and its result lands in
// `recv`, later, as stream work: work that reads the result without waiting for the stream reads what
// was there before, and a peer that never joins leaves the stream stuck there, as a GPU's would be
// (the communicator's watchdog then ends the process).
struct EmuExchange {
  std::shared_ptr<std::vector<char>> in, out;  // staged; alive until the exchange completes
  MPI_Request request = MPI_REQUEST_NULL;
};
inline void EmuNcclCollective(cudaStream_t stream, void* recv, const std::function<void(EmuExchange&)>& start) {
  if (stream == nullptr) {
    EmuDrain();
  } else {
    EmuRunStream(stream);
  }
  auto x = std::make_shared<EmuExchange>();
  {
    EmuDeviceAccess device;  // the inputs are device memory
    start(*x);
  }
  EmuEnqueue(stream, [recv, x] {
    if (x->request != MPI_REQUEST_NULL) EmuMpiCheck(MPI_Wait(&x->request, MPI_STATUS_IGNORE), "MPI_Wait");
    std::memcpy(recv, x->out->data(), x->out->size());
  });
}
inline std::shared_ptr<std::vector<char>> EmuStage(const void* p, size_t bytes) {
  return std::make_shared<std::vector<char>>(static_cast<const char*>(p), static_cast<const char*>(p) + bytes);
}

// In place or not: recv = reduce over the members of send.
inline ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                                  ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * EmuNcclBytes(type);
  if (op != ncclSum && op != ncclMax) EmuNcclFail("reduction other than sum or max");
  EmuNcclCollective(stream, recv, [=](EmuExchange& x) {
    x.out = EmuStage(send, bytes);
    if (comm->comm == MPI_COMM_NULL) return;
    EmuMpiCheck(MPI_Iallreduce(MPI_IN_PLACE, x.out->data(), static_cast<int>(count), EmuNcclMpiType(type),
                               op == ncclSum ? MPI_SUM : MPI_MAX, comm->comm, &x.request),
                "MPI_Iallreduce");
  });
  return ncclSuccess;
}
// recv [count] = the sum over members of their send block `rank` (send holds size * count).
inline ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t count, ncclDataType_t type,
                                      ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * EmuNcclBytes(type);
  if (op != ncclSum) EmuNcclFail("reduce-scatter other than a sum");
  EmuNcclCollective(stream, recv, [=](EmuExchange& x) {
    x.in = EmuStage(send, bytes * comm->size);
    if (comm->comm == MPI_COMM_NULL) {
      x.out = x.in;
      return;
    }
    x.out = std::make_shared<std::vector<char>>(bytes);
    EmuMpiCheck(MPI_Ireduce_scatter_block(x.in->data(), x.out->data(), static_cast<int>(count), EmuNcclMpiType(type),
                                          MPI_SUM, comm->comm, &x.request),
                "MPI_Ireduce_scatter_block");
  });
  return ncclSuccess;
}
// recv [size * count]: block r from member r.
inline ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t type, ncclComm_t comm,
                                  cudaStream_t stream) {
  const size_t bytes = count * EmuNcclBytes(type);
  EmuNcclCollective(stream, recv, [=](EmuExchange& x) {
    x.in = EmuStage(send, bytes);
    if (comm->comm == MPI_COMM_NULL) {
      x.out = x.in;
      return;
    }
    x.out = std::make_shared<std::vector<char>>(bytes * comm->size);
    EmuMpiCheck(MPI_Iallgather(x.in->data(), static_cast<int>(bytes), MPI_BYTE, x.out->data(), static_cast<int>(bytes),
                               MPI_BYTE, comm->comm, &x.request),
                "MPI_Iallgather");
  });
  return ncclSuccess;
}
inline ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                                  ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * EmuNcclBytes(type);
  EmuNcclCollective(stream, recv, [=](EmuExchange& x) {
    x.out = std::make_shared<std::vector<char>>(bytes);
    if (comm->rank == root) std::memcpy(x.out->data(), send, bytes);
    if (comm->comm == MPI_COMM_NULL) return;
    EmuMpiCheck(MPI_Ibcast(x.out->data(), static_cast<int>(bytes), MPI_BYTE, root, comm->comm, &x.request),
                "MPI_Ibcast");
  });
  return ncclSuccess;
}

inline ncclResult_t ncclGroupStart() {
  ++g_emu_nccl_group_depth;
  return ncclSuccess;
}
// The group's sends and receives together, as one collective (see EmuNcclCollective): every send's data
// staged and all posted at the call; all waited for, and each receive landed, in stream order.
inline ncclResult_t ncclGroupEnd() {
  if (g_emu_nccl_group_depth <= 0) EmuNcclFail("ncclGroupEnd without ncclGroupStart");
  if (--g_emu_nccl_group_depth > 0) return ncclSuccess;
  std::vector<EmuP2p> group;
  group.swap(EmuP2pGroup());
  if (group.empty()) return ncclSuccess;
  const cudaStream_t stream = group[0].stream;
  for (const EmuP2p& p : group) {
    if (p.stream != stream) EmuNcclFail("one group's sends and receives on different streams");
  }
  EmuRunStream(stream);
  struct Posted {
    std::vector<std::vector<char>> staged;
    std::vector<MPI_Request> requests;
  };
  auto posted = std::make_shared<Posted>();
  posted->staged.resize(group.size());
  {
    EmuDeviceAccess device;
    size_t next_send = 0;  // one member: the k-th receive takes the k-th send
    for (size_t i = 0; i < group.size(); ++i) {
      const EmuP2p& p = group[i];
      std::vector<char>& staged = posted->staged[i];
      staged.resize(p.bytes);
      if (p.comm->comm == MPI_COMM_NULL) {
        if (p.send) continue;
        while (next_send < group.size() && !group[next_send].send) ++next_send;
        if (next_send == group.size() || group[next_send].bytes != p.bytes) EmuNcclFail("unmatched receive");
        std::memcpy(staged.data(), group[next_send++].buf, p.bytes);
        continue;
      }
      MPI_Request r;
      if (p.send) {
        std::memcpy(staged.data(), p.buf, p.bytes);
        EmuMpiCheck(MPI_Isend(staged.data(), static_cast<int>(p.bytes), MPI_BYTE, p.peer, 0, p.comm->comm, &r),
                    "MPI_Isend");
      } else {
        EmuMpiCheck(MPI_Irecv(staged.data(), static_cast<int>(p.bytes), MPI_BYTE, p.peer, 0, p.comm->comm, &r),
                    "MPI_Irecv");
      }
      posted->requests.push_back(r);
    }
  }
  EmuEnqueue(stream, [group, posted] {
    if (!posted->requests.empty()) {
      EmuMpiCheck(MPI_Waitall(static_cast<int>(posted->requests.size()), posted->requests.data(),
                              MPI_STATUSES_IGNORE),
                  "MPI_Waitall");
    }
    for (size_t i = 0; i < group.size(); ++i) {
      if (!group[i].send) std::memcpy(group[i].buf, posted->staged[i].data(), group[i].bytes);
    }
  });
  return ncclSuccess;
}
inline ncclResult_t EmuNcclP2p(bool send, const void* buf, size_t count, ncclDataType_t type, int peer,
                               ncclComm_t comm, cudaStream_t stream) {
  ncclGroupStart();
  EmuP2pGroup().push_back({send, const_cast<void*>(buf), count * EmuNcclBytes(type), peer, comm, stream});
  return ncclGroupEnd();
}
inline ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                             cudaStream_t stream) {
  return EmuNcclP2p(true, buf, count, type, peer, comm, stream);
}
inline ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                             cudaStream_t stream) {
  return EmuNcclP2p(false, buf, count, type, peer, comm, stream);
}
