// Loading text-format run configs, --set overrides (ApplyOverride, SplitSetFlags) and ResolveTrainConfig,
// which chains loading, overrides and validation (see configs/config_loader.h). Validation lives in
// config_validation.cc, the Hugging Face config.json conversion in hf_config_json.cc.
//
// Design notes:
// - Text configs go through protobuf's TextFormat parser with our own ErrorCollector, so a typo reports
//   "file:line:col" and the field name instead of a bare "parse failed".
// - Overrides walk the descriptor, so any field added to config.proto is settable without code changes.
#include "configs/config_loader.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "configs/config_internal.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace moe::config {
namespace internal {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", what, " '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", what, " '", path, "'"));
  return ss.str();
}

}  // namespace internal

namespace {

namespace pb = ::google::protobuf;

// Classic edit distance, for "did you mean" hints on misspelt field names.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" when some field of `desc` is close to `name`, else "".
std::string Suggestion(const pb::Descriptor* desc, absl::string_view name) {
  if (desc == nullptr) return "";
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 3) + 1;
  for (int i = 0; i < desc->field_count(); ++i) {
    const std::string& candidate = desc->field(i)->name();
    const size_t dist = EditDistance(name, candidate);
    if (dist < best_distance) {
      best_distance = dist;
      best = candidate;
    }
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean '", best, "'?)");
}

// Collects the text-format parser's messages as "path:line:col: message".
class TextErrorCollector : public pb::io::ErrorCollector {
 public:
  TextErrorCollector(std::string path, const std::string& text)
      : path_(std::move(path)), lines_(absl::StrSplit(text, '\n')) {}

  // Value errors ("Expected integer, got: abc") do not say which field; the offending line does.
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    std::string where;
    if (line >= 0 && static_cast<size_t>(line) < lines_.size()) {
      const absl::string_view src = absl::StripAsciiWhitespace(lines_[line]);
      if (!src.empty()) where = absl::StrCat(" (in '", src, "')");
    }
    errors_.push_back(
        absl::StrFormat("%s:%d:%d: %s%s%s", path_, line + 1, column + 1, message, Hint(message), where));
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors_.push_back(absl::StrFormat("%s:%d:%d: warning: %s", path_, line + 1, column + 1, message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  // The parser says: Message type "moe.config.TrainConfig" has no field named "optimzer".
  static std::string Hint(const std::string& message) {
    static const std::string kType = "Message type \"";
    static const std::string kField = "has no field named \"";
    const size_t t = message.find(kType);
    const size_t f = message.find(kField);
    if (t == std::string::npos || f == std::string::npos) return "";
    const size_t t_end = message.find('"', t + kType.size());
    const size_t f_end = message.find('"', f + kField.size());
    if (t_end == std::string::npos || f_end == std::string::npos) return "";
    const std::string type = message.substr(t + kType.size(), t_end - t - kType.size());
    const std::string field = message.substr(f + kField.size(), f_end - f - kField.size());
    return Suggestion(pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type), field);
  }

  std::string path_;
  std::vector<std::string> lines_;
  std::vector<std::string> errors_;
};

// ------------------------------------------------------------------------------------------------
// Overrides.

std::string TypeName(const pb::FieldDescriptor* fd) {
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64: return "an integer";
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64: return "a non-negative integer";
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: return "a number";
    case pb::FieldDescriptor::CPPTYPE_BOOL: return "a bool (true or false)";
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      std::vector<std::string> names;
      for (int i = 0; i < fd->enum_type()->value_count(); ++i) names.push_back(fd->enum_type()->value(i)->name());
      return absl::StrCat("one of ", absl::StrJoin(names, ", "));
    }
    default: return "a string";
  }
}

