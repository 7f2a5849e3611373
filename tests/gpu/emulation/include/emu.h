// CPU emulation of the CUDA kernel execution model, for checking kernel LOGIC without a GPU
// (tests/gpu/emulation/README.md): one std::thread per CUDA thread (or one fiber, g_emu_fibers),
// blocks run one after another, __syncthreads/__syncwarp are barriers, warp shuffles go through a
// per-warp exchange array, __shared__ arrays are statics (one block at a time), dynamic shared memory
// is filled with garbage. Launches are rewritten to EmuLaunch(kernel, grid, block, smem, stream,
// args...) by the scripts. Also the runtime calls the backend class makes (streams, events, device
// and pinned memory, async copies), for run_model_emulation.sh. Every mode that run_emulation.sh
// does not ask for is off by default, so emu_check runs as it always has.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct uint3_ { unsigned x, y, z; };
inline thread_local uint3_ threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __shared__ static
#define __grid_constant__
#define __align__(n)

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
struct CUstream_st;
typedef CUstream_st* cudaStream_t;
inline cudaError_t cudaGetLastError() { return 0; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu"; }
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T, cudaFuncAttribute, int) { return 0; }

// Managed memory is host memory here. g_emu_managed_limit caps the bytes held at once, so a test can
// make cudaMallocManaged fail (an emulated full GPU); g_emu_managed_sizes tracks what is held.
constexpr cudaError_t cudaErrorMemoryAllocation = 2;
enum cudaMemAttachFlags { cudaMemAttachGlobal = 1 };
inline size_t g_emu_managed_limit = SIZE_MAX;
inline size_t g_emu_managed_bytes = 0;
inline std::unordered_map<void*, size_t> g_emu_managed_sizes;
// g_emu_poison (off unless a harness turns it on; the whole-model run does): new device memory
// (cudaMalloc, cudaMallocManaged) is filled with 0xFF bytes, NaN as floats, so whatever reads memory
// nothing wrote yields NaN instead of passing by luck on zero pages.
inline bool g_emu_poison = false;

// g_emu_device_only (EMU_DEVICE_ONLY, with EMU_ASYNC): cudaMalloc'd and managed memory behave as memory
// from a device pool would: the host may not touch it. It is mapped inaccessible except while stream
// work runs (EmuDrain, or a launch when not deferred) or the emulator itself fills it, so a host access
// faults; model_emu_init.cc's handler reports where (once per call site), opens that page until the
// next drain and lets the access finish. A survey of what a switch from unified memory to a device
// pool must change, not a pass/fail check.
inline bool g_emu_device_only = false;
inline int g_emu_device_open = 0;  // nesting depth of EmuDeviceAccess scopes
inline std::map<char*, size_t>& EmuDeviceRegions() {  // base -> bytes (whole pages)
  static auto* regions = new std::map<char*, size_t>;  // never destroyed: the exit's drain reads it
  return *regions;
}
// While alive, device memory is accessible (the emulated device is working on it).
struct EmuDeviceAccess {
  EmuDeviceAccess() {
    if (g_emu_device_only && g_emu_device_open++ == 0) Protect(PROT_READ | PROT_WRITE);
  }
  ~EmuDeviceAccess() {
    if (g_emu_device_only && --g_emu_device_open == 0) Protect(PROT_NONE);
  }
  static void Protect(int prot) {
    for (auto& [base, bytes] : EmuDeviceRegions()) mprotect(base, bytes, prot);
  }
};

