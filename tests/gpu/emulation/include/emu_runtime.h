// The CUDA runtime calls of the emulation (include/emu.h, which includes this): errors, device and
// managed memory (host memory here, with a cap, NaN poisoning and the device-only survey mode), streams
// and events (each stream its own queue, run lazily when the host waits: g_emu_defer), copies and sets,
// the device count. What kernels/cuda/cuda_backend.cc and the communicator call besides launches.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>
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
// Runs a work item, or reaches an event record.
inline void EmuRunItem(const EmuItem& item) {
  if (item.record != nullptr) {
    item.record->completed = std::max(item.record->completed.load(), item.generation);
    item.record->t = std::chrono::steady_clock::now();
  } else if (item.work) {
    EmuDeviceAccess device;
    item.work();
  }
}
inline void EmuRunHead(cudaStream_t st) {
  EmuItem item = std::move(st->queue[st->head]);
  if (item.wait != nullptr) {  // wait before taking the item off: the other stream may need ours
    EmuRunToEvent(item.wait_on, item.wait, item.generation);
    ++st->head;
  } else {
    ++st->head;
    EmuRunItem(item);
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
    EmuRunItem(item);
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
// What tests/gpu/kernel_check prints about its device.
struct cudaDeviceProp {
  char name[256];
  int multiProcessorCount, major, minor;
  size_t totalGlobalMem;
};
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  *p = cudaDeviceProp{"CPU emulation", 1, 9, 0, g_emu_device_total};
  return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 0;
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
