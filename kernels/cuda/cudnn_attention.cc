#include "kernels/cuda/cudnn_attention.h"

#include <cudnn.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moe::kernels {
namespace {

// The error of a failed cuDNN call: the call, cuDNN's status and its last error message.
absl::Status CudnnError(const char* what, cudnnStatus_t st) {
  char detail[1024] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  return absl::InternalError(absl::StrCat(what, ": ", cudnnGetErrorString(st),
                                          detail[0] != 0 ? absl::StrCat(" (", detail, ")") : ""));
}

#define MOE_CUDNN_RETURN_IF_ERROR(call)                          \
  do {                                                          \
    const cudnnStatus_t moe_cudnn_st_ = (call);                 \
    if (moe_cudnn_st_ != CUDNN_STATUS_SUCCESS) {                \
      return CudnnError(#call, moe_cudnn_st_);                  \
    }                                                           \
  } while (0)

// One backend descriptor, destroyed with its owner.
class Descriptor {
 public:
  Descriptor() = default;
  explicit Descriptor(cudnnBackendDescriptor_t d) : d_(d) {}
  ~Descriptor() {
    if (d_ != nullptr) cudnnBackendDestroyDescriptor(d_);
  }
  Descriptor(Descriptor&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  Descriptor& operator=(Descriptor&& o) noexcept {
    std::swap(d_, o.d_);
    return *this;
  }
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

absl::StatusOr<Descriptor> Create(cudnnBackendDescriptorType_t type) {
  cudnnBackendDescriptor_t d = nullptr;
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendCreateDescriptor(type, &d));
  return Descriptor(d);
}

using Dims = std::vector<int64_t>;

// Builds one operation graph. Calls after the first failure do nothing; Status() reports it.
class GraphBuilder {
 public:
  // A tensor: returns its unique id. Non-virtual tensors are bound to memory at execution (by-value
  // ones to a host scalar); virtual ones stay inside the fused kernel.
  int64_t Tensor(const Dims& dims, const Dims& strides, cudnnDataType_t type, bool is_virtual,
                 bool by_value = false) {
    const int64_t uid = next_uid_++;
    if (!status_.ok()) return uid;
    auto d = Create(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    if (!d.ok()) {
      status_ = d.status();
      return uid;
    }
    const int64_t alignment = 16;
    cudnnBackendDescriptor_t t = d->get();
    Check(Set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type), "tensor type");
    Check(Set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.size(), dims.data()), "tensor dims");
    Check(Set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.size(), strides.data()),
          "tensor strides");
    Check(Set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "tensor uid");
    Check(Set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment), "tensor alignment");
    if (is_virtual) Check(Set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &kTrue), "virtual");
    if (by_value) Check(Set(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &kTrue), "by value");
    Check(cudnnBackendFinalize(t), "tensor finalize");
    if (status_.ok()) tensors_.emplace(uid, std::move(*d));
    return uid;
  }
  // A host scalar passed by value at execution (FP32).
  int64_t Scalar() {
    return Tensor({1, 1, 1, 1}, {1, 1, 1, 1}, CUDNN_DATA_FLOAT, false, true);
  }

  // y = mode(x[, b][, t]). axis >= 0 for GEN_INDEX.
  void Pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, int64_t x, int64_t y,
                 int64_t b = -1, int64_t t = -1, int64_t axis = -1) {
    if (!status_.ok()) return;
    auto pw = Create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    if (!pw.ok()) {
      status_ = pw.status();
      return;
    }
    Check(Set(pw->get(), CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode), "pw mode");
    Check(Set(pw->get(), CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math), "pw math");
    if (axis >= 0) Check(Set(pw->get(), CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis), "pw axis");
    Check(cudnnBackendFinalize(pw->get()), "pointwise finalize");
    std::vector<std::pair<cudnnBackendAttributeName_t, int64_t>> io = {
        {CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x}, {CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y}};
    if (b >= 0) io.push_back({CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b});
    if (t >= 0) io.push_back({CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t});
    Operation(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR,
              {CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw->get()}, io);
    descriptors_.push_back(std::move(*pw));
  }
  // c = a b over the last two dims (batched over the first two).
  void Matmul(int64_t a, int64_t b, int64_t c) {
    if (!status_.ok()) return;
    auto mm = Create(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    if (!mm.ok()) {
      status_ = mm.status();
      return;
    }
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Check(Set(mm->get(), CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp), "matmul comp");
    Check(cudnnBackendFinalize(mm->get()), "matmul finalize");
    Operation(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, {CUDNN_ATTR_OPERATION_MATMUL_DESC, mm->get()},
              {{CUDNN_ATTR_OPERATION_MATMUL_ADESC, a},
               {CUDNN_ATTR_OPERATION_MATMUL_BDESC, b},
               {CUDNN_ATTR_OPERATION_MATMUL_CDESC, c}});
    descriptors_.push_back(std::move(*mm));
  }
  // y = reduce(x) over the dims where y is 1.
  void Reduction(cudnnReduceTensorOp_t op, int64_t x, int64_t y) {
    if (!status_.ok()) return;
    auto rd = Create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    if (!rd.ok()) {
      status_ = rd.status();
      return;
    }
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Check(Set(rd->get(), CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &op),
          "reduction op");
    Check(Set(rd->get(), CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp), "reduction comp");
    Check(cudnnBackendFinalize(rd->get()), "reduction finalize");
    Operation(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR,
              {CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd->get()},
              {{CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x}, {CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y}});
    descriptors_.push_back(std::move(*rd));
  }
  // y: the same elements as x under other dims/strides (a transposed view).
  void Reshape(int64_t x, int64_t y) {
    Operation(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, {},
              {{CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x}, {CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y}});
  }

  const absl::Status& status() const { return status_; }
  const std::vector<Descriptor>& operations() const { return operations_; }
  // Keeps the tensors and op descriptors alive as long as the graph built from them.
  std::vector<Descriptor> TakeDescriptors() {
    std::vector<Descriptor> all = std::move(descriptors_);
    for (auto& [uid, d] : tensors_) all.push_back(std::move(d));
    for (auto& d : operations_) all.push_back(std::move(d));
    tensors_.clear();
    operations_.clear();
    return all;
  }

 private:
  static inline const bool kTrue = true;

  static cudnnStatus_t Set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                           cudnnBackendAttributeType_t type, size_t count, const void* value) {
    return cudnnBackendSetAttribute(d, name, type, static_cast<int64_t>(count), value);
  }
  void Check(cudnnStatus_t st, const char* what) {
    if (status_.ok() && st != CUDNN_STATUS_SUCCESS) status_ = CudnnError(what, st);
  }
  // An operation descriptor with its op-descriptor attribute (when given) and tensor attributes.
  void Operation(cudnnBackendDescriptorType_t type,
                 std::pair<cudnnBackendAttributeName_t, cudnnBackendDescriptor_t> op_desc,
                 const std::vector<std::pair<cudnnBackendAttributeName_t, int64_t>>& io) {
    if (!status_.ok()) return;
    auto op = Create(type);
    if (!op.ok()) {
      status_ = op.status();
      return;
    }
    if (op_desc.second != nullptr) {
      Check(Set(op->get(), op_desc.first, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op_desc.second), "op desc");
    }
    for (const auto& [name, uid] : io) {
      auto it = tensors_.find(uid);
      if (it == tensors_.end()) {
        if (status_.ok()) status_ = absl::InternalError(absl::StrCat("tensor ", uid, " was not built"));
        return;
      }
      cudnnBackendDescriptor_t t = it->second.get();
      Check(Set(op->get(), name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t), "op tensor");
    }
    Check(cudnnBackendFinalize(op->get()), "operation finalize");
    if (status_.ok()) operations_.push_back(std::move(*op));
  }

  absl::Status status_;
  int64_t next_uid_ = 1;
  std::map<int64_t, Descriptor> tensors_;
  std::vector<Descriptor> descriptors_;  // pointwise / matmul / reduction descriptors
  std::vector<Descriptor> operations_;
};

