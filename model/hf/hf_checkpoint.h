// A Hugging Face model directory (docs/model.md, "Hugging Face checkpoints"): config.json plus either one
// model.safetensors or shards listed in model.safetensors.index.json ("weight_map": tensor -> shard).
//
// HfTensorSource is what a model loader reads weights through: it hides sharding, checks shapes,
// converts every float dtype to FP32 and dequantises FP8 block-scaled weights on load. For a weight
// `foo.weight` [R, C] stored as F8_E4M3 with a sibling `foo.weight_scale_inv`
// [ceil(R/br), ceil(C/bc)] (br x bc = quantization_config.weight_block_size, 128 x 128 in V3):
//   W[r, c] = float(Wq[r, c]) * scale_inv[r / br][c / bc].
// Scale tensors remain visible in Names(); a loader that checks for unused tensors must skip names
// ending in "_scale_inv".
//
// WriteHfDirectory is the matching writer for our own checkpoints (BF16/F32 weights, F32 biases).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/hf/safetensors.h"

namespace moe::hf {

inline constexpr char kConfigFile[] = "config.json";
inline constexpr char kSingleFile[] = "model.safetensors";
inline constexpr char kIndexFile[] = "model.safetensors.index.json";

// FP8 quantisation block (rows x cols), from quantization_config.weight_block_size.
struct Fp8BlockSize {
  int64_t rows = 128;
  int64_t cols = 128;
};

class HfTensorSource {
 public:
  // Opens `dir`: through the index when model.safetensors.index.json exists (every shard is opened
  // and validated once, and every tensor of the weight_map must exist in its shard), otherwise
  // model.safetensors. If config.json exists and has quantization_config.weight_block_size, that
  // becomes the default FP8 block size (else 128 x 128).
  static absl::StatusOr<HfTensorSource> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // Every tensor name (the weight_map keys, or the single file's tensors), sorted.
  std::vector<std::string> Names() const;
  bool Contains(absl::string_view name) const;
  // Dtype/shape/offsets of a tensor in its file; nullptr if absent.
  const TensorInfo* Find(absl::string_view name) const;
  // Path of the file holding `name`; empty if absent.
  std::string FileOf(absl::string_view name) const;

  // The tensor as FP32 [expected_shape] row-major, FP8-dequantised when `name + "_scale_inv"`
  // exists. Errors: NotFound for a missing tensor; InvalidArgument
  // "tensor X in FILE has shape [a,b], expected [c,d]" for a shape mismatch, and for a scale tensor
  // of the wrong shape or a scaled tensor that is not 2-D.
  absl::StatusOr<std::vector<float>> Read(const std::string& name,
                                          const std::vector<int64_t>& expected_shape) const;
  absl::StatusOr<std::vector<float>> Read(const std::string& name,
                                          const std::vector<int64_t>& expected_shape,
                                          Fp8BlockSize block) const;

  Fp8BlockSize block_size() const { return block_; }
  void set_block_size(Fp8BlockSize block) { block_ = block; }

  // The text of DIR/config.json.
  absl::StatusOr<std::string> ReadConfigJson() const;

 private:
  HfTensorSource() = default;

  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor name -> index in files_
  Fp8BlockSize block_;
};

// Writes DIR/config.json and the tensors (DIR is created if missing). If the tensors' total byte
// size is <= max_shard_bytes: one model.safetensors (a stale index is removed). Otherwise shards
// model-0000i-of-0000N.safetensors filled greedily in the given order (a new shard starts when the
// next tensor would push the current one past max_shard_bytes; an oversized tensor gets its own),
// then model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map": {...}}, sorted
// keys, 2-space indent) written last, and a stale model.safetensors removed. Shards carry
// {"format": "pt"} metadata. `config_json` must be a JSON object. Old shards with other names are
// left alone (the index never references them).
absl::Status WriteHfDirectory(const std::string& dir, const std::string& config_json,
                              const std::vector<WriteTensor>& tensors, uint64_t max_shard_bytes);

}  // namespace moe::hf
