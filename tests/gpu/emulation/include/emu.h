// CPU emulation of the CUDA kernel execution model, for checking kernel LOGIC without a GPU
// (tests/gpu/emulation/README.md): one std::thread per CUDA thread (or one fiber, g_emu_fibers),
// blocks run one after another, __syncthreads/__syncwarp are barriers, warp shuffles go through a
// per-warp exchange array, __shared__ arrays are statics (one block at a time), dynamic shared memory
// is filled with garbage. Launches are rewritten to EmuLaunch(kernel, grid, block, smem, stream,
// args...) by the scripts. The runtime calls the backend class makes (streams, events, device and
// pinned memory, async copies) are in emu_runtime.h, included below. Every mode that run_emulation.sh
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

#include "emu_runtime.h"  // errors, memory, streams and events

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