// The tensors of one attention call, in cuDNN's [B, H, S, D] dims over our [B, T, H, D] memory.
struct Layout {
  int64_t b, t, h, dqk, dv;
  Dims Bhsd(int64_t d) const { return {b, h, t, d}; }
  Dims BshdStrides(int64_t d) const { return {t * h * d, d, h * d, 1}; }
  // The transposed view [B, H, D, S] of the same memory (K^T, V^T).
  Dims Bhds(int64_t d) const { return {b, h, d, t}; }
  Dims BshdStridesT(int64_t d) const { return {t * h * d, d, 1, h * d}; }
  Dims Scores() const { return {b, h, t, t}; }
  Dims ScoresStrides() const { return {h * t * t, t * t, t, 1}; }
  Dims ScoresT() const { return {b, h, t, t}; }  // [B, H, S_kv, S_q]
  Dims ScoresTStrides() const { return {h * t * t, t * t, 1, t}; }
  Dims Rows() const { return {b, h, t, 1}; }
  Dims RowsStrides() const { return {h * t, t, 1, 1}; }
};

// The causal mask on scores x (virtual FP32 [B, H, S, S]): keeps x where row >= column, else
// -inf (the by-value scalar neg_inf). Returns the masked scores.
int64_t CausalMask(GraphBuilder& g, const Layout& l, int64_t x, int64_t neg_inf) {
  const int64_t row = g.Tensor(l.Scores(), l.ScoresStrides(), CUDNN_DATA_INT32, true);
  g.Pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, x, row, -1, -1, /*axis=*/2);
  const int64_t col = g.Tensor(l.Scores(), l.ScoresStrides(), CUDNN_DATA_INT32, true);
  g.Pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, x, col, -1, -1, /*axis=*/3);
  const int64_t keep = g.Tensor(l.Scores(), l.ScoresStrides(), CUDNN_DATA_BOOLEAN, true);
  g.Pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, keep, col);
  const int64_t masked = g.Tensor(l.Scores(), l.ScoresStrides(), CUDNN_DATA_FLOAT, true);
  g.Pointwise(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, x, masked, neg_inf, keep);
  return masked;
}

}  // namespace

