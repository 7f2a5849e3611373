// See normalizer.h.
#include "data/hf_tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <cstdio>
#include <cstdlib>

namespace moe::data::hf {
namespace {

const icu::Normalizer2& Instance(NormalForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormalForm::kNFC: n = icu::Normalizer2::getNFCInstance(status); break;
    case NormalForm::kNFKC: n = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalForm::kNFD: n = icu::Normalizer2::getNFDInstance(status); break;
    case NormalForm::kNFKD: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || n == nullptr) {
    std::fprintf(stderr, "tokenizer: ICU normalizer unavailable: %s\n", u_errorName(status));
    std::abort();
  }
  return *n;
}

}  // namespace

std::string Normalizer::Apply(absl::string_view text) const {
  std::string current(text);
  for (const NormalForm form : forms_) {
    const icu::Normalizer2& n = Instance(form);
    UErrorCode status = U_ZERO_ERROR;
    const icu::StringPiece piece(current.data(), static_cast<int32_t>(current.size()));
    if (n.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) continue;  // the common case: no copy
    status = U_ZERO_ERROR;
    std::string next;
    icu::StringByteSink<std::string> sink(&next, static_cast<int32_t>(current.size()));
    n.normalizeUTF8(0, piece, sink, nullptr, status);
    if (U_FAILURE(status)) {
      std::fprintf(stderr, "tokenizer: ICU normalization failed: %s\n", u_errorName(status));
      std::abort();
    }
    current = std::move(next);
  }
  return current;
}

}  // namespace moe::data::hf
