// Helpers of the GPU device check (kernel_check*.cc): device buffers, random inputs, comparisons
// against the CPU twin, and CUDA-event timing. Header-only: the check is one binary.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "kernels/cuda/cuda_check.h"

namespace moe::gpucheck {

// A device array of n elements. Every transfer synchronises the whole device, so uploads and
// downloads are ordered with the backend's own (non-blocking) stream.
template <typename T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) { MOE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), sizeof(T) * (n > 0 ? n : 1))); }
  explicit Dev(const std::vector<T>& host) : Dev(host.size()) { Upload(host); }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& host) {
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    MOE_CUDA_CHECK(cudaMemcpy(p_, host.data(), sizeof(T) * std::min(n_, host.size()),
                              cudaMemcpyHostToDevice));
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> Download() const {
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> host(n_);
    MOE_CUDA_CHECK(cudaMemcpy(host.data(), p_, sizeof(T) * n_, cudaMemcpyDeviceToHost));
    return host;
  }
  // All bits set: NaN for floats, -1 for integers. An output that still holds it was not written.
  void Poison() {
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    MOE_CUDA_CHECK(cudaMemset(p_, 0xff, sizeof(T) * (n_ > 0 ? n_ : 1)));
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// The host image of Dev::Poison: all bits set.
template <typename T>
std::vector<T> Poisoned(size_t n) {
  std::vector<T> v(n);
  std::memset(v.data(), 0xff, sizeof(T) * n);
  return v;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  std::vector<float> Uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(gen_);
    return v;
  }
  std::vector<float> Normal(size_t n, float stddev = 1.0f) {
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = d(gen_);
    return v;
  }
  std::vector<int32_t> Ints(size_t n, int32_t lo, int32_t hi) {  // [lo, hi]
    std::uniform_int_distribution<int32_t> d(lo, hi);
    std::vector<int32_t> v(n);
    for (int32_t& x : v) x = d(gen_);
    return v;
  }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

struct Diff {
  double rel_l2 = 0;      // ||got - ref|| / ||ref||
  double max_abs = 0;     // max |got - ref|
  int64_t unwritten = 0;  // NaN in got where ref is not NaN (poison left in place, or a NaN bug)
  int64_t differing = 0;  // elements whose bits differ
  int64_t count = 0;
};

// x rounded to BF16 in place; returns its bits (how a saved activation is kept in BF16 mode).
inline std::vector<uint16_t> RoundToBits(std::vector<float>* x) {
  std::vector<uint16_t> bits(x->size());
  for (size_t i = 0; i < x->size(); ++i) {
    bits[i] = moe::FloatToBf16Bits((*x)[i]);
    (*x)[i] = moe::Bf16BitsToFloat(bits[i]);
  }
  return bits;
}

inline Diff Compare(const std::vector<float>& got, const std::vector<float>& ref) {
  Diff d;
  d.count = static_cast<int64_t>(ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const float g = got[i], r = ref[i];
    if (std::memcmp(&g, &r, sizeof(float)) != 0) ++d.differing;
    if (std::isnan(r)) continue;
    if (std::isnan(g)) {
      ++d.unwritten;
      continue;
    }
    const double e = static_cast<double>(g) - r;
    num += e * e;
    den += static_cast<double>(r) * r;
    d.max_abs = std::max(d.max_abs, std::fabs(e));
  }
  d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

// One PASS/FAIL line per check, counted.
class Report {
 public:
  void Line(bool pass, const std::string& name, const std::string& detail) {
    std::printf("%s  %-34s %s\n", pass ? "PASS" : "FAIL", name.c_str(), detail.c_str());
    std::fflush(stdout);
    if (!pass) ++failures_;
    ++checks_;
  }
  // Pass iff nothing unwritten and rel_l2 <= tol.
  bool Check(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref,
             double tol, const std::string& what = "") {
    const Diff d = Compare(got, ref);
    return Record(name, d, d.unwritten == 0 && d.rel_l2 <= tol, tol, what);
  }
  // Pass iff every element has the reference's bits, NaN poison included: for ops that move data,
  // where an element written outside the output region (padding) must show too.
  bool CheckBits(const std::string& name, const std::vector<float>& got,
                 const std::vector<float>& ref) {
    const Diff d = Compare(got, ref);
    return Record(name, d, d.differing == 0, 0.0, "(bit-exact, poison outside the output kept)");
  }
  int failures() const { return failures_; }
  int checks() const { return checks_; }

 private:
  bool Record(const std::string& name, const Diff& d, bool pass, double tol,
              const std::string& what) {
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "rel_l2=%.2e (tol %.0e) max_abs=%.2e bits_differ=%lld/%lld unwritten=%lld %s",
                  d.rel_l2, tol, d.max_abs, static_cast<long long>(d.differing),
                  static_cast<long long>(d.count), static_cast<long long>(d.unwritten),
                  what.c_str());
    Line(pass, name, buf);
    return pass;
  }

  int failures_ = 0, checks_ = 0;
};

// Median time in milliseconds of `reps` runs of fn (after `warmup` runs), by CUDA events on stream.
template <typename Fn>
double TimeMs(cudaStream_t stream, int warmup, int reps, Fn fn) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start, stop;
  MOE_CUDA_CHECK(cudaEventCreate(&start));
  MOE_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    MOE_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    MOE_CUDA_CHECK(cudaEventRecord(stop, stream));
    MOE_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    MOE_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

inline std::string Fmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string Fmt(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

}  // namespace moe::gpucheck