// One finalised execution plan, the descriptors it was built from, and where each bound tensor's
// pointer goes in the variant pack.
struct CudnnAttention::Plan {
  Descriptor graph, plan;
  std::vector<Descriptor> parts;  // tensors and operations the graph references
  int64_t workspace = 0;          // cuDNN's own workspace bytes
  int64_t extra = 0;              // bytes of our FP32 scratch tensor in front of it (backward)
  std::string engine;
  int num_operations = 0;
  // Unique ids of the bound tensors.
  int64_t q = 0, k = 0, v = 0, o = 0, d_o = 0, lse = 0, dq = 0, dk = 0, dv = 0, row_sum = 0;
  int64_t scale = 0, neg_inf = 0, one = 0;
  float scale_value = 0;
  float neg_inf_value = -std::numeric_limits<float>::infinity();
  float one_value = 1.0f;
};

namespace {

// Picks the first engine configuration cuDNN's heuristics offer that finalises into a plan,
// preferring deterministic ones (the backward must be repeatable bit for bit).
absl::Status FinalizePlan(cudnnHandle_t handle, CudnnAttention::Plan& p) {
  auto heur = Create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  if (!heur.ok()) return heur.status();
  cudnnBackendDescriptor_t graph = p.graph.get();
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
  MOE_CUDNN_RETURN_IF_ERROR(
      cudnnBackendSetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(heur->get()));
  int64_t count = 0;
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
  if (count <= 0) return absl::UnimplementedError("cuDNN's heuristics offer no engine for this graph");
  std::vector<Descriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    auto c = Create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    if (!c.ok()) return c.status();
    raw.push_back(c->get());
    configs.push_back(std::move(*c));
  }
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count,
                                                     raw.data()));
  std::string tried;
  for (int pass = 0; pass < 2; ++pass) {  // pass 0: deterministic engines only; pass 1: any
    for (int64_t i = 0; i < count; ++i) {
      auto engine = Create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      if (!engine.ok()) return engine.status();
      cudnnBackendDescriptor_t e = engine->get();
      int64_t n = 0;
      if (cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                   &n, &e) != CUDNN_STATUS_SUCCESS) {
        continue;
      }
      int64_t index = -1;
      cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index);
      cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
      int64_t num_notes = 0;
      cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &num_notes, notes);
      bool deterministic = true;
      for (int64_t j = 0; j < num_notes; ++j) {
        if (notes[j] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) deterministic = false;
      }
      if (pass == 0 && !deterministic) continue;
      auto plan = Create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      if (!plan.ok()) return plan.status();
      MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                                         CUDNN_TYPE_HANDLE, 1, &handle));
      MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i]));
      const cudnnStatus_t st = cudnnBackendFinalize(plan->get());
      if (st != CUDNN_STATUS_SUCCESS) {
        absl::StrAppend(&tried, " engine ", index, ": ", CudnnError("finalize", st).message(), ";");
        continue;
      }
      MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                         CUDNN_TYPE_INT64, 1, &n, &p.workspace));
      p.plan = std::move(*plan);
      p.engine = absl::StrCat("engine ", index, deterministic ? "" : " (NONDETERMINISTIC)");
      return absl::OkStatus();
    }
  }
  return absl::UnimplementedError(absl::StrCat("no engine of ", count, " finalised a plan:", tried));
}

