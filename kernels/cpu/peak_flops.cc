// MeasureMatmulPeak: times oneDNN matmuls (the CPU backend's matrix product) in FP32 or BF16, the latter
// where this CPU has a BF16 matmul (cpu_internal::Bf16MatmulSupported, as the backend decides).
#include "kernels/cpu/peak_flops.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/cpu_util.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace moe::kernels {

MatmulPrecision EffectiveMatmulPrecision(MatmulPrecision requested) {
  return requested == MatmulPrecision::kBf16 && !cpu_internal::Bf16MatmulSupported() ? MatmulPrecision::kFp32
                                                                                      : requested;
}

double MeasureMatmulPeak(MatmulPrecision precision, int64_t m, int64_t k, int64_t n, int trials,
                         double min_seconds) {
  if (m <= 0 || k <= 0 || n <= 0 || trials <= 0) return 0.0;
  using dnnl::memory;
  const MatmulPrecision timed = EffectiveMatmulPrecision(precision);
  if (timed != precision) {
    std::fprintf(stderr, "MeasureMatmulPeak: no oneDNN BF16 matmul on this CPU; BF16 products run as FP32 "
                         "here (BF16-rounded operands), so the BF16 peak is the FP32 matmul's\n");
  }
  const memory::data_type in_type =
      timed == MatmulPrecision::kBf16 ? memory::data_type::bf16 : memory::data_type::f32;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    const memory::desc a_md({m, k}, in_type, memory::format_tag::ab);
    const memory::desc b_md({k, n}, in_type, memory::format_tag::ab);
    const memory::desc c_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), engine));
    // oneDNN-owned buffers of the right element size; the values do not matter for the timing but
    // are set so that no denormals or NaNs slow anything down.
    memory ma(a_md, engine), mb(b_md, engine), mc(c_md, engine);
    for (memory* x : {&ma, &mb}) {
      const size_t bytes = x->get_desc().get_size();
      std::vector<unsigned char> pattern(bytes);
      for (size_t i = 0; i < bytes; ++i) pattern[i] = (i % 2 == 1) ? 0x3F : 0x00;  // ~0.5 in BF16/FP32 halves
      std::copy(pattern.begin(), pattern.end(), static_cast<unsigned char*>(x->get_data_handle()));
    }
    auto run = [&] {
      mm.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
      stream.wait();
    };
    run();  // warm-up: thread pool start, page faults
    const double flops_per_call = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    double best = 0.0;
    using Clock = std::chrono::steady_clock;
    for (int t = 0; t < trials; ++t) {
      const auto start = Clock::now();
      int64_t calls = 0;
      double elapsed = 0.0;
      do {
        run();
        ++calls;
        elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      } while (elapsed < min_seconds);
      best = std::max(best, flops_per_call * static_cast<double>(calls) / elapsed);
    }
    return best;
  } catch (const dnnl::error& e) {
    std::fprintf(stderr, "MeasureMatmulPeak: oneDNN matmul failed: %s\n", e.what());
    std::abort();
  }
}

}  // namespace moe::kernels