// ---- Streams and events (see run_model_emulation.sh). ----
// Synchronous unless g_emu_defer: a launch, an async copy or set and an event record run at once
// (emu_check relies on it). With g_emu_defer (the whole-model run's EMU_ASYNC=1), each stream keeps its
// own queue of work, event records and event waits, and work runs only when the host waits for it,
// and then only as much as that wait needs: cudaStreamSynchronize/Query runs that stream's queue,
// cudaEventSynchronize/Query the queue holding the event's last record up to it, and an event wait at a
// queue's head first runs the recording stream up to the record. Everything runs at
// cudaDeviceSynchronize, cudaMemcpy, cudaMemset, cudaFree and cudaFreeHost, and work on the legacy null
// stream runs at once after everything before it. This is the laziest schedule a GPU may take, so host
// code that reads a buffer an op writes, or writes one an op still reads, without synchronising first
// shows up, and so does work on one stream that uses another's results without an event between them
// (it runs before the other stream's work has).
inline bool g_emu_defer = false;
inline bool g_emu_reverse = false;  // blocks last to first; fibers also threads last to first
inline int64_t g_emu_launches = 0, g_emu_blocks = 0, g_emu_threads = 0;  // kernels run so far
// An event: how many times it was recorded, and how many of those records the device has reached.
// The counts are atomic for cudaEventQuery from other threads (a watchdog), which only reads them: the
// emulated device runs on the host thread, when that thread waits.
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
  std::atomic<int64_t> recorded{0}, completed{0};
  cudaStream_t stream = nullptr;  // where its last record was enqueued
};
inline const std::thread::id g_emu_host_thread = std::this_thread::get_id();
typedef CUevent_st* cudaEvent_t;
struct EmuItem {
  std::function<void()> work;        // or:
  cudaEvent_t record = nullptr;      // the device reaches record number `generation` of this event
  cudaEvent_t wait = nullptr;        // the queue waits until this event's record `generation`
  cudaStream_t wait_on = nullptr;    // (enqueued on this stream)
  int64_t generation = 0;
};
struct CUstream_st {
  int id;
  std::vector<EmuItem> queue;  // pending, in order
  size_t head = 0;
};
inline std::vector<cudaStream_t>& EmuStreams() {  // the live streams, in creation order
  static auto* streams = new std::vector<cudaStream_t>;  // never destroyed: the exit's drain reads it
  return *streams;
}
inline bool EmuIdle() {
  for (cudaStream_t st : EmuStreams()) {
    if (st->head < st->queue.size()) return false;
  }
  return true;
}
inline void EmuRunHead(cudaStream_t st);
// Runs `st`'s queue until the event has reached record `generation`.
inline void EmuRunToEvent(cudaStream_t st, cudaEvent_t e, int64_t generation) {
  if (e->completed >= generation) return;
  EmuDeviceAccess device;  // once for the run (each item's own scope is then nested: no mprotect)
  while (e->completed < generation) {
    if (st->head >= st->queue.size()) {
      std::fprintf(stderr, "EMU error: an event wait that no enqueued record can satisfy\n");
      std::abort();
    }
    EmuRunHead(st);
  }
}
inline void EmuRunHead(cudaStream_t st) {
  EmuItem item = std::move(st->queue[st->head]);
  if (item.wait != nullptr) {  // wait before taking the item off: the other stream may need ours
    EmuRunToEvent(item.wait_on, item.wait, item.generation);
    ++st->head;
  } else {
    ++st->head;
    if (item.record != nullptr) {
      item.record->completed = std::max(item.record->completed.load(), item.generation);
      item.record->t = std::chrono::steady_clock::now();
    } else {
      EmuDeviceAccess device;
      item.work();
    }
  }
  if (st->head == st->queue.size()) {
    st->queue.clear();
    st->head = 0;
  }
}
inline void EmuRunStream(cudaStream_t st) {
  if (st == nullptr || st->head >= st->queue.size()) return;
  EmuDeviceAccess device;
  while (st->head < st->queue.size()) EmuRunHead(st);
}
// Everything enqueued, stream by stream (newest stream first with g_emu_reverse).
inline void EmuDrain() {
  if (EmuIdle()) return;
  EmuDeviceAccess device;
  auto& streams = EmuStreams();
  for (size_t i = 0; i < streams.size(); ++i) EmuRunStream(streams[g_emu_reverse ? streams.size() - 1 - i : i]);
}
inline void EmuEnqueueItem(cudaStream_t st, EmuItem item) {
  if (!g_emu_defer || st == nullptr) {  // at once (the null stream: after everything before it)
    EmuDrain();
    if (item.record != nullptr) {
      item.record->completed = std::max(item.record->completed.load(), item.generation);
      item.record->t = std::chrono::steady_clock::now();
    } else if (item.work) {
      EmuDeviceAccess device;
      item.work();
    }
    return;
  }
  st->queue.push_back(std::move(item));
}
inline void EmuEnqueue(cudaStream_t st, std::function<void()> work) {
  EmuItem item;
  item.work = std::move(work);
  EmuEnqueueItem(st, std::move(item));
}