// Finalises the operation graph from the builder's operations.
// Without a handle (no device), stops once every tensor and operation descriptor is finalised.
absl::Status FinalizeGraph(cudnnHandle_t handle, GraphBuilder& g, CudnnAttention::Plan& p) {
  if (!g.status().ok()) return g.status();
  p.num_operations = static_cast<int>(g.operations().size());
  if (handle == nullptr) return absl::OkStatus();
  auto graph = Create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  if (!graph.ok()) return graph.status();
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const Descriptor& d : g.operations()) ops.push_back(d.get());
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(graph->get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE,
                                                     CUDNN_TYPE_HANDLE, 1, &handle));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(graph->get(), CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                                     CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                     static_cast<int64_t>(ops.size()), ops.data()));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(graph->get()));
  p.graph = std::move(*graph);
  p.parts = g.TakeDescriptors();
  return FinalizePlan(handle, p);
}

// Forward: S = Q K^T * scale, causal mask, softmax (statistics out), O = P V.
absl::Status BuildForward(cudnnHandle_t handle, const Layout& l, CudnnAttention::Plan& p) {
  GraphBuilder g;
  constexpr cudnnDataType_t kF32 = CUDNN_DATA_FLOAT, kBf16 = CUDNN_DATA_BFLOAT16;
  p.q = g.Tensor(l.Bhsd(l.dqk), l.BshdStrides(l.dqk), kBf16, false);
  p.k = g.Tensor(l.Bhds(l.dqk), l.BshdStridesT(l.dqk), kBf16, false);  // K^T
  p.v = g.Tensor(l.Bhsd(l.dv), l.BshdStrides(l.dv), kBf16, false);
  p.o = g.Tensor(l.Bhsd(l.dv), l.BshdStrides(l.dv), kBf16, false);
  p.lse = g.Tensor(l.Rows(), l.RowsStrides(), kF32, false);
  p.scale = g.Scalar();
  p.neg_inf = g.Scalar();

  const int64_t s = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Matmul(p.q, p.k, s);
  const int64_t scaled = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_MUL, kF32, s, scaled, p.scale);
  const int64_t masked = CausalMask(g, l, scaled, p.neg_inf);
  const int64_t max = g.Tensor(l.Rows(), l.RowsStrides(), kF32, true);
  g.Reduction(CUDNN_REDUCE_TENSOR_MAX, masked, max);
  const int64_t shifted = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_SUB, kF32, masked, shifted, max);
  const int64_t e = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_EXP, kF32, shifted, e);
  const int64_t sum = g.Tensor(l.Rows(), l.RowsStrides(), kF32, true);
  g.Reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  const int64_t log_sum = g.Tensor(l.Rows(), l.RowsStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_LOG, kF32, sum, log_sum);
  g.Pointwise(CUDNN_POINTWISE_ADD, kF32, max, p.lse, log_sum);
  const int64_t probs = g.Tensor(l.Scores(), l.ScoresStrides(), kBf16, true);
  g.Pointwise(CUDNN_POINTWISE_DIV, kF32, e, probs, sum);
  g.Matmul(probs, p.v, p.o);
  return FinalizeGraph(handle, g, p);
}

