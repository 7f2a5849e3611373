// Linked into the emulated bench_step (run_model_emulation.sh): sets the shim's modes from the
// environment before main() and reports what the emulated device did at exit.
//   EMU_ASYNC=1           stream work runs only when the host waits for it (default 0: at once)
//   EMU_POISON=0          do not fill new memory with NaN bytes (default 1: cudaMalloc'd memory and
//                         every Buffer the unified-memory space hands out, reused blocks included,
//                         as the host space does on the CPU; see the wrapper below)
//   EMU_REVERSE=1         run every grid's blocks last to first, and each block's threads (fibers)
//                         last to first (default 0: first to last)
//   EMU_FIBERS=0          CUDA threads as std::threads (default 1: fibers, many times faster; emu.h)
//   EMU_CUBLASLT=ref      cuBLASLt is a checked reference GEMM (default none: no algorithm, so
//                         CudaBackend::Gemm falls back to the grouped kernel)
//   EMU_DEVICE_ONLY=1     (with EMU_ASYNC=1) device memory the host may not touch, as from a device pool
//                         (emu_runtime.h g_emu_device_only): every host access to it is reported with its call
//                         stack, once per site, and allowed to finish (a survey, not a failure)
//   EMU_DEVICES=N         the number of devices the process sees (default 1; several ranks on one host
//                         take device = node-local rank)
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "base/buffer.h"
#include "cublasLt.h"
#include "cublas_v2.h"
#include "emu.h"

// The link wraps kernels/cuda/unified_memory.cc's CudaUnifiedMemorySpace() (-Wl,--wrap; the factory
// calls it): the same caching allocator, but with EMU_POISON every block handed out, new or reused, is
// filled with 0xFF (NaN floats, -1 integers), so an op that reads a Buffer before anything wrote it
// shows. Only while no stream work is pending: a reused block may still be read by queued work
// (EMU_ASYNC), which the fill must not clobber; such blocks are left as they are.
extern "C" const moe::MemorySpace& __real__ZN3moe7kernels22CudaUnifiedMemorySpaceEv();
extern "C" const moe::MemorySpace& __wrap__ZN3moe7kernels22CudaUnifiedMemorySpaceEv() {
  static const moe::MemorySpace& real = __real__ZN3moe7kernels22CudaUnifiedMemorySpaceEv();
  static const moe::MemorySpace poisoned{
      "cuda_unified (emulated, poisoned)",
      [](size_t bytes) -> void* {
        void* p = real.allocate(bytes);
        if (p != nullptr && g_emu_poison && EmuIdle()) {
          EmuDeviceAccess device;  // the emulator's own fill
          std::memset(p, 0xFF, bytes);
        }
        return p;
      },
      real.deallocate, false};
  return poisoned;
}

namespace {

// EMU_DEVICE_ONLY's fault handler: a host access to a device region is reported (once per call site:
// the return addresses of the frames above the handler), its page opened until the next drain, and the
// access retried. Anything else is a real crash.
int64_t g_host_accesses = 0;
uint64_t g_sites[4096];
int g_site_count = 0;

void OnSegv(int sig, siginfo_t* info, void*) {
  char* addr = static_cast<char*>(info->si_addr);
  const auto& regions = EmuDeviceRegions();
  auto it = regions.upper_bound(addr);
  if (g_emu_device_only && it != regions.begin() && addr < std::prev(it)->first + std::prev(it)->second) {
    void* frames[32];
    const int n = backtrace(frames, 32);
    uint64_t site = 1469598103934665603ull;
    for (int i = 2; i < n && i < 8; ++i) site = (site ^ reinterpret_cast<uintptr_t>(frames[i])) * 1099511628211ull;
    bool seen = false;
    for (int i = 0; i < g_site_count && !seen; ++i) seen = g_sites[i] == site;
    if (!seen && g_site_count < 4096) {
      g_sites[g_site_count++] = site;
      char header[160];
      const int len = std::snprintf(header, sizeof header, "EMU host access %d to device memory (%p), from:\n",
                                    g_site_count, static_cast<void*>(addr));
      if (write(2, header, len) < 0) {}
      backtrace_symbols_fd(frames + 2, n - 2, 2);
    }
    ++g_host_accesses;
    char* page = addr - reinterpret_cast<uintptr_t>(addr) % 4096;
    mprotect(page, 4096, PROT_READ | PROT_WRITE);
    return;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

bool Env(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strcmp(v, "0") != 0;
}

struct EmuModes {
  EmuModes() {
    g_emu_fibers = Env("EMU_FIBERS", true);
    g_emu_defer = Env("EMU_ASYNC", false);
    g_emu_poison = Env("EMU_POISON", true);
    g_emu_reverse = Env("EMU_REVERSE", false);
    g_emu_device_only = Env("EMU_DEVICE_ONLY", false);
    if (const char* n = std::getenv("EMU_DEVICES"); n != nullptr && std::atoi(n) > 0) g_emu_device_count = std::atoi(n);
    if (g_emu_device_only) {
      void* warm[1];
      backtrace(warm, 1);  // loads what backtrace needs now, not inside the handler
      struct sigaction sa {};
      sa.sa_sigaction = OnSegv;
      sa.sa_flags = SA_SIGINFO | SA_NODEFER;
      sigaction(SIGSEGV, &sa, nullptr);
    }
    const char* lt = std::getenv("EMU_CUBLASLT");
    g_emu_cublaslt_reference = lt != nullptr && std::strcmp(lt, "ref") == 0;
    std::fprintf(stderr,
                 "EMU modes: CUDA threads as %s, stream %s, new memory %s, blocks and threads %s, "
                 "cuBLASLt %s\n",
                 g_emu_fibers ? "fibers" : "std::threads",
                 g_emu_defer ? "deferred until the host waits (EMU_ASYNC=1)" : "synchronous",
                 g_emu_poison ? "NaN-poisoned" : "as allocated",
                 g_emu_reverse ? "last to first" : "first to last",
                 g_emu_cublaslt_reference ? "checked reference GEMM (EMU_CUBLASLT=ref)"
                                          : "no algorithm (built-in GEMM fallback)");
  }
  ~EmuModes() {
    EmuDrain();
    std::fflush(stdout);  // before the program's buffered output is flushed after us
    std::fprintf(stderr,
                 "EMU totals: %lld kernel launches, %lld blocks, %lld CUDA threads; cuBLASLt: %lld "
                 "reference GEMMs (%lld strided batches), %lld heuristic queries, %lld algorithms checked for another shape, %lld "
                 "calls the real library would reject; cuBLAS: %lld grouped calls; %lld warnings\n",
                 static_cast<long long>(g_emu_launches), static_cast<long long>(g_emu_blocks),
                 static_cast<long long>(g_emu_threads),
                 static_cast<long long>(g_emu_cublaslt_matmuls), static_cast<long long>(g_emu_cublaslt_batched),
                 static_cast<long long>(g_emu_cublaslt_heuristics),
                 static_cast<long long>(g_emu_cublaslt_checks),
                 static_cast<long long>(g_emu_cublaslt_errors),
                 static_cast<long long>(g_emu_cublas_grouped_calls),
                 static_cast<long long>(g_emu_warnings));
    if (g_emu_device_only) {
      std::fprintf(stderr, "EMU device-only memory: %lld host accesses from %d call sites\n",
                   static_cast<long long>(g_host_accesses), g_site_count);
    }
  }
};
EmuModes modes;

}  // namespace
