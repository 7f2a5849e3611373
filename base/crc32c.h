// CRC32C (Castagnoli), the checksum of every checkpoint shard. Abseil 20220623 has no absl/crc, so
// this is a small table-driven implementation (slicing-by-1; checkpoints are I/O bound).
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe {

// Extends `crc` (0 for a fresh checksum) over n bytes.
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace moe
