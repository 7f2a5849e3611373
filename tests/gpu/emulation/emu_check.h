// emu_check's shared pieces (emu_check.cc, emu_check_elementwise.cc): the random source, the failure
// count and the comparisons. One random stream for the whole run, so every check draws its inputs in
// the order main() calls them.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace emu_check {

extern std::mt19937_64 gen;
extern int failures;
std::vector<float> Normal(size_t n, float sd = 1.0f);
std::vector<float> Nan(size_t n);
// x rounded to BF16 in place; returns its bits (a saved activation's 2-byte storage).
std::vector<uint16_t> ToBits(std::vector<float>* x);
// Relative L2 within tol and no NaN where the reference has a number.
void Check(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref, double tol);
// Every element, NaN poison included, must have the reference's bits (ops that move data; padding
// the op must not write holds NaN in both).
void CheckBits(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref);

// The element-wise kernels (SwiGLU, sums of squares, BF16 rounding and packing, AdamW, ScaleMatrix).
void Elementwise(moe::kernels::CpuBackend& cpu);

}  // namespace emu_check
