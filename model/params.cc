#include "model/params.h"

#include <algorithm>

#include <cmath>

#include "base/bf16.h"

namespace moe::model {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a: a stable hash of the tensor name (std::hash is not stable across libraries).
uint64_t NameHash(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

double ToUnitOpen(uint64_t bits) {  // (0, 1)
  return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace

int64_t Param::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t Param::GlobalIndex(int64_t i) const {
  if (shard.dim < 0) return i;
  const int64_t cols = shape[1];
  const int64_t r = i / cols, c = i % cols;
  if (shard.dim == 0) return (shard.offset + r) * cols + c;
  return r * shard.global_shape[1] + shard.offset + c;
}

double SeededNormal(uint64_t seed, const std::string& name, int64_t index) {
  const uint64_t key = SplitMix64(seed ^ SplitMix64(NameHash(name)));
  const uint64_t r1 = SplitMix64(key ^ SplitMix64(2 * static_cast<uint64_t>(index)));
  const uint64_t r2 = SplitMix64(key ^ SplitMix64(2 * static_cast<uint64_t>(index) + 1));
  // Box-Muller, one sample per element.
  return std::sqrt(-2.0 * std::log(ToUnitOpen(r1))) * std::cos(2.0 * M_PI * ToUnitOpen(r2));
}

Param* ParamStore::Add(const std::string& name, std::vector<int64_t> shape, ParamKind kind,
                       ParamSync sync, ShardSpec shard) {
  auto p = std::make_unique<Param>();
  p->name = name;
  p->shape = std::move(shape);
  p->kind = kind;
  p->sync = sync;
  p->shard = std::move(shard);
  const int64_t n = p->numel();
  p->master.resize(n);  // the working copy is allocated by RefreshWorking, in the form the mode keeps
  if (p->trainable()) p->grad.resize(n);
  Param* raw = p.get();
  by_name_[name] = raw;
  params_.push_back(std::move(p));
  return raw;
}

Param* ParamStore::Find(const std::string& name) {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const Param* ParamStore::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

void ParamStore::ForEach(const std::function<void(Param&)>& fn) {
  for (auto& p : params_) fn(*p);
}

void ParamStore::ForEach(const std::function<void(const Param&)>& fn) const {
  for (const auto& p : params_) fn(*p);
}

void ParamStore::Initialize(uint64_t seed, double init_std, kernels::Backend& ops) {
  std::vector<float> values;
  for (auto& p : params_) {
    const int64_t n = p->numel();
    values.resize(static_cast<size_t>(n));
    switch (p->kind) {
      case ParamKind::kMatrix:
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          values[i] = static_cast<float>(init_std * SeededNormal(seed, p->name, p->GlobalIndex(i)));
        }
        break;
      case ParamKind::kNorm:
        std::fill(values.begin(), values.end(), 1.0f);
        break;
      case ParamKind::kBuffer:
        std::fill(values.begin(), values.end(), 0.0f);
        break;
    }
    ops.CopyFromHost(values.data(), sizeof(float) * values.size(), p->master.data());
  }
}

void ParamStore::RefreshWorking(bool bf16, kernels::Backend& ops) {
  for (auto& p : params_) {
    // Buffers (the correction bias) stay FP32 in both modes (docs/model.md "Numerics").
    const bool round = bf16 && p->trainable();
    const bool bits = round && p->kind == ParamKind::kMatrix;
    const int64_t n = p->numel();
    if (bits) {
      p->working.reset();
      p->working_bf16.resize(n);
      ops.PackBf16(p->master.data(), n, p->working_bf16.data());
    } else {
      p->working_bf16.reset();
      p->working.resize(n);
      if (n > 0) ops.Copy(p->master.data(), p->working.data(), n);
      if (round) ops.RoundToBf16(p->working.data(), n);
    }
  }
}

kernels::GemmProblem WithWorkingB(kernels::GemmProblem p, const Param& w, int64_t offset) {
  if (w.working_bits() != nullptr) {
    p.b_bf16 = w.working_bits() + offset;
  } else {
    p.b = w.working.data() + offset;
  }
  return p;
}

std::vector<float> Param::WorkingValues(kernels::Backend& ops) const {
  const int64_t n = numel();
  std::vector<float> values(static_cast<size_t>(n));
  if (working_bf16.empty()) {
    ops.CopyToHost(working.data(), sizeof(float) * values.size(), values.data());
    return values;
  }
  std::vector<uint16_t> bits(static_cast<size_t>(n));
  ops.CopyToHost(working_bf16.data(), sizeof(uint16_t) * bits.size(), bits.data());
  for (int64_t i = 0; i < n; ++i) values[i] = Bf16BitsToFloat(bits[i]);
  return values;
}

float Param::WorkingValue(int64_t i) const {
  return working_bf16.empty() ? working[i] : Bf16BitsToFloat(working_bf16[i]);
}

int64_t Param::LocalIndex(int64_t g) const {
  if (shard.dim < 0) return g;
  const int64_t cols = shard.global_shape[1];
  const int64_t r = g / cols, c = g % cols;
  if (shard.dim == 0) {
    return r >= shard.offset && r < shard.offset + shape[0] ? (r - shard.offset) * cols + c : -1;
  }
  return c >= shard.offset && c < shard.offset + shape[1] ? r * shape[1] + (c - shard.offset) : -1;
}

void Param::SetMasterFromGlobal(const std::vector<float>& global, kernels::Backend& ops) {
  std::vector<float> local(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) local[i] = global[GlobalIndex(i)];
  ops.CopyFromHost(local.data(), sizeof(float) * local.size(), master.data());
}

double GradNorm(kernels::Backend& ops, const Param& p) {
  return std::sqrt(ops.SumSquares(p.grad.data(), p.grad.size()));
}

double LocalGradNorm(kernels::Backend& ops, const ParamStore& params) {
  double sum = 0.0;
  params.ForEach([&](const Param& p) {
    if (p.trainable()) sum += ops.SumSquares(p.grad.data(), p.grad.size());
  });
  return std::sqrt(sum);
}

float* Param::GradForAccumulate(kernels::Backend& ops) {
  if (grad_unwritten) ops.Fill(grad.data(), grad.size(), 0.0f);
  grad_unwritten = false;
  return grad.data();
}

float TakeGradBeta(kernels::Backend& ops, const std::vector<Param*>& params) {
  const bool all_unwritten =
      std::all_of(params.begin(), params.end(), [](const Param* p) { return p->grad_unwritten; });
  for (Param* p : params) {
    if (all_unwritten) {
      p->grad_unwritten = false;
    } else {
      p->GradForAccumulate(ops);
    }
  }
  return all_unwritten ? 0.0f : 1.0f;
}

void ParamStore::ZeroGrads() {
  for (auto& p : params_) p->grad_unwritten = p->trainable();
}

void ParamStore::FinishGrads(kernels::Backend& ops) { FinishGrads(ops, 0, size()); }

void ParamStore::FinishGrads(kernels::Backend& ops, int64_t first, int64_t end) {
  for (int64_t i = first; i < end; ++i) {
    if (params_[i]->grad_unwritten) params_[i]->GradForAccumulate(ops);
  }
}

}  // namespace moe::model