// Backward, cuDNN's deterministic form: P recomputed from the saved statistics,
// dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)) * scale, dK = dS^T Q, dQ = dS K.
absl::Status BuildBackward(cudnnHandle_t handle, const Layout& l, CudnnAttention::Plan& p) {
  GraphBuilder g;
  constexpr cudnnDataType_t kF32 = CUDNN_DATA_FLOAT, kBf16 = CUDNN_DATA_BFLOAT16;
  p.q = g.Tensor(l.Bhsd(l.dqk), l.BshdStrides(l.dqk), kBf16, false);
  p.k = g.Tensor(l.Bhds(l.dqk), l.BshdStridesT(l.dqk), kBf16, false);  // K^T
  p.v = g.Tensor(l.Bhds(l.dv), l.BshdStridesT(l.dv), kBf16, false);    // V^T
  p.o = g.Tensor(l.Bhsd(l.dv), l.BshdStrides(l.dv), kBf16, false);
  p.d_o = g.Tensor(l.Bhsd(l.dv), l.BshdStrides(l.dv), kBf16, false);
  p.lse = g.Tensor(l.Rows(), l.RowsStrides(), kF32, false);
  p.dq = g.Tensor(l.Bhsd(l.dqk), l.BshdStrides(l.dqk), kBf16, false);
  p.dk = g.Tensor(l.Bhsd(l.dqk), l.BshdStrides(l.dqk), kBf16, false);
  p.dv = g.Tensor(l.Bhsd(l.dv), l.BshdStrides(l.dv), kBf16, false);
  p.row_sum = g.Tensor(l.Rows(), l.RowsStrides(), kF32, false);  // rowsum(dO * O), in our scratch
  p.scale = g.Scalar();
  p.neg_inf = g.Scalar();
  p.one = g.Scalar();

  // rowsum(dO * O) (the strides of this virtual product follow cudnn-frontend's graph).
  const int64_t prod = g.Tensor(l.Bhsd(l.dv), {l.h * l.t * l.dv, l.t * l.dv, l.h * l.dv, 1}, kF32, true);
  g.Pointwise(CUDNN_POINTWISE_MUL, kF32, p.d_o, prod, p.o);
  const int64_t rows = g.Tensor(l.Rows(), l.RowsStrides(), kF32, true);
  g.Reduction(CUDNN_REDUCE_TENSOR_ADD, prod, rows);
  g.Pointwise(CUDNN_POINTWISE_MUL, kF32, rows, p.row_sum, p.one);

  // P = exp(mask(Q K^T * scale) - lse).
  const int64_t s = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Matmul(p.q, p.k, s);
  const int64_t scaled = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_MUL, kF32, s, scaled, p.scale);
  const int64_t shifted = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_SUB, kF32, scaled, shifted, p.lse);
  const int64_t masked = CausalMask(g, l, shifted, p.neg_inf);
  const int64_t probs = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_EXP, kF32, masked, probs);

  // dV = P^T dO.
  const int64_t probs_t = g.Tensor(l.ScoresT(), l.ScoresTStrides(), kBf16, true);
  g.Reshape(probs, probs_t);
  g.Matmul(probs_t, p.d_o, p.dv);

  // dS = P * (dO V^T - rowsum) * scale.
  const int64_t dp = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Matmul(p.d_o, p.v, dp);
  const int64_t centred = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_SUB, kF32, dp, centred, p.row_sum);
  const int64_t ds_unscaled = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_MUL, kF32, centred, ds_unscaled, probs);
  const int64_t ds = g.Tensor(l.Scores(), l.ScoresStrides(), kF32, true);
  g.Pointwise(CUDNN_POINTWISE_MUL, kF32, ds_unscaled, ds, p.scale);

  // dK = dS^T Q; dQ = dS K (K from its transposed view).
  const int64_t ds_t = g.Tensor(l.ScoresT(), l.ScoresTStrides(), kBf16, true);
  g.Reshape(ds, ds_t);
  g.Matmul(ds_t, p.q, p.dk);
  const int64_t k = g.Tensor(l.Bhsd(l.dqk), l.BshdStrides(l.dqk), kBf16, true);
  g.Reshape(p.k, k);
  g.Matmul(ds, k, p.dq);
  return FinalizeGraph(handle, g, p);
}