inline cudaError_t cudaMallocManaged(void** p, size_t bytes, unsigned = cudaMemAttachGlobal) {
  if (g_emu_managed_bytes + bytes > g_emu_managed_limit) return cudaErrorMemoryAllocation;
  if (g_emu_device_only) {
    const size_t mapped = (bytes + 4095) / 4096 * 4096;
    void* m = mmap(nullptr, mapped > 0 ? mapped : 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
    *p = m;
    EmuDeviceRegions()[static_cast<char*>(m)] = mapped > 0 ? mapped : 4096;
    if (g_emu_poison) std::memset(*p, 0xFF, bytes);
    if (g_emu_device_open == 0) mprotect(m, mapped > 0 ? mapped : 4096, PROT_NONE);
  } else {
    *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (*p == nullptr) return cudaErrorMemoryAllocation;
    if (g_emu_poison) std::memset(*p, 0xFF, bytes);
  }
  g_emu_managed_sizes[*p] = bytes;
  g_emu_managed_bytes += bytes;
  return cudaSuccess;
}
// The emulated device's memory, as cudaMemGetInfo reports it (free: less the managed bytes held).
inline size_t g_emu_device_total = size_t{80} << 30;
inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = g_emu_device_total;
  *free_bytes = g_emu_device_total > g_emu_managed_bytes ? g_emu_device_total - g_emu_managed_bytes : 0;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  EmuDrain();  // cudaFree waits for the device
  auto it = g_emu_managed_sizes.find(p);
  if (it != g_emu_managed_sizes.end()) {
    g_emu_managed_bytes -= it->second;
    g_emu_managed_sizes.erase(it);
  }
  auto region = EmuDeviceRegions().find(static_cast<char*>(p));
  if (region != EmuDeviceRegions().end()) {
    munmap(region->first, region->second);
    EmuDeviceRegions().erase(region);
    return cudaSuccess;
  }
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  EmuDrain();
  return cudaSuccess;
}

