#include "model/inference/speculative.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace moe::inference {

int32_t Argmax(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

absl::StatusOr<std::vector<int32_t>> GenerateGreedy(IncrementalDecoder& decoder, const std::vector<int32_t>& prompt,
                                                    int64_t max_new, int32_t eos,
                                                    const std::function<void(int32_t)>& on_token) {
  std::vector<int32_t> out;
  if (max_new <= 0) return out;
  ASSIGN_OR_RETURN(DecodeOutput step, decoder.Forward(prompt));
  const int64_t vocab = static_cast<int64_t>(step.logits.size()) / step.n;
  while (true) {
    const int32_t next = Argmax(step.logits.data() + (step.n - 1) * vocab, vocab);
    out.push_back(next);
    on_token(next);
    if (next == eos || static_cast<int64_t>(out.size()) == max_new) return out;
    ASSIGN_OR_RETURN(step, decoder.Forward({next}));
  }
}

absl::StatusOr<std::vector<int32_t>> GenerateGreedySpeculative(IncrementalDecoder& decoder,
                                                               const std::vector<int32_t>& prompt,
                                                               int64_t max_new, int32_t eos,
                                                               const std::function<void(int32_t)>& on_token,
                                                               SpeculativeStats* stats) {
  const int64_t depths = decoder.mtp_depths();
  if (depths == 0) return absl::FailedPreconditionError("speculative decoding needs the model's MTP modules");
  if (decoder.position() != 0) return absl::FailedPreconditionError("speculative decoding needs a fresh decoder");
  stats->accepted_at_depth.assign(depths, 0);
  std::vector<int32_t> out;
  if (max_new <= 0) return out;

  // x: the committed tokens (prompt and output). The main model has processed every position but the
  // last; main_hidden[t] is its h^0 at position t. mtp_hidden[k-1][t] is module k's h^k at its position t.
  std::vector<int32_t> x = prompt;
  ASSIGN_OR_RETURN(DecodeOutput pass, decoder.Forward(prompt));
  const int64_t vocab = static_cast<int64_t>(pass.logits.size()) / pass.n;
  const int64_t d = static_cast<int64_t>(pass.hidden.size()) / pass.n;
  std::vector<float> main_hidden = pass.hidden;
  std::vector<std::vector<float>> mtp_hidden(depths);
  auto commit = [&](int32_t token) {  // true when generation is over
    x.push_back(token);
    out.push_back(token);
    on_token(token);
    return token == eos || static_cast<int64_t>(out.size()) == max_new;
  };
  if (commit(Argmax(pass.logits.data() + (pass.n - 1) * vocab, vocab))) return out;

  while (true) {
    const int64_t c = static_cast<int64_t>(x.size());  // positions 0 .. c-2 are in the main cache
    const int64_t t = c - 2;                            // the position whose h^0 predicted x[c-1]
    // Draft: module k at positions mtp_position(k) .. t (inputs h^{k-1} and x_{t'+k}, drafts included);
    // its output at t predicts x[c-1+k].
    std::vector<int32_t> y = x;  // committed tokens, then the drafts
    const int64_t room = std::min({depths, max_new - static_cast<int64_t>(out.size()),
                                   decoder.max_length() - c});  // positions the verify pass may use
    for (int64_t k = 1; k <= room; ++k) {
      const int64_t first = decoder.mtp_position(k);
      const std::vector<float>& prev = k == 1 ? main_hidden : mtp_hidden[k - 2];
      std::vector<float> h_prev(prev.begin() + first * d, prev.begin() + (t + 1) * d);
      std::vector<int32_t> tokens(y.begin() + first + k, y.begin() + t + k + 1);
      ASSIGN_OR_RETURN(DecodeOutput drafted, decoder.MtpForward(k, h_prev, tokens));
      std::vector<float>& hk = mtp_hidden[k - 1];
      hk.resize(first * d);
      hk.insert(hk.end(), drafted.hidden.begin(), drafted.hidden.end());
      y.push_back(Argmax(drafted.logits.data() + (drafted.n - 1) * vocab, vocab));
    }
    // Keep in each module only the positions t' <= c-1-k, whose inputs are all committed.
    for (int64_t k = 1; k <= depths; ++k) {
      const int64_t keep = std::max<int64_t>(0, std::min(decoder.mtp_position(k), c - k));
      decoder.MtpTruncate(k, keep);
      mtp_hidden[k - 1].resize(keep * d);
    }
    // Verify x[c-1] and the drafts in one pass of the main model.
    const std::vector<int32_t> verify(y.begin() + c - 1, y.end());
    const int64_t drafts = static_cast<int64_t>(verify.size()) - 1;
    ASSIGN_OR_RETURN(pass, decoder.Forward(verify));
    ++stats->rounds;
    stats->drafted += drafts;
    int64_t kept = 0;
    while (kept < drafts && verify[kept + 1] == Argmax(pass.logits.data() + kept * vocab, vocab)) ++kept;
    stats->accepted += kept;
    for (int64_t k = 0; k < kept; ++k) ++stats->accepted_at_depth[k];
    decoder.Truncate(c + kept);  // positions of x[c-1] and the kept drafts
    main_hidden.resize((c - 1) * d);
    main_hidden.insert(main_hidden.end(), pass.hidden.begin(), pass.hidden.begin() + (kept + 1) * d);
    for (int64_t k = 1; k <= kept; ++k) {
      if (commit(verify[k])) return out;
    }
    if (commit(Argmax(pass.logits.data() + kept * vocab, vocab))) return out;
  }
}

}  // namespace moe::inference