constexpr int64_t kAlign = 256;
int64_t AlignUp(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// Executes a plan with the given (uid, pointer) bindings and the workspace.
absl::Status Execute(cudnnHandle_t handle, const CudnnAttention::Plan& p,
                     std::vector<std::pair<int64_t, void*>> bindings, void* workspace) {
  std::vector<int64_t> uids;
  std::vector<void*> pointers;
  for (const auto& [uid, ptr] : bindings) {
    uids.push_back(uid);
    pointers.push_back(ptr);
  }
  auto pack = Create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  if (!pack.ok()) return pack.status();
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(pack->get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                                     CUDNN_TYPE_INT64, static_cast<int64_t>(uids.size()),
                                                     uids.data()));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(pack->get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                                     CUDNN_TYPE_VOID_PTR,
                                                     static_cast<int64_t>(pointers.size()), pointers.data()));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute(pack->get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                                     CUDNN_TYPE_VOID_PTR, 1, &workspace));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(pack->get()));
  MOE_CUDNN_RETURN_IF_ERROR(cudnnBackendExecute(handle, p.plan.get(), pack->get()));
  return absl::OkStatus();
}

void* Mutable(const void* p) { return const_cast<void*>(p); }

}  // namespace

CudnnAttention::CudnnAttention(cudaStream_t stream) : stream_(stream) {}

CudnnAttention::~CudnnAttention() {
  plans_.clear();  // descriptors before the handle they were built with
  if (handle_ != nullptr) cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
}

absl::Status CudnnAttention::EnsureHandle() {
  if (handle_ != nullptr || !handle_status_.ok()) return handle_status_;
  cudnnHandle_t h = nullptr;
  cudnnStatus_t st = cudnnCreate(&h);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnSetStream(h, stream_);
  if (st != CUDNN_STATUS_SUCCESS) {
    handle_status_ = CudnnError("cudnnCreate", st);
    if (h != nullptr) cudnnDestroy(h);
    return handle_status_;
  }
  handle_ = h;
  return absl::OkStatus();
}

