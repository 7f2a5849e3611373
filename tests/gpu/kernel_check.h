// The GPU device check's shared declarations (kernel_check*.cc, one binary): the options, the
// Checks class that runs every group, and small host helpers. Each group's checks are defined in
// the file of its kernel family:
//   kernel_check.cc                  main, flag parsing, the group list and dispatch (Checks::Run)
//   kernel_check_elementwise.cc      elementwise, data_movement, unified_memory
//   kernel_check_rows_norm.cc        rows, rmsnorm, rope
//   kernel_check_router_loss.cc      router (with the balance loss), cross_entropy
//   kernel_check_gemm_attention.cc   gemm, grouped_gemm, attention
//   kernel_check_perf.cc             perf (timings at small_1b shapes)
// Device buffers, random inputs, comparisons and timing are in check_util.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/gpu/check_util.h"

namespace moe::gpucheck {

using kernels::AttentionShape;
using kernels::Backend;
using kernels::CpuBackend;
using kernels::CudaBackend;
using kernels::CudaBackendOptions;
using kernels::GemmMath;
using kernels::GemmProblem;
using kernels::GroupedGemmImpl;
using kernels::RopeView;
using kernels::RouterParams;
using kernels::ScoringFunc;
using kernels::TopkMethod;
using kernels::Transpose;

struct Options {
  uint64_t seed = 0;
  bool perf = true;
  std::vector<std::string> only;  // run only these groups (all when empty)
  bool list_groups = false;       // print the group names (perf included unless --no_perf) and exit
};

inline std::vector<float> RoundedBf16(std::vector<float> v) {
  for (float& x : v) x = RoundToBf16(x);
  return v;
}

class Checks {
 public:
  Checks(const Options& opt, CpuBackend& cpu, CudaBackend& gpu)
      : opt_(opt), rng_(opt.seed), cpu_(cpu), gpu_(gpu) {}

  // Runs the selected groups in order, prints the summary; returns the exit status (0: all passed).
  int Run();

  // The groups (kernel_check.cc lists them by name, in the order Run takes them).
  void Elementwise();
  void DataMovement();
  void UnifiedMemory();
  void Rows();
  void RmsNorm();
  void Rope();
  void Router();
  void CrossEntropy();
  void Gemm();
  void GroupedGemm();
  void Attention();
  void Perf();

 private:
  // kernel_check_elementwise.cc (also Elementwise, DataMovement, UnifiedMemory)
  void LongCopy();
  // kernel_check_rows_norm.cc: Rows, RmsNorm, Rope
  // kernel_check_router_loss.cc (also Router, CrossEntropy)
  void Balance();
  void DispatchOrder();       // SortByExpert, part of the router group
  void GroupedGemmBuckets();  // part of the grouped_gemm group
  // One GroupedGemm call in `impl` and the backend's arithmetic mode, on the irregular or the
  // expert-shaped set of problems, against the CPU (part of the grouped_gemm group).
  void GroupedGemmCase(GroupedGemmImpl impl, bool experts, bool ta, bool tb, float beta);
  // kernel_check_gemm_attention.cc (also Gemm, GroupedGemm, Attention)
  // A random problem with padded leading dims; buffers sized for op(A) [m,k], op(B) [k,n]. a and b go to
  // the device; a_ref and b_ref are what its arithmetic mode multiplies (their BF16 roundings in the BF16
  // mode, which must round FP32 operands to nearest even), for the CPU's FP32 reference.
  struct HostGemm {
    int64_t m, n, k, lda, ldb, ldc;
    std::vector<float> a, b, c, a_ref, b_ref;
    GemmProblem Reference() { return {m, n, k, a_ref.data(), lda, b_ref.data(), ldb, c.data(), ldc}; }
    // The m x n block of a [m, ldc] C (the padding columns are never written).
    std::vector<float> Block(const std::vector<float>& c_full) const;
  };
  HostGemm MakeGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, bool bf16_math);
  // One attention shape against the CPU: the built-in kernel, or cuDNN (a shape it refuses fails).
  void AttentionCase(const AttentionShape& s, const std::string& tag, bool cudnn);
  // kernel_check_perf.cc (also Perf)
  void PerfLine(const std::string& name, double ms, double flops, double bytes);
  void FillRandom(Dev<float>& d, int64_t n);

  Options opt_;
  Rng rng_;
  CpuBackend& cpu_;
  CudaBackend& gpu_;
  Report report_;
  std::vector<float> perf_block_;  // FillRandom's block of normals, drawn once
};

}  // namespace moe::gpucheck