// Sets (or, for a repeated field, appends) one scalar value parsed from `text`. Returns false if unparsable.
bool SetScalar(pb::Message* msg, const pb::FieldDescriptor* fd, absl::string_view text) {
  const pb::Reflection* r = msg->GetReflection();
  const bool rep = fd->is_repeated();
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddInt32(msg, fd, v) : r->SetInt32(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddInt64(msg, fd, v) : r->SetInt64(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddUInt32(msg, fd, v) : r->SetUInt32(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddUInt64(msg, fd, v) : r->SetUInt64(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(text, &v)) return false;
      rep ? r->AddFloat(msg, fd, v) : r->SetFloat(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(text, &v)) return false;
      rep ? r->AddDouble(msg, fd, v) : r->SetDouble(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      if (lower != "true" && lower != "false") return false;
      rep ? r->AddBool(msg, fd, lower == "true") : r->SetBool(msg, fd, lower == "true");
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumValueDescriptor* v = fd->enum_type()->FindValueByName(std::string(text));
      if (v == nullptr) return false;
      rep ? r->AddEnum(msg, fd, v) : r->SetEnum(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string s(text);
      if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
      rep ? r->AddString(msg, fd, s) : r->SetString(msg, fd, s);
      return true;
    }
    default: return false;
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, internal::ReadWholeFile(path, "config file"));
  TextErrorCollector errors(path, text);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  TrainConfig cfg;
  if (!parser.ParseFromString(text, &cfg)) {
    if (errors.errors().empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot parse"));
    return absl::InvalidArgumentError(absl::StrJoin(errors.errors(), "; "));
  }
  return cfg;
}

absl::Status ApplyOverride(TrainConfig* cfg, absl::string_view assignment) {
  const std::string from = absl::StrCat(" (from --set ", assignment, ")");
  const size_t eq = assignment.find('=');
  if (eq == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected dotted.path=value", from));
  }
  const absl::string_view path = absl::StripAsciiWhitespace(assignment.substr(0, eq));
  const absl::string_view value = absl::StripAsciiWhitespace(assignment.substr(eq + 1));
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  const bool clear = value == "null";
  pb::Message* msg = cfg;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* desc = msg->GetDescriptor();
    if (parts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("empty field name in '", path, "'", from));
    }
    const pb::FieldDescriptor* fd = desc->FindFieldByName(std::string(parts[i]));
    if (fd == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field '", parts[i], "' in ", desc->name(),
                                                     Suggestion(desc, parts[i]), from));
    }
    const pb::Reflection* r = msg->GetReflection();
    const std::string so_far = absl::StrJoin(parts.begin(), parts.begin() + i + 1, ".");
    const bool is_message = fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (i + 1 < parts.size()) {
      if (!is_message || fd->is_repeated()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", so_far, "' is not a message, so it has no field '", parts[i + 1], "'", from));
      }
      // Clearing a field of a message that is not there is a no-op; do not create the message for it.
      if (clear && !r->HasField(*msg, fd)) return absl::OkStatus();
      msg = r->MutableMessage(msg, fd);
      continue;
    }
    if (clear) {
      r->ClearField(msg, fd);
      return absl::OkStatus();
    }
    if (is_message) {
      return absl::InvalidArgumentError(absl::StrCat("'", so_far, "' is a message: set its fields (", so_far,
                                                     ".<field>=...) or clear it with =null", from));
    }
    if (fd->is_repeated()) {
      r->ClearField(msg, fd);
      if (value.empty()) return absl::OkStatus();
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = absl::StripAsciiWhitespace(item);
        if (!SetScalar(msg, fd, item)) {
          return absl::InvalidArgumentError(absl::StrCat("cannot parse '", item, "' as ", TypeName(fd),
                                                         " for ", so_far, from));
        }
      }
      return absl::OkStatus();
    }
    if (!SetScalar(msg, fd, value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot parse '", value, "' as ", TypeName(fd), " for ", so_far, from));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainConfig> ResolveTrainConfig(const std::string& path,
                                               const std::vector<std::string>& overrides) {
  ASSIGN_OR_RETURN(TrainConfig cfg, LoadTrainConfig(path));
  for (const std::string& assignment : overrides) {
    const absl::Status st = ApplyOverride(&cfg, assignment);
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  }
  const absl::Status st = ValidateTrainConfig(cfg);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  return cfg;
}

SplitArgs SplitSetFlags(int argc, char** argv) {
  SplitArgs out;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--set=", 0) == 0) {
      out.overrides.push_back(a.substr(6));
    } else if (a == "--set" && i + 1 < argc) {
      out.overrides.push_back(argv[++i]);
    } else {
      out.rest.push_back(argv[i]);
    }
  }
  out.rest.push_back(nullptr);
  return out;
}

}  // namespace moe::config