absl::StatusOr<CudnnAttention::Plan*> CudnnAttention::GetPlan(const AttentionShape& s, bool backward) {
  const Key key = KeyOf(s, backward);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  if (auto it = failures_.find(key); it != failures_.end()) return it->second;
  absl::Status st = EnsureHandle();
  auto plan = std::make_unique<Plan>();
  if (st.ok()) {
    const Layout l{s.batch, s.seq, s.heads, s.qk_dim, s.v_dim};
    cudnnHandle_t h = static_cast<cudnnHandle_t>(handle_);
    st = backward ? BuildBackward(h, l, *plan) : BuildForward(h, l, *plan);
    if (backward) plan->extra = AlignUp(static_cast<int64_t>(sizeof(float)) * s.batch * s.heads * s.seq);
  }
  if (!st.ok()) {
    st = absl::Status(st.code(), absl::StrCat(Describe(s, backward), ": ", st.message()));
    failures_.emplace(key, st);
    return st;
  }
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

absl::StatusOr<int> CudnnAttention::BuildOperations(const AttentionShape& s, bool backward) {
  const Layout l{s.batch, s.seq, s.heads, s.qk_dim, s.v_dim};
  Plan p;
  const absl::Status st = backward ? BuildBackward(nullptr, l, p) : BuildForward(nullptr, l, p);
  if (!st.ok()) return st;
  return p.num_operations;
}

absl::StatusOr<size_t> CudnnAttention::ForwardWorkspaceBytes(const AttentionShape& s) {
  auto p = GetPlan(s, false);
  if (!p.ok()) return p.status();
  return static_cast<size_t>((*p)->extra + (*p)->workspace);
}

absl::StatusOr<size_t> CudnnAttention::BackwardWorkspaceBytes(const AttentionShape& s) {
  auto p = GetPlan(s, true);
  if (!p.ok()) return p.status();
  return static_cast<size_t>((*p)->extra + (*p)->workspace);
}

std::string CudnnAttention::LibraryVersion() {
  const size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch
  return absl::StrCat(v / 10000, ".", v / 100 % 100, ".", v % 100);
}

std::string CudnnAttention::EngineName(const AttentionShape& s, bool backward) const {
  auto it = plans_.find(KeyOf(s, backward));
  return it == plans_.end() ? "" : it->second->engine;
}

absl::Status CudnnAttention::Forward(const AttentionShape& s, const CudnnAttentionForwardArgs& a) {
  auto found = GetPlan(s, false);
  if (!found.ok()) return found.status();
  Plan& p = **found;
  p.scale_value = s.scale;
  return Refuse(s, false,
                Execute(static_cast<cudnnHandle_t>(handle_), p,
                        {{p.q, Mutable(a.q)}, {p.k, Mutable(a.k)}, {p.v, Mutable(a.v)}, {p.o, a.o},
                         {p.lse, a.lse}, {p.scale, &p.scale_value}, {p.neg_inf, &p.neg_inf_value}},
                        a.workspace));
}

absl::Status CudnnAttention::Backward(const AttentionShape& s, const CudnnAttentionBackwardArgs& a) {
  auto found = GetPlan(s, true);
  if (!found.ok()) return found.status();
  Plan& p = **found;
  p.scale_value = s.scale;
  char* ws = static_cast<char*>(a.workspace);
  return Refuse(s, true,
                Execute(static_cast<cudnnHandle_t>(handle_), p,
                        {{p.q, Mutable(a.q)}, {p.k, Mutable(a.k)}, {p.v, Mutable(a.v)},
                         {p.o, Mutable(a.o)}, {p.d_o, Mutable(a.d_o)}, {p.lse, Mutable(a.lse)},
                         {p.dq, a.dq}, {p.dk, a.dk}, {p.dv, a.dv}, {p.row_sum, ws},
                         {p.scale, &p.scale_value}, {p.neg_inf, &p.neg_inf_value}, {p.one, &p.one_value}},
                        ws + p.extra));
}

absl::Status CudnnAttention::Refuse(const AttentionShape& s, bool backward, absl::Status st) {
  if (st.ok()) return st;
  const Key key = KeyOf(s, backward);
  st = absl::Status(st.code(), absl::StrCat(Describe(s, backward), " failed to execute: ", st.message()));
  plans_.erase(key);
  failures_.emplace(key, st);
  return st;
}

}  // namespace moe::kernels
