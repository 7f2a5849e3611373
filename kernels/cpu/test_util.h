// Test helpers for the CPU kernels: seeded random inputs, a weighted-sum probe loss accumulated in
// FP64, and a central-finite-difference check of an analytic gradient (FP32 forward, so the
// tolerances are those of FP32: relative ~1e-2 plus an absolute floor).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moe::kernels::testing {

inline std::vector<float> RandomVector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// sum_i out[i] * probe[i] in FP64: the scalar whose gradient w.r.t. out is `probe`.
inline double ProbeLoss(const float* out, const std::vector<float>& probe) {
  double acc = 0.0;
  for (size_t i = 0; i < probe.size(); ++i) acc += static_cast<double>(out[i]) * probe[i];
  return acc;
}

struct FdOptions {
  float eps = 1e-3f;
  double rtol = 1e-2;
  double atol = 1e-3;
  size_t max_checks = 0;  // 0 = every coordinate; else a seeded random subset plus the last index
};

// Checks analytic[i] == d loss / d x[i] by central differences, perturbing x in place (restored).
inline void ExpectGradientMatches(const std::string& name, std::vector<float>& x,
                                  const std::vector<float>& analytic,
                                  const std::function<double()>& loss, const FdOptions& opt = {}) {
  ASSERT_EQ(x.size(), analytic.size()) << name;
  std::vector<size_t> idx;
  if (opt.max_checks == 0 || opt.max_checks >= x.size()) {
    for (size_t i = 0; i < x.size(); ++i) idx.push_back(i);
  } else {
    std::mt19937 gen(1234);
    std::uniform_int_distribution<size_t> dist(0, x.size() - 1);
    for (size_t c = 0; c + 1 < opt.max_checks; ++c) idx.push_back(dist(gen));
    idx.push_back(x.size() - 1);
  }
  int failures = 0;
  for (size_t i : idx) {
    const float saved = x[i];
    x[i] = saved + opt.eps;
    const double lp = loss();
    x[i] = saved - opt.eps;
    const double lm = loss();
    x[i] = saved;
    const double step =
        (static_cast<double>(saved) + opt.eps) - (static_cast<double>(saved) - opt.eps);
    const double fd = (lp - lm) / step;
    const double tol = opt.atol + opt.rtol * std::fabs(fd);
    if (std::fabs(fd - analytic[i]) > tol && ++failures <= 10) {
      ADD_FAILURE() << name << "[" << i << "]: analytic " << analytic[i] << " vs finite difference "
                    << fd;
    }
  }
  EXPECT_EQ(failures, 0) << name << ": " << failures << " of " << idx.size()
                         << " coordinates differ";
}

}  // namespace moe::kernels::testing
