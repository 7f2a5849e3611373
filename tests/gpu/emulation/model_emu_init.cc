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
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/buffer.h"
#include "cublasLt.h"
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
        if (p != nullptr && g_emu_poison && EmuQueue().empty()) std::memset(p, 0xFF, bytes);
        return p;
      },
      real.deallocate, false};
  return poisoned;
}

namespace {

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
                 "reference GEMMs, %lld heuristic queries, %lld algorithms checked for another shape, %lld "
                 "calls the real library would reject; %lld warnings\n",
                 static_cast<long long>(g_emu_launches), static_cast<long long>(g_emu_blocks),
                 static_cast<long long>(g_emu_threads),
                 static_cast<long long>(g_emu_cublaslt_matmuls),
                 static_cast<long long>(g_emu_cublaslt_heuristics),
                 static_cast<long long>(g_emu_cublaslt_checks),
                 static_cast<long long>(g_emu_cublaslt_errors),
                 static_cast<long long>(g_emu_warnings));
  }
};
EmuModes modes;

}  // namespace
