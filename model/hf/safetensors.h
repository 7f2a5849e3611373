// Reading and writing one safetensors file (docs/model.md, "safetensors files and the shard index"):
//   bytes 0..7        N, u64 little-endian, the header length
//   bytes 8..8+N-1    JSON header: name -> {"dtype", "shape", "data_offsets": [begin, end]},
//                     plus an optional "__metadata__" string->string map
//   bytes 8+N..end    the data buffer, little-endian, row-major
// The reader memory-maps the file read-only and validates the header completely before handing out
// anything: dtype known, byte count = numel * dtype size, offsets inside the buffer, and the tensors
// tile the buffer exactly (no holes, no overlaps). Duplicate names are refused by the JSON parser
// (protobuf Struct reports "Repeated map key"). Every error names the file and, where there is one,
// the tensor. Unknown keys inside a tensor entry are ignored, as the reference implementation does.
//
// The writer lays tensors out by decreasing dtype size, then name (so every tensor is naturally
// aligned when the data buffer is), pads the header with spaces so the data starts 8-byte aligned,
// and writes through a temporary file that is fsynced and renamed into place.
//
// Assumes a little-endian host (x86-64, aarch64).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::hf {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2 };

// "F32" -> kF32, "F8_E4M3" -> kF8E4M3, ...; anything else is InvalidArgument.
absl::StatusOr<DType> ParseDType(absl::string_view name);
// The safetensors spelling ("BF16", "F8_E4M3", ...).
const char* DTypeName(DType dtype);
// Bytes per element.
size_t DTypeSize(DType dtype);

// Scalar decoders (exact; every input has an exact float value).
float F16BitsToFloat(uint16_t bits);
// E4M3 "fn": bias 7, subnormals, no infinities, 0x7F/0xFF are NaN, max +-448.
float F8E4M3ToFloat(uint8_t bits);
// E5M2: IEEE-like, bias 15, has infinities (the top byte of an FP16).
float F8E5M2ToFloat(uint8_t bits);
// FP32 -> FP16 bits, round to nearest even; overflow gives infinity.
uint16_t FloatToF16Bits(float f);

// Converts `numel` elements of `dtype` at `bytes` (little-endian, any alignment) to float. Integer
// and bool dtypes convert by value (I64/I32 beyond 2^24 lose precision).
void DecodeToFloat(DType dtype, const uint8_t* bytes, size_t numel, float* out);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // [] for a 0-d tensor
  uint64_t begin = 0;          // byte offsets relative to the data buffer; end is one past the last
  uint64_t end = 0;
  int64_t numel() const;
};

// "[a,b,c]" for error messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return path_; }
  // All tensors, in data-buffer order (sorted by begin).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The "__metadata__" map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when the file has no tensor of that name.
  const TensorInfo* Find(absl::string_view name) const;
  // The tensor's raw bytes (end - begin of them) inside the mapping; valid while this object lives.
  const uint8_t* RawData(const TensorInfo& info) const { return data_ + info.begin; }
  // The tensor converted to float, row-major, numel() values.
  absl::StatusOr<std::vector<float>> ReadAsFloat(const std::string& name) const;

 private:
  struct Mapping;  // owns the mmap; shared so the object stays cheaply movable
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data buffer inside the mapping
  uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;  // name -> index in tensors_
  std::map<std::string, std::string> metadata_;
};

// One tensor to write. Give either `data` (numel floats, converted to `dtype`; supported for F64,
// F32, F16, BF16 — BF16/F16 round to nearest even) or `raw` (numel * DTypeSize(dtype) bytes already
// encoded, little-endian; any dtype, e.g. FP8 weights in tests). Both may be null when numel is 0.
struct WriteTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  const void* raw = nullptr;
};

// numel(shape) * DTypeSize(dtype), refusing negative dimensions and overflow. `what` names the
// tensor in errors.
absl::StatusOr<uint64_t> TensorByteSize(DType dtype, const std::vector<int64_t>& shape,
                                        absl::string_view what);

// Writes one safetensors file (atomically: temp file, fsync, rename). Names must be unique,
// non-empty and not "__metadata__".
absl::Status WriteSafetensors(const std::string& path, const std::vector<WriteTensor>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace moe::hf
