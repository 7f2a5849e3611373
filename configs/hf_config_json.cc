// Hugging Face config.json conversion both ways: ModelConfigFromHfJson / LoadHfConfigJson (reading) and
// ModelConfigToHfJson (writing); see configs/config_loader.h.
//
// Design notes:
// - config.json is first parsed into a google.protobuf.Struct, normalised (newer HF spellings, list-valued
//   token ids), re-serialised and parsed into ModelConfig with unknown keys ignored, then checked with the
//   shared model validation (config_validation.cc). Writing goes through a small hand-written emitter
//   because protobuf's JSON printer writes int64 values as strings, which HF does not accept.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/json.h"
#include "base/status.h"
#include "configs/config_internal.h"
#include "configs/config_loader.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace moe::config {
namespace {

namespace pb = ::google::protobuf;

// ------------------------------------------------------------------------------------------------
// JSON writing (config.json).

// Shortest text that reads back as the same double; integral values keep a ".0" as Python writes floats.
std::string JsonDouble(double v) {
  std::string s = JsonNumber(v);
  if (std::isfinite(v) && s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string JsonScalar(const pb::Message& msg, const pb::FieldDescriptor* fd) {
  const pb::Reflection* r = msg.GetReflection();
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: return absl::StrCat(r->GetInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_INT64: return absl::StrCat(r->GetInt64(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT32: return absl::StrCat(r->GetUInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT64: return absl::StrCat(r->GetUInt64(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_FLOAT: return JsonDouble(r->GetFloat(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: return JsonDouble(r->GetDouble(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_BOOL: return r->GetBool(msg, fd) ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM: return JsonQuote(r->GetEnum(msg, fd)->name());
    case pb::FieldDescriptor::CPPTYPE_STRING: return JsonQuote(r->GetString(msg, fd));
    default: return "null";
  }
}

// Every scalar field with a value (set or with an explicit default) of `msg`, as "key": value, in field
// order, skipping `skip`; fields listed in `null_when_unset` are written as null when they have no value.
std::vector<std::pair<std::string, std::string>> ScalarEntries(const pb::Message& msg,
                                                               const std::vector<std::string>& skip,
                                                               const std::vector<std::string>& null_when_unset) {
  std::vector<std::pair<std::string, std::string>> out;
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* fd = d->field(i);
    if (fd->is_repeated() || fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (std::find(skip.begin(), skip.end(), fd->name()) != skip.end()) continue;
    if (r->HasField(msg, fd) || fd->has_default_value()) {
      out.emplace_back(fd->name(), JsonScalar(msg, fd));
    } else if (std::find(null_when_unset.begin(), null_when_unset.end(), fd->name()) !=
               null_when_unset.end()) {
      out.emplace_back(fd->name(), "null");
    }
  }
  return out;
}

std::string JsonObject(const std::vector<std::pair<std::string, std::string>>& entries, int indent) {
  if (entries.empty()) return "{}";
  const std::string pad(indent + 2, ' ');
  std::string out = "{\n";
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StrAppend(&out, pad, JsonQuote(entries[i].first), ": ", entries[i].second,
                    i + 1 < entries.size() ? ",\n" : "\n");
  }
  return absl::StrCat(out, std::string(indent, ' '), "}");
}

// ------------------------------------------------------------------------------------------------
// JSON reading: normalising newer HF spellings on a Struct before the typed parse.

bool IsNull(const pb::Value& v) { return v.kind_case() == pb::Value::kNullValue; }

void NormaliseHfJson(pb::Struct* root) {
  auto& f = *root->mutable_fields();
  // `rope_parameters` (newer HF) holds rope_theta and, when scaling is on, the rope_scaling keys.
  auto rp = f.find("rope_parameters");
  if (rp != f.end() && rp->second.kind_case() == pb::Value::kStructValue) {
    pb::Struct params = rp->second.struct_value();
    auto& pf = *params.mutable_fields();
    auto theta = pf.find("rope_theta");
    if (theta != pf.end()) {
      auto top = f.find("rope_theta");
      if (top == f.end() || IsNull(top->second)) f["rope_theta"] = theta->second;
      pf.erase(theta);
    }
    std::string type;
    for (const char* key : {"rope_type", "type"}) {
      auto t = pf.find(key);
      if (t != pf.end() && t->second.kind_case() == pb::Value::kStringValue) type = t->second.string_value();
    }
    auto rs = f.find("rope_scaling");
    const bool has_scaling = rs != f.end() && !IsNull(rs->second);
    if (!has_scaling && !type.empty() && type != "default" && type != "none") {
      *f["rope_scaling"].mutable_struct_value() = params;
    }
  }
  f.erase("rope_parameters");
  // `dtype` is the newer name of torch_dtype.
  auto dtype = f.find("dtype");
  if (dtype != f.end()) {
    auto td = f.find("torch_dtype");
    if (td == f.end() || IsNull(td->second)) f["torch_dtype"] = dtype->second;
    f.erase("dtype");
  }
  // Some tokenizers list several end ids; the model config keeps the first.
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    auto it = f.find(key);
    if (it == f.end() || it->second.kind_case() != pb::Value::kListValue) continue;
    if (it->second.list_value().values_size() == 0) {
      f.erase(it);
    } else {
      const pb::Value first = it->second.list_value().values(0);
      it->second = first;
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------

absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const std::string& json_text,
                                                  const std::string& source_name) {
  pb::Struct root;
  auto st = pb::util::JsonStringToMessage(json_text, &root);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": not a valid JSON object: ", st.message().as_string()));
  }
  NormaliseHfJson(&root);
  std::string normalised;
  st = pb::util::MessageToJsonString(root, &normalised);
  if (!st.ok()) {
    return absl::InternalError(absl::StrCat(source_name, ": ", st.message().as_string()));
  }
  ModelConfig m;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  st = pb::util::JsonStringToMessage(normalised, &m, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", st.message().as_string()));
  }
  internal::Problems problems;
  internal::ValidateModel(m, "", &problems);
  // docs/model.md "YaRN": newer HF recomputes the YaRN factor as max_position_embeddings / L0, so a
  // config.json where the two disagree means different things to different readers.
  if (problems.empty() && EffectiveRopeScalingType(m) == "yarn") {
    const double implied = static_cast<double>(m.max_position_embeddings()) /
                           static_cast<double>(m.rope_scaling().original_max_position_embeddings());
    if (std::abs(implied - m.rope_scaling().factor()) > 1e-9 * std::max(1.0, implied)) {
      problems.Add("rope_scaling.factor (%g) disagrees with max_position_embeddings / "
                   "rope_scaling.original_max_position_embeddings (%d / %d = %g)",
                   m.rope_scaling().factor(), m.max_position_embeddings(),
                   m.rope_scaling().original_max_position_embeddings(), implied);
    }
  }
  RETURN_IF_ERROR(problems.ToStatus(absl::StrCat(source_name, ": ")));
  return m;
}

absl::StatusOr<ModelConfig> LoadHfConfigJson(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, internal::ReadWholeFile(path, "config.json"));
  return ModelConfigFromHfJson(text, path);
}

std::string ModelConfigToHfJson(const ModelConfig& m) {
  std::vector<std::pair<std::string, std::string>> entries;
  std::vector<std::string> arch(m.architectures().begin(), m.architectures().end());
  if (arch.empty()) {
    arch.push_back(m.model_type() == "deepseek_v2" ? "DeepseekV2ForCausalLM" : "DeepseekV3ForCausalLM");
  }
  std::string arch_json = "[\n";
  for (size_t i = 0; i < arch.size(); ++i) {
    absl::StrAppend(&arch_json, "    ", JsonQuote(arch[i]), i + 1 < arch.size() ? ",\n" : "\n");
  }
  arch_json += "  ]";
  entries.emplace_back("architectures", arch_json);
  entries.emplace_back("model_type", JsonQuote(m.model_type()));
  for (auto& e : ScalarEntries(m, {"model_type"}, {"q_lora_rank", "n_routed_experts"})) {
    entries.push_back(std::move(e));
    if (entries.back().first == "max_position_embeddings") {
      // rope_scaling right after max_position_embeddings, as HF orders it.
      if (!m.has_rope_scaling()) {
        entries.emplace_back("rope_scaling", "null");
      } else {
        const RopeScaling& rs = m.rope_scaling();
        std::vector<std::pair<std::string, std::string>> rse;
        // `type` and `rope_type` as given (HF reads either); then the numbers with their defaults.
        for (auto& x : ScalarEntries(rs, {}, {})) rse.push_back(std::move(x));
        entries.emplace_back("rope_scaling", JsonObject(rse, 2));
      }
    }
  }
  return JsonObject(entries, 0) + "\n";
}

}  // namespace moe::config
