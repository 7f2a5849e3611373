// tokenizer.json normalizers: none, NFC, NFKC, NFD, NFKD and Sequence of them, on ICU.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace moe::data::hf {

enum class NormalForm { kNFC, kNFKC, kNFD, kNFKD };

class Normalizer {
 public:
  Normalizer() = default;  // the identity (normalizer: null, or an empty Sequence)
  explicit Normalizer(std::vector<NormalForm> forms) : forms_(std::move(forms)) {}

  bool is_identity() const { return forms_.empty(); }
  // `text` (valid UTF-8) with every form applied in order.
  std::string Apply(absl::string_view text) const;

 private:
  std::vector<NormalForm> forms_;
};

}  // namespace moe::data::hf
