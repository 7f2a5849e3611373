// Passkey retrieval prompts and scoring for tools/eval_long (see passkey.h).
#include "tools/passkey.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "data/prng.h"

namespace moe::passkey {
namespace {

constexpr char kFiller[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
constexpr char kQuestion[] = "What is the pass key? The pass key is ";

std::string KeySentence(const std::string& key) {
  return absl::StrCat("The pass key is ", key, ". Remember it. ", key, " is the pass key. ");
}

}  // namespace

int64_t FixedPromptBytes(const std::string& key) {
  return static_cast<int64_t>(KeySentence(key).size() + std::strlen(kQuestion));
}

std::string PasskeyPrompt(const std::string& key, double depth, int64_t length, int64_t* key_offset) {
  const std::string sentence = KeySentence(key);
  const int64_t filler_len = length - static_cast<int64_t>(sentence.size() + std::strlen(kQuestion));
  // Filler: the last filler_len bytes of enough whole repetitions, so it ends with a full sentence.
  std::string reps;
  while (static_cast<int64_t>(reps.size()) < filler_len) reps += kFiller;
  const std::string filler = reps.substr(reps.size() - filler_len);
  // Sentence boundaries of the filler (0, after every ". ", and its end); pick the nearest to depth·F.
  std::vector<int64_t> cuts = {0};
  for (int64_t j = 2; j <= filler_len; ++j) {
    if (filler[j - 1] == ' ' && filler[j - 2] == '.') cuts.push_back(j);
  }
  if (cuts.back() != filler_len) cuts.push_back(filler_len);
  const double want = depth * static_cast<double>(filler_len);
  int64_t at = cuts[0];
  for (int64_t c : cuts) {
    if (std::abs(static_cast<double>(c) - want) < std::abs(static_cast<double>(at) - want)) at = c;
  }
  *key_offset = at;
  return filler.substr(0, at) + sentence + filler.substr(at) + kQuestion;
}

absl::StatusOr<std::vector<uint32_t>> EncodedPasskeyPrompt(const data::Tokenizer& tokenizer, const std::string& key,
                                                           double depth, int64_t budget, int64_t* key_offset) {
  const int64_t fixed = FixedPromptBytes(key);
  auto encode = [&](int64_t length) {
    return tokenizer.Encode(PasskeyPrompt(key, depth, length, key_offset), /*add_special_tokens=*/true);
  };
  auto fits = [&](int64_t length) { return static_cast<int64_t>(encode(length).size()) <= budget; };
  if (!fits(fixed)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--passkey needs a longer --seq_len: the key sentence and question alone are ", encode(fixed).size(),
        " tokens, and the prompt may have ", budget));
  }
  // Largest fitting length in [fixed, hi): grow hi until it does not fit, then bisect.
  int64_t lo = fixed, hi = std::max(fixed + 1, budget + 1);
  while (fits(hi) && hi < (int64_t{1} << 40)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return encode(lo);
}

absl::Status BuildPasskeyCases(const data::Tokenizer& tokenizer, const std::vector<double>& depths, int64_t trials,
                               int64_t seq, int64_t vocab, uint64_t seed, std::vector<PasskeyDepth>* pk,
                               std::vector<PasskeyCase>* cases) {
  data::SplitMix64 rng(seed);
  for (size_t d = 0; d < depths.size(); ++d) {
    (*pk)[d].depth = depths[d];
    for (int64_t k = 0; k < trials; ++k) {
      const std::string key = absl::StrCat(10000 + rng.Uniform(90000));
      PasskeyCase c;
      c.expected = tokenizer.Encode(key);
      if (c.expected.empty()) return absl::InternalError(absl::StrCat("the key ", key, " encodes to no tokens"));
      // Room for the answer: its first token is predicted from the prompt, the rest are appended, so the
      // longest input is the prompt plus K-1 tokens.
      const int64_t budget = seq - (static_cast<int64_t>(c.expected.size()) - 1);
      ASSIGN_OR_RETURN(const std::vector<uint32_t> enc,
                       EncodedPasskeyPrompt(tokenizer, key, depths[d], budget, &(*pk)[d].key_offset));
      for (uint32_t id : enc) {
        if (id >= static_cast<uint64_t>(vocab)) {
          return absl::InvalidArgumentError(absl::StrCat("--passkey: the prompt encodes to id ", id,
                                                         ", outside the model's vocab_size ", vocab));
        }
      }
      c.ids.assign(enc.begin(), enc.end());
      c.prompt_tokens = static_cast<int64_t>(enc.size());
      (*pk)[d].keys.push_back(key);
      cases->push_back(std::move(c));
    }
  }
  return absl::OkStatus();
}

void ScorePasskey(const data::Tokenizer& tokenizer, const std::vector<PasskeyCase>& cases, int64_t trials,
                  std::vector<PasskeyDepth>* pk) {
  for (size_t d = 0; d < pk->size(); ++d) {
    PasskeyDepth& p = (*pk)[d];
    for (int64_t k = 0; k < trials; ++k) {
      const PasskeyCase& c = cases[d * trials + k];
      const std::vector<uint32_t> out(c.ids.end() - c.expected.size(), c.ids.end());
      const std::string answer = tokenizer.Decode(out);
      const std::string& key = p.keys[k];
      int right = 0;
      for (int i = 0; i < kKeyDigits; ++i) {
        if (c.expected.size() == static_cast<size_t>(kKeyDigits)) {  // one token per digit
          right += out[i] == c.expected[i] ? 1 : 0;
        } else {
          right += static_cast<size_t>(i) < answer.size() && answer[i] == key[i] ? 1 : 0;
        }
      }
      p.exact += answer == key ? 1 : 0;
      p.digits_right += right;
      p.trials += 1;
      p.answers.push_back(answer);
    }
  }
}

}  // namespace moe::passkey
