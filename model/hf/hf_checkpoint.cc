// See hf_checkpoint.h.
#include "model/hf/hf_checkpoint.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "base/file_util.h"
#include "model/hf/json.h"

namespace moe::hf {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// quantization_config.weight_block_size from config.json, if present.
absl::Status ReadBlockSize(const std::string& config_path, Fp8BlockSize* block) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(const Struct config, ParseJsonObject(text, config_path));
  const auto q = config.fields().find("quantization_config");
  if (q == config.fields().end() || q->second.kind_case() != Value::kStructValue) {
    return absl::OkStatus();
  }
  const auto& qf = q->second.struct_value().fields();
  const auto bs = qf.find("weight_block_size");
  if (bs == qf.end() || bs->second.kind_case() == Value::kNullValue) return absl::OkStatus();
  const std::string what = absl::StrCat(config_path, ": quantization_config.weight_block_size");
  if (bs->second.kind_case() != Value::kListValue || bs->second.list_value().values_size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be [rows, cols]"));
  }
  ASSIGN_OR_RETURN(const uint64_t rows, JsonToUint64(bs->second.list_value().values(0), what));
  ASSIGN_OR_RETURN(const uint64_t cols, JsonToUint64(bs->second.list_value().values(1), what));
  if (rows == 0 || cols == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be positive"));
  }
  block->rows = static_cast<int64_t>(rows);
  block->cols = static_cast<int64_t>(cols);
  return absl::OkStatus();
}

// A weight_map value must name a file inside the directory.
bool SafeRelativePath(absl::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  for (const absl::string_view part : absl::StrSplit(p, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<HfTensorSource> HfTensorSource::Open(const std::string& dir) {
  HfTensorSource src;
  src.dir_ = dir;
  const std::string config_path = JoinPath(dir, kConfigFile);
  if (FileExists(config_path)) RETURN_IF_ERROR(ReadBlockSize(config_path, &src.block_));

  const std::string index_path = JoinPath(dir, kIndexFile);
  if (FileExists(index_path)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFileToString(index_path));
    ASSIGN_OR_RETURN(const Struct index, ParseJsonObject(text, index_path));
    const auto wm = index.fields().find("weight_map");
    if (wm == index.fields().end() || wm->second.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": missing \"weight_map\" object"));
    }
    const auto md = index.fields().find("metadata");
    if (md != index.fields().end() && md->second.kind_case() != Value::kStructValue &&
        md->second.kind_case() != Value::kNullValue) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": \"metadata\" must be an object"));
    }
    // Sorted, so errors and shard opening order are deterministic.
    std::map<std::string, std::string> weight_map;
    for (const auto& kv : wm->second.struct_value().fields()) {
      ASSIGN_OR_RETURN(weight_map[kv.first],
                       JsonToString(kv.second, absl::StrCat(index_path, ": weight_map['", kv.first, "']")));
    }
    std::map<std::string, size_t> shard_index;  // shard file name -> index in files_
    for (const auto& [tensor, shard] : weight_map) {
      if (!SafeRelativePath(shard)) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path, ": tensor '", tensor, "' maps to '", shard, "', which is not a file in ", dir));
      }
      auto it = shard_index.find(shard);
      if (it == shard_index.end()) {
        const std::string shard_path = JoinPath(dir, shard);
        if (!FileExists(shard_path)) {
          return absl::NotFoundError(absl::StrCat(index_path, ": shard ", shard_path,
                                                  " (listed for tensor '", tensor, "') does not exist"));
        }
        ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(shard_path));
        src.files_.push_back(std::move(file));
        it = shard_index.emplace(shard, src.files_.size() - 1).first;
      }
      if (src.files_[it->second].Find(tensor) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": tensor '", tensor, "' is mapped to ",
                         src.files_[it->second].path(), ", which has no such tensor"));
      }
      src.where_.emplace(tensor, it->second);
    }
    return src;
  }

  const std::string single_path = JoinPath(dir, kSingleFile);
  if (!FileExists(single_path)) {
    return absl::NotFoundError(
        absl::StrCat(dir, " has neither ", kIndexFile, " nor ", kSingleFile));
  }
  ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(single_path));
  src.files_.push_back(std::move(file));
  for (const TensorInfo& t : src.files_[0].tensors()) src.where_.emplace(t.name, 0);
  return src;
}

std::vector<std::string> HfTensorSource::Names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& kv : where_) names.push_back(kv.first);
  return names;
}

bool HfTensorSource::Contains(absl::string_view name) const {
  return where_.find(name) != where_.end();
}

const TensorInfo* HfTensorSource::Find(absl::string_view name) const {
  const auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second].Find(name);
}

std::string HfTensorSource::FileOf(absl::string_view name) const {
  const auto it = where_.find(name);
  return it == where_.end() ? std::string() : files_[it->second].path();
}

