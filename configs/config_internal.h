// Private helpers shared by the files of //configs:config_loader (config_loader.cc, config_validation.cc,
// hf_config_json.cc). Not part of the public API: callers include configs/config_loader.h only.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "configs/config.pb.h"

namespace moe::config::internal {

// Reads the whole file at `path`; errors name it as `what` ("config file", "config.json").
// Defined in config_loader.cc.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, absl::string_view what);

// Accumulates problems; each is one self-contained sentence naming its field(s).
class Problems {
 public:
  template <typename... Args>
  void Add(const absl::FormatSpec<Args...>& format, const Args&... args) {
    list_.push_back(absl::StrFormat(format, args...));
  }
  bool empty() const { return list_.empty(); }
  absl::Status ToStatus(absl::string_view prefix = "") const {
    if (list_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(prefix, absl::StrJoin(list_, "; ")));
  }

 private:
  std::vector<std::string> list_;
};

// Checks the model block, adding one problem per violation; `p` is the field-name prefix ("model." in a
// TrainConfig, "" in a config.json). Defined in config_validation.cc.
void ValidateModel(const ModelConfig& m, const std::string& p, Problems* out);

}  // namespace moe::config::internal
