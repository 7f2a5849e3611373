// A flat file of uint32 little-endian token ids, and the batch layout of docs/model.md "Batch layout and
// cross-entropy" over it:
// the first B·T+1 tokens z_0..z_{BT}; x[b,t] = z[bT+t], y[b,t] = z[bT+t+1]. Used by hf_eval and the
// trainer's eval mode so that every implementation scores exactly the same batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moe::data {

struct Batch {
  std::vector<int32_t> inputs;   // [B, T]
  std::vector<int32_t> targets;  // [B, T]
};

// Refuses a file shorter than B·T+1 tokens or whose size is not a multiple of 4, naming the file.
absl::StatusOr<Batch> ReadBatchFromTokenFile(const std::string& path, int64_t batch, int64_t seq);

}  // namespace moe::data