// ---- What the backend class (kernels/cuda/cuda_backend.cc) calls besides launches: one device. ----
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorInvalidDevice = 101;
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
// The devices this process sees (EMU_DEVICES; several ranks on one host each take the node-local
// rank's). They are all the same host memory and queue: only the numbering is emulated.
inline int g_emu_device_count = 1;
inline thread_local int g_emu_current_device = 0;
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = g_emu_device_count;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= g_emu_device_count) return cudaErrorInvalidDevice;
  g_emu_current_device = d;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = g_emu_current_device;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int next = 1;
  *s = new CUstream_st{next++, {}, 0};
  EmuStreams().push_back(*s);
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  EmuRunStream(s);  // its pending work still completes
  auto& streams = EmuStreams();
  streams.erase(std::find(streams.begin(), streams.end(), s));
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s == nullptr) {
    EmuDrain();
  } else {
    EmuRunStream(s);
  }
  return cudaSuccess;
}
constexpr cudaError_t cudaErrorNotReady = 600;
inline cudaError_t cudaStreamQuery(cudaStream_t s) {  // the host asks: the work runs now
  return cudaStreamSynchronize(s);
}
// Device memory is host memory, as managed memory (so the poison and the byte count apply).
inline cudaError_t cudaMalloc(void** p, size_t bytes) { return cudaMallocManaged(p, bytes); }
inline cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p == nullptr ? cudaErrorMemoryAllocation : cudaSuccess;
}
inline cudaError_t cudaFreeHost(void* p) {
  EmuDrain();
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
  if (kind == cudaMemcpyHostToDevice) {
    // A copy from pageable host memory is staged before the call returns (the caller may free or
    // reuse its buffer at once); the device side still lands in stream order.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                      static_cast<const char*>(src) + bytes);
    EmuEnqueue(stream, [=] { std::memcpy(dst, staged->data(), bytes); });
    return cudaSuccess;
  }
  EmuEnqueue(stream, [=] { std::memcpy(dst, src, bytes); });
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  cudaMemcpyAsync(dst, src, bytes, kind);
  EmuDrain();
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr) {
  EmuEnqueue(stream, [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  cudaMemsetAsync(p, value, bytes);
  EmuDrain();
  return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st{};
  return cudaSuccess;
}
constexpr unsigned cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
// The queue waits for the event's last record enqueued before this call (none: no wait), as CUDA's.
inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned = 0) {
  if (e->recorded == e->completed || !g_emu_defer) return cudaSuccess;
  EmuItem item;
  item.wait = e;
  item.wait_on = e->stream;
  item.generation = e->recorded;
  EmuEnqueueItem(s, std::move(item));
  return cudaSuccess;
}
// Not freed: queued waits may still point at it (CUDA lets a destroyed event's pending work finish).
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr) {
  EmuItem item;
  item.record = e;
  item.generation = ++e->recorded;
  e->stream = stream;
  EmuEnqueueItem(stream, std::move(item));
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (e->recorded != e->completed) EmuRunToEvent(e->stream, e, e->recorded);
  return cudaSuccess;
}
inline cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (std::this_thread::get_id() != g_emu_host_thread) {  // another thread only looks
    return e->completed.load() >= e->recorded.load() ? cudaSuccess : cudaErrorNotReady;
  }
  return cudaEventSynchronize(e);
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  *ms = std::chrono::duration<float, std::milli>(stop->t - start->t).count();
  return cudaSuccess;
}

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void Wait() {
    std::unique_lock<std::mutex> l(m_);
    const int gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(l, [&] { return gen_ != gen; });
    }
  }
 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0, gen_ = 0;
};

inline Barrier* g_block_barrier = nullptr;
inline std::vector<Barrier*> g_warp_barriers;
inline std::vector<uint64_t> g_shfl;  // [warps * 32]
inline std::vector<unsigned char> g_dyn_smem;

