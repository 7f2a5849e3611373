#include "data/token_file.h"

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"

namespace moe::data {

absl::StatusOr<Batch> ReadBatchFromTokenFile(const std::string& path, int64_t batch, int64_t seq) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open token file ", path));
  std::fseek(f.get(), 0, SEEK_END);
  const long size = std::ftell(f.get());
  std::fseek(f.get(), 0, SEEK_SET);
  if (size < 0 || size % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " has ", size, " bytes, not a whole number of uint32 tokens"));
  }
  const int64_t need = batch * seq + 1;
  if (size / 4 < need) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " holds ", size / 4,
                                                   " tokens; batch ", batch, " x seq_len ", seq,
                                                   " needs ", need));
  }
  std::vector<unsigned char> bytes(need * 4);
  if (std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
    return absl::DataLossError(absl::StrCat("short read from token file ", path));
  }
  std::vector<int64_t> z(need);
  for (int64_t i = 0; i < need; ++i) {
    const unsigned char* p = &bytes[4 * i];
    const uint32_t v = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
    if (v > 0x7fffffffu) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i, " of ", path, " is ", v, ", too large"));
    }
    z[i] = v;
  }
  Batch b;
  b.inputs.resize(batch * seq);
  b.targets.resize(batch * seq);
  for (int64_t i = 0; i < batch * seq; ++i) {
    b.inputs[i] = static_cast<int32_t>(z[i]);
    b.targets[i] = static_cast<int32_t>(z[i + 1]);
  }
  return b;
}

}  // namespace moe::data
