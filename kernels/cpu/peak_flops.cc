// MeasureGemmFlops: times repeated square oneDNN matmuls (the CPU backend's GEMM primitive).
#include "kernels/cpu/peak_flops.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace moe::kernels {

double MeasureGemmFlops(int64_t n, double min_seconds) {
  if (n <= 0) return 0.0;
  const size_t size = static_cast<size_t>(n * n);
  std::vector<float> a(size), b(size), c(size, 0.0f);
  for (size_t i = 0; i < size; ++i) {
    a[i] = static_cast<float>(i % 7) * 0.125f - 0.375f;
    b[i] = static_cast<float>(i % 5) * 0.25f - 0.5f;
  }
  using dnnl::memory;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    const memory::desc md({n, n}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(md, md, md), engine));
    memory ma(md, engine, a.data()), mb(md, engine, b.data()), mc(md, engine, c.data());
    auto run = [&] {
      mm.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
      stream.wait();
    };
    run();  // warm-up: thread pool start, page faults
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    int64_t calls = 0;
    double elapsed = 0.0;
    do {
      run();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < min_seconds);
    const double flops_per_call =
        2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
    return flops_per_call * static_cast<double>(calls) / elapsed;
  } catch (const dnnl::error& e) {
    std::fprintf(stderr, "MeasureGemmFlops: oneDNN matmul failed: %s\n", e.what());
    std::abort();
  }
}

}  // namespace moe::kernels