// ---- The fiber engine (g_emu_fibers; the whole-model run uses it, emu_check does not unless built
// with -DEMU_FIBERS_DEFAULT=1). Same model, far cheaper: a block's CUDA threads are fibers on the
// launching thread instead of std::threads (a 14-instruction stack switch on x86-64, ucontext
// elsewhere). Fibers run in thread order (g_emu_reverse: reversed), each until it finishes or
// reaches a barrier, so a missing barrier shows deterministically: a thread reads what the threads
// before it wrote and not what those after it will write. A warp's barrier (__syncwarp, each half of
// a shuffle) opens when every live lane of the warp waits at it, the block's (__syncthreads) when
// every live thread of the block does. A barrier that some threads of the block (or warp) have already left by returning is
// reported (EMU warning; on the GPU that is undefined), and a block where nothing can run is a
// deadlock (EMU error, abort): the std::thread engine would hang there.
#ifndef EMU_FIBERS_DEFAULT
#define EMU_FIBERS_DEFAULT 0
#endif
inline bool g_emu_fibers = EMU_FIBERS_DEFAULT;
inline int64_t g_emu_warnings = 0;
#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores its pointer in *save_sp, switches
// to load_sp and restores that stack's registers. Weak: every translation unit defines it.
extern "C" void emu_fiber_swap(void** save_sp, void* load_sp);
__asm__(R"(
  .pushsection .text
  .weak emu_fiber_swap
  .type emu_fiber_swap, @function
emu_fiber_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_fiber_swap, .-emu_fiber_swap
  .popsection
)");
struct EmuContext {
  void* sp = nullptr;
};
inline void EmuSwitch(EmuContext* from, EmuContext* to) { emu_fiber_swap(&from->sp, to->sp); }
// A fresh context that enters `entry` (which must never return) on the given stack.
inline void EmuStart(EmuContext* c, char* stack, size_t bytes, void (*entry)()) {
  void** sp = reinterpret_cast<void**>((reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t{15});
  *--sp = nullptr;                         // entry's return address (it never returns)
  *--sp = reinterpret_cast<void*>(entry);  // emu_fiber_swap's ret lands here
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
  c->sp = sp;
}
#else
struct EmuContext {
  ucontext_t uc;
};
inline void EmuSwitch(EmuContext* from, EmuContext* to) { swapcontext(&from->uc, &to->uc); }
inline void EmuStart(EmuContext* c, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = bytes;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, entry, 0);
}
#endif
struct EmuFibers {
  enum State : unsigned char { kReady, kWaitBlock, kWaitWarp, kDone };
  static constexpr size_t kStackBytes = 256 << 10;
  EmuContext sched;
  std::vector<std::unique_ptr<EmuContext>> ctx;  // stable addresses (a ucontext points into itself)
  std::vector<char*> stacks;                     // mmap'd once, reused by every block
  std::vector<State> state;
  int current = -1;
  std::function<void()> body;  // kernel(args...) for the current threadIdx
  void Grow(int nt) {
    while (static_cast<int>(ctx.size()) < nt) {
      void* st = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (st == MAP_FAILED) {
        std::fprintf(stderr, "EMU error: cannot map a fiber stack\n");
        std::abort();
      }
      stacks.push_back(static_cast<char*>(st));
      ctx.push_back(std::make_unique<EmuContext>());
    }
  }
  void Yield(State s) {
    const int me = current;
    state[me] = s;
    EmuSwitch(ctx[me].get(), &sched);
  }
};
inline EmuFibers* g_emu_fb = nullptr;  // non-null while a fiber block runs

inline void __syncthreads() {
  if (g_emu_fb != nullptr) {
    g_emu_fb->Yield(EmuFibers::kWaitBlock);
    return;
  }
  g_block_barrier->Wait();
}
inline void EmuWarpWait(int w) {
  if (g_emu_fb != nullptr) {
    g_emu_fb->Yield(EmuFibers::kWaitWarp);
    return;
  }
  g_warp_barriers[w]->Wait();
}
inline void __syncwarp(unsigned = 0xffffffffu) { EmuWarpWait(threadIdx.x / 32); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int off) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  g_shfl[w * 32 + lane] = bits;
  EmuWarpWait(w);
  const uint64_t other = g_shfl[w * 32 + (lane ^ off)];
  EmuWarpWait(w);
  T r;
  std::memcpy(&r, &other, sizeof(T));
  return r;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
#include <math.h>

inline void EmuFiberEntry() {
  EmuFibers& fb = *g_emu_fb;
  fb.body();
  fb.state[fb.current] = EmuFibers::kDone;
  EmuSwitch(fb.ctx[fb.current].get(), &fb.sched);
  std::abort();  // a finished fiber is never resumed
}