absl::StatusOr<std::vector<float>> HfTensorSource::Read(
    const std::string& name, const std::vector<int64_t>& expected_shape) const {
  return Read(name, expected_shape, block_);
}

absl::StatusOr<std::vector<float>> HfTensorSource::Read(const std::string& name,
                                                        const std::vector<int64_t>& expected_shape,
                                                        Fp8BlockSize block) const {
  const auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat("no tensor '", name, "' in ", dir_));
  }
  const SafetensorsFile& file = files_[it->second];
  const TensorInfo* info = file.Find(name);
  if (info->shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " in ", file.path(), " has shape ",
                                                   ShapeToString(info->shape), ", expected ",
                                                   ShapeToString(expected_shape)));
  }
  ASSIGN_OR_RETURN(std::vector<float> values, file.ReadAsFloat(name));

  const std::string scale_name = name + "_scale_inv";
  const auto sit = where_.find(scale_name);
  if (sit == where_.end()) return values;

  // FP8 block dequantisation (docs/model.md, "FP8 weights"). values: [R, C]; scale: [ceil(R/br), ceil(C/bc)].
  const SafetensorsFile& scale_file = files_[sit->second];
  if (info->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " in ", file.path(), " has shape ",
                                                   ShapeToString(info->shape), " and a ", scale_name,
                                                   " tensor, but block scaling needs a 2-D weight"));
  }
  if (block.rows <= 0 || block.cols <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("reading ", name, ": FP8 block size ", block.rows,
                                                   "x", block.cols, " must be positive"));
  }
  const int64_t rows = info->shape[0], cols = info->shape[1];
  const std::vector<int64_t> scale_shape = {(rows + block.rows - 1) / block.rows,
                                            (cols + block.cols - 1) / block.cols};
  const TensorInfo* scale_info = scale_file.Find(scale_name);
  if (scale_info->shape != scale_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", scale_name, " in ", scale_file.path(), " has shape ",
        ShapeToString(scale_info->shape), ", expected ", ShapeToString(scale_shape), " for ", name,
        " ", ShapeToString(info->shape), " with ", block.rows, "x", block.cols, " blocks"));
  }
  ASSIGN_OR_RETURN(const std::vector<float> scale, scale_file.ReadAsFloat(scale_name));
  const int64_t scale_cols = scale_shape[1];
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scale.data() + (r / block.rows) * scale_cols;
    float* vrow = values.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) vrow[c] *= srow[c / block.cols];
  }
  return values;
}

absl::StatusOr<std::string> HfTensorSource::ReadConfigJson() const {
  return ReadFileToString(JoinPath(dir_, kConfigFile));
}

absl::Status WriteHfDirectory(const std::string& dir, const std::string& config_json,
                              const std::vector<WriteTensor>& tensors, uint64_t max_shard_bytes) {
  RETURN_IF_ERROR(ParseJsonObject(config_json, absl::StrCat("config.json for ", dir)).status());
  std::vector<uint64_t> bytes(tensors.size());
  uint64_t total = 0;
  std::map<std::string, std::string> weight_map;  // sorted, as HF writes it
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string what = absl::StrCat(dir, ": tensor '", tensors[i].name, "'");
    ASSIGN_OR_RETURN(bytes[i], TensorByteSize(tensors[i].dtype, tensors[i].shape, what));
    total += bytes[i];
    if (!weight_map.emplace(tensors[i].name, "").second) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": duplicate tensor name"));
    }
  }

  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, kConfigFile), config_json));
  const std::map<std::string, std::string> shard_metadata = {{"format", "pt"}};

  if (total <= max_shard_bytes) {
    RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, kSingleFile), tensors, shard_metadata));
    return RemoveIfExists(JoinPath(dir, kIndexFile));  // it would shadow the new file
  }

  std::vector<std::vector<size_t>> shards;
  uint64_t current = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (shards.empty() || (!shards.back().empty() && current + bytes[i] > max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += bytes[i];
  }
  const int n = static_cast<int>(shards.size());
  for (int s = 0; s < n; ++s) {
    const std::string shard_name = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, n);
    std::vector<WriteTensor> subset;
    subset.reserve(shards[s].size());
    for (const size_t i : shards[s]) {
      subset.push_back(tensors[i]);
      weight_map[tensors[i].name] = shard_name;
    }
    RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, shard_name), subset, shard_metadata));
  }

  std::string index = absl::StrCat("{\n  \"metadata\": {\n    \"total_size\": ", total,
                                   "\n  },\n  \"weight_map\": {\n");
  for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
    if (it != weight_map.begin()) index += ",\n";
    absl::StrAppend(&index, "    ", JsonQuote(it->first), ": ", JsonQuote(it->second));
  }
  index += "\n  }\n}\n";
  // The index is written last: it is what makes the new shards visible to readers.
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, kIndexFile), index));
  return RemoveIfExists(JoinPath(dir, kSingleFile));  // HF would prefer it over the index
}

}  // namespace moe::hf