// One block of nt threads as fibers (see EmuFibers).
inline void EmuRunBlockFibers(int nt, unsigned bx, unsigned by, std::function<void()> body) {
  static EmuFibers fb;
  fb.Grow(nt);
  fb.body = std::move(body);
  fb.state.assign(nt, EmuFibers::kReady);
  for (int t = 0; t < nt; ++t) {
    EmuStart(fb.ctx[t].get(), fb.stacks[t], EmuFibers::kStackBytes, EmuFiberEntry);
  }
  g_emu_fb = &fb;
  blockIdx = {bx, by, 0};
  const int warps = (nt + 31) / 32;
  bool warned = false;
  auto warn = [&](const char* what) {
    if (warned) return;
    warned = true;
    ++g_emu_warnings;
    std::fprintf(stderr, "EMU warning: %s (block %u,%u of %d threads)\n", what, bx, by, nt);
  };
  for (;;) {
    for (int i = 0; i < nt; ++i) {
      const int t = g_emu_reverse ? nt - 1 - i : i;
      if (fb.state[t] != EmuFibers::kReady) continue;
      fb.current = t;
      threadIdx = {static_cast<unsigned>(t), 0, 0};
      EmuSwitch(&fb.sched, fb.ctx[t].get());
    }
    // Everyone is done or waiting: open the barriers that are complete.
    bool released = false, any_live = false;
    for (int w = 0; w < warps; ++w) {
      const int lo = 32 * w, hi = std::min(nt, lo + 32);
      int waiting = 0, done = 0;
      for (int t = lo; t < hi; ++t) {
        waiting += fb.state[t] == EmuFibers::kWaitWarp;
        done += fb.state[t] == EmuFibers::kDone;
      }
      if (waiting > 0 && waiting + done == hi - lo) {
        if (done > 0) warn("warp barrier or shuffle with lanes that have returned");
        for (int t = lo; t < hi; ++t) {
          if (fb.state[t] == EmuFibers::kWaitWarp) fb.state[t] = EmuFibers::kReady;
        }
        released = true;
      }
    }
    if (!released) {
      int waiting = 0, done = 0;
      for (int t = 0; t < nt; ++t) {
        waiting += fb.state[t] == EmuFibers::kWaitBlock;
        done += fb.state[t] == EmuFibers::kDone;
      }
      any_live = done < nt;
      if (waiting > 0 && waiting + done == nt) {
        if (done > 0) warn("__syncthreads with threads that have returned");
        for (int t = 0; t < nt; ++t) {
          if (fb.state[t] == EmuFibers::kWaitBlock) fb.state[t] = EmuFibers::kReady;
        }
        released = true;
      }
    }
    if (released) continue;
    if (!any_live) break;
    std::fprintf(stderr, "EMU error: deadlock in block %u,%u: threads wait at different barriers\n",
                 bx, by);
    std::abort();
  }
  g_emu_fb = nullptr;
  fb.body = nullptr;
}

template <typename K, typename... A>
void EmuRunGrid(K kernel, dim3 grid, dim3 block, size_t smem, A... args) {
  gridDim = grid;
  blockDim = block;
  const int nt = block.x;
  const int warps = (nt + 31) / 32;
  ++g_emu_launches;
  g_emu_blocks += static_cast<int64_t>(grid.x) * grid.y;
  g_emu_threads += static_cast<int64_t>(grid.x) * grid.y * nt;
  g_dyn_smem.assign(smem + 16, 0xCD);  // garbage, like real shared memory
  for (unsigned iy = 0; iy < grid.y; ++iy) {
    for (unsigned ix = 0; ix < grid.x; ++ix) {
      const unsigned by = g_emu_reverse ? grid.y - 1 - iy : iy;
      const unsigned bx = g_emu_reverse ? grid.x - 1 - ix : ix;
      if (g_emu_fibers) {
        g_shfl.assign(warps * 32, 0);
        EmuRunBlockFibers(nt, bx, by, [&] { kernel(args...); });
        continue;
      }
      Barrier bb(nt);
      g_block_barrier = &bb;
      std::vector<Barrier*> wb;
      for (int w = 0; w < warps; ++w) wb.push_back(new Barrier(32));
      g_warp_barriers = wb;
      g_shfl.assign(warps * 32, 0);
      std::vector<std::thread> th;
      for (int t = 0; t < nt; ++t) {
        th.emplace_back([&, t] {
          threadIdx = {static_cast<unsigned>(t), 0, 0};
          blockIdx = {bx, by, 0};
          kernel(args...);
        });
      }
      for (auto& x : th) x.join();
      for (auto* b : wb) delete b;
    }
  }
}

// A launch on the stream: runs now, or when the host next waits (g_emu_defer; the arguments are
// copied, as the launch copies kernel parameters).
template <typename K, typename... A>
void EmuLaunch(K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A... args) {
  if (!g_emu_defer) {
    EmuRunGrid(kernel, grid, block, smem, args...);
    return;
  }
  EmuEnqueue(stream, [=] { EmuRunGrid(kernel, grid, block, smem, args...); });
}
