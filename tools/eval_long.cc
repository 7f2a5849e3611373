// eval_long: how well a model uses context beyond the length it was trained at (context extension with
// YaRN or linear RoPE scaling, docs/model.md "YaRN"). One process, CPU backend, FP32.
//
//   eval_long --model=DIR --tokens=PREFIX_OR_FILE --seq_len=T [--base_len=L] [--num_sequences=N]
//             [--rope_scaling=keep|none|yarn:FACTOR[:L0]|linear:FACTOR] [--passkey=true]
//             [--passkey_depths=0,0.25,0.5,0.75,1] [--passkey_trials=5] [--seed=1] [--json=out.json]
//             [--tokenizer=byte|PATH]
//
// --model: a Hugging Face directory (config.json + safetensors), a native checkpoint step directory
//   (manifest; the config is the one saved in it), a checkpoint root holding `latest`, or a run's
//   output_dir (its checkpoints/latest).
// --tokens: a token shard prefix (PREFIX.tokens + PREFIX.index, data/token_shard.h) or a flat file of
//   uint32 little-endian ids. A shard written with another tokenizer than the model's is refused.
// --tokenizer: the model's tokenizer is the one stored beside the weights (tokenizer.json in the step or
//   HF directory, trainer/stored_tokenizer.h), else the byte tokenizer; this flag overrides it.
// --rope_scaling: evaluate the same weights with another RoPE scaling, without fine-tuning: `none`
//   drops the block, `yarn:F` switches YaRN on (L0 = the config's original_max_position_embeddings if it
//   has one, else its max_position_embeddings; beta_fast 32, beta_slow 1, mscale = mscale_all_dim = 1),
//   `linear:F` divides every frequency by F. max_position_embeddings grows to cover T.
//
// Loss: N windows of T+1 tokens, non-overlapping, evenly spaced over the token source (window n starts
// at n·⌊tokens/N⌋). Position t ∈ [0, T) is the prediction of token t+1 from tokens 0..t. Mean
// next-token loss (nats) and perplexity per bucket [0,L), [L,2L), [2L,4L), [4L,8L), ... (the last one
// ends at T), and "long_over_short" = mean loss over [L, T) / mean loss over [0, L).
// Passkey: for each depth and trial a text prompt: filler text with
// "The pass key is NNNNN. Remember it. NNNNN is the pass key. " inserted at that depth fraction
// (snapped to the nearest sentence boundary), ending in "What is the pass key? The pass key is ",
// encoded with the model's tokenizer (with its special tokens, e.g. a BOS); then as many greedy tokens
// as the key encodes to, K (the model re-run on the growing sequence). The filler is as long as fits
// T-K+1 tokens, so the longest input is T tokens: with the byte tokenizer, T-4 bytes and 5 tokens.
// Exact match: the decoded answer is the key. Digit accuracy: per token when the key is one token per
// digit (the byte tokenizer), else per character of the decoded answer. Keys come from SplitMix64(seed).
// Prompt building and scoring: tools/passkey.h.
//
// Deterministic: the same inputs and flags give the same numbers and byte-identical JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/file_util.h"
#include "base/json.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "data/tokenizer.h"
#include "data/token_shard.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/hf/hf_checkpoint.h"
#include "model/model.h"
#include "model/rope.h"
#include "trainer/checkpoint.h"
#include "trainer/init_from.h"
#include "tools/passkey.h"
#include "trainer/stored_tokenizer.h"

ABSL_FLAG(std::string, model, "", "HF directory, native checkpoint step directory, checkpoint root or run dir");
ABSL_FLAG(std::string, tokens, "", "token shard prefix (PREFIX.tokens/.index) or flat uint32 LE file");
ABSL_FLAG(int64_t, seq_len, 0, "evaluation length T");
ABSL_FLAG(int64_t, base_len, 0,
          "L: the trained length (0: rope_scaling.original_max_position_embeddings, else T/4)");
ABSL_FLAG(int64_t, num_sequences, 16, "windows of T+1 tokens to score");
ABSL_FLAG(int64_t, batch, 4, "sequences per forward pass");
ABSL_FLAG(std::string, rope_scaling, "keep", "keep | none | yarn:FACTOR[:L0] | linear:FACTOR");
ABSL_FLAG(bool, passkey, false, "also run passkey retrieval");
ABSL_FLAG(std::string, passkey_depths, "0,0.25,0.5,0.75,1", "depth fractions of the key in the prompt");
ABSL_FLAG(int64_t, passkey_trials, 5, "prompts (keys) per depth");
ABSL_FLAG(uint64_t, seed, 1, "seed of the passkey digits");
ABSL_FLAG(std::string, json, "", "write the results as JSON here");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0: all cores)");
ABSL_FLAG(std::string, tokenizer, "",
          "\"byte\", or a tokenizer.json file or a directory holding one; default: the tokenizer stored "
          "with the model, else byte");

namespace moe {
namespace {

// Passkey prompts and scoring: tools/passkey.h.
using passkey::BuildPasskeyCases;
using passkey::FixedPromptBytes;
using passkey::kKeyDigits;
using passkey::PasskeyCase;
using passkey::PasskeyDepth;
using passkey::ScorePasskey;


// ---- model loading ---------------------------------------------------------------------------------

// Applies --rope_scaling and makes max_position_embeddings cover T. Returns a one-line description.
absl::StatusOr<std::string> ApplyRopeOverride(const std::string& spec, int64_t seq, config::ModelConfig* m) {
  const std::vector<std::string> parts = absl::StrSplit(spec, ':');
  const std::string& kind = parts[0];
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rope_scaling=", spec, ": ", why, " (keep | none | yarn:FACTOR[:L0] | linear:FACTOR)"));
  };
  if (kind == "keep") {
    if (parts.size() != 1) return bad("`keep` takes no arguments");
  } else if (kind == "none") {
    if (parts.size() != 1) return bad("`none` takes no arguments");
    m->clear_rope_scaling();
  } else if (kind == "yarn" || kind == "linear") {
    if (parts.size() < 2 || parts.size() > (kind == "yarn" ? 3u : 2u)) return bad("wrong number of fields");
    double factor = 0;
    if (!absl::SimpleAtod(parts[1], &factor) || !(factor > 0)) return bad("FACTOR must be a number > 0");
    int64_t l0 = m->has_rope_scaling() && m->rope_scaling().has_original_max_position_embeddings()
                     ? m->rope_scaling().original_max_position_embeddings()
                     : m->max_position_embeddings();
    if (parts.size() == 3 && (!absl::SimpleAtoi(parts[2], &l0) || l0 <= 0)) return bad("L0 must be an integer > 0");
    config::RopeScaling rs;
    rs.set_type(kind);
    rs.set_factor(factor);
    rs.set_original_max_position_embeddings(l0);
    if (kind == "yarn") {
      rs.set_beta_fast(32);
      rs.set_beta_slow(1);
      rs.set_mscale(1);
      rs.set_mscale_all_dim(1);
      m->set_max_position_embeddings(static_cast<int64_t>(std::llround(factor * static_cast<double>(l0))));
    }
    *m->mutable_rope_scaling() = rs;
  } else {
    return bad(absl::StrCat("unknown kind '", kind, "'"));
  }
  if (m->max_position_embeddings() < seq) m->set_max_position_embeddings(seq);
  RETURN_IF_ERROR(config::ValidateModelConfig(*m));

  const std::string type = config::EffectiveRopeScalingType(*m);
  if (type == "none") return std::string("none");
  const auto& rs = m->rope_scaling();
  if (type == "linear") return absl::StrFormat("linear factor %g", rs.factor());
  return absl::StrFormat("yarn factor %g L0 %d beta_fast %g beta_slow %g mscale %g mscale_all_dim %g",
                         rs.factor(), rs.original_max_position_embeddings(), rs.beta_fast(), rs.beta_slow(),
                         rs.mscale(), rs.mscale_all_dim());
}

// ---- token source ----------------------------------------------------------------------------------

// A shard whose vocabulary exceeds the model's, or written with another tokenizer than the model's
// (unless the model stores none), is refused as a whole; flat files are checked window by window.
absl::StatusOr<std::vector<uint32_t>> ReadTokens(const std::string& path, int64_t model_vocab,
                                                 const trainer::ModelTokenizer& tokenizer) {
  if (FileExists(path + ".index")) {
    ASSIGN_OR_RETURN(data::TokenShard shard, data::TokenShard::Open(path, data::ShardValidation::kHeader));
    if (shard.vocab_size() > model_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("--tokens=", path, ": the shard's vocab_size ", shard.vocab_size(),
                                                     " exceeds the model's vocab_size ", model_vocab));
    }
    const std::string& fingerprint = tokenizer.tokenizer->fingerprint();
    if (!tokenizer.by_default && shard.tokenizer_fingerprint() != fingerprint) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tokens=", path, " was written with tokenizer ", shard.tokenizer_fingerprint(), " (\"",
          shard.tokenizer(), "\"), but the model's tokenizer (", tokenizer.source, ") is ", fingerprint, " (\"",
          tokenizer.tokenizer->name(), "\"): use a shard made with the model's tokenizer, or pass --tokenizer"));
    }
    return std::vector<uint32_t>(shard.tokens(), shard.tokens() + shard.num_tokens());
  }
  if (!FileExists(path)) {
    return absl::NotFoundError(absl::StrCat("--tokens=", path, ": neither a shard prefix (", path,
                                            ".index) nor a file"));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  if (bytes.size() % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": size ", bytes.size(), " is not a multiple of 4"));
  }
  std::vector<uint32_t> ids(bytes.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data() + 4 * i);
    ids[i] = uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
  }
  return ids;
}

// ---- evaluation ------------------------------------------------------------------------------------

struct Bucket {
  int64_t begin = 0, end = 0, tokens = 0;
  double loss_sum = 0;
  double loss() const { return tokens ? loss_sum / tokens : 0.0; }
};

// Next-token losses [batch·seq] from logits [batch·seq, V] (log-softmax in double).
void TokenLosses(const std::vector<float>& logits, const int32_t* targets, int64_t n, int64_t vocab,
                 std::vector<double>* out) {
  out->resize(n);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = logits.data() + r * vocab;
    double mx = row[0];
    for (int64_t v = 1; v < vocab; ++v) mx = std::max<double>(mx, row[v]);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    (*out)[r] = mx + std::log(sum) - static_cast<double>(row[targets[r]]);
  }
}

// Argmax of the last position of each sequence: logits [batch·seq, V].
std::vector<int32_t> LastArgmax(const std::vector<float>& logits, int64_t batch, int64_t seq, int64_t vocab) {
  std::vector<int32_t> out(batch);
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = logits.data() + ((b + 1) * seq - 1) * vocab;
    out[b] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // first maximum on ties
  }
  return out;
}

absl::Status Run() {
  const absl::Time start = absl::Now();
  const int64_t seq = absl::GetFlag(FLAGS_seq_len);
  const int64_t num_seq = absl::GetFlag(FLAGS_num_sequences);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("--model is required");
  if (absl::GetFlag(FLAGS_tokens).empty()) return absl::InvalidArgumentError("--tokens is required");
  if (seq <= 0) return absl::InvalidArgumentError("--seq_len must be > 0");
  if (num_seq <= 0 || batch <= 0) return absl::InvalidArgumentError("--num_sequences and --batch must be > 0");

  ASSIGN_OR_RETURN(const std::string dir, trainer::ResolveWeightsDir(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(config::ModelConfig cfg, trainer::WeightsModelConfig(dir));
  if (cfg.num_nextn_predict_layers() > 0) cfg.set_num_nextn_predict_layers(0);  // main model only
  const int64_t trained_max_pos = cfg.max_position_embeddings();
  ASSIGN_OR_RETURN(const std::string rope_desc, ApplyRopeOverride(absl::GetFlag(FLAGS_rope_scaling), seq, &cfg));
  int64_t base_len = absl::GetFlag(FLAGS_base_len);
  if (base_len <= 0) {
    base_len = cfg.has_rope_scaling() && cfg.rope_scaling().original_max_position_embeddings() > 0
                   ? cfg.rope_scaling().original_max_position_embeddings()
                   : std::max<int64_t>(1, seq / 4);
  }
  const int64_t vocab = cfg.vocab_size();

  ASSIGN_OR_RETURN(const trainer::ModelTokenizer model_tokenizer,
                   trainer::LoadModelTokenizer(dir, absl::GetFlag(FLAGS_tokenizer)));
  const data::Tokenizer& tokenizer = *model_tokenizer.tokenizer;
  const bool byte_tokenizer = tokenizer.fingerprint() == trainer::kByteFingerprint;

  // Passkey settings, checked before the (slow) evaluation.
  const bool passkey = absl::GetFlag(FLAGS_passkey);
  std::vector<double> depths;
  const int64_t trials = absl::GetFlag(FLAGS_passkey_trials);
  const int64_t prompt_len = seq - (kKeyDigits - 1);  // byte tokenizer: with 4 decoded digits appended, T tokens
  if (passkey) {
    for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_passkey_depths), ',', absl::SkipEmpty())) {
      double d = 0;
      if (!absl::SimpleAtod(s, &d) || d < 0 || d > 1) {
        return absl::InvalidArgumentError(absl::StrCat("--passkey_depths: '", s, "' is not a number in [0, 1]"));
      }
      depths.push_back(d);
    }
    if (depths.empty()) return absl::InvalidArgumentError("--passkey_depths is empty");
    if (trials <= 0) return absl::InvalidArgumentError("--passkey_trials must be > 0");
    const int64_t fixed = FixedPromptBytes("00000");
    if (byte_tokenizer && prompt_len < fixed) {
      return absl::InvalidArgumentError(absl::StrCat("--passkey needs --seq_len >= ", fixed + kKeyDigits - 1,
                                                     " (key sentence and question alone are ", fixed, " bytes)"));
    }
    if (byte_tokenizer && vocab < 256) {
      return absl::InvalidArgumentError("--passkey needs a byte-level model (vocab_size >= 256)");
    }
    if (model_tokenizer.by_default && vocab != 256 && vocab != 257) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--passkey: ", dir, " stores no tokenizer (no ", trainer::kTokenizerFile, ") and its vocab_size is ",
          vocab, ", not the byte tokenizer's 256 or 257: pass --tokenizer=the model's tokenizer.json or its "
          "directory"));
    }
    if (!byte_tokenizer && tokenizer.vocab_size() > vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--passkey: tokenizer ", tokenizer.name(), " (", model_tokenizer.source, ") has ", tokenizer.vocab_size(),
          " ids but the model's vocab_size is ", vocab, ": it is not this model's tokenizer"));
    }
  }

  // Passkey prompts (built before the evaluation, so a bad --seq_len fails early).
  std::vector<PasskeyDepth> pk(depths.size());
  std::vector<PasskeyCase> cases;  // [D·trials]
  if (passkey) {
    RETURN_IF_ERROR(BuildPasskeyCases(tokenizer, depths, trials, seq, vocab, absl::GetFlag(FLAGS_seed), &pk, &cases));
  }

  // Windows.
  ASSIGN_OR_RETURN(const std::vector<uint32_t> tokens, ReadTokens(absl::GetFlag(FLAGS_tokens), vocab, model_tokenizer));
  const int64_t total = static_cast<int64_t>(tokens.size());
  const int64_t stride = total / num_seq;
  if (stride < seq + 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tokens=", absl::GetFlag(FLAGS_tokens), " holds ", total,
                                                   " tokens: too few for ", num_seq, " windows of ", seq + 1));
  }
  for (int64_t n = 0; n < num_seq; ++n) {
    for (int64_t t = 0; t <= seq; ++t) {
      if (tokens[n * stride + t] >= static_cast<uint32_t>(vocab)) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[n * stride + t], " at ", n * stride + t,
                                                       " of ", absl::GetFlag(FLAGS_tokens), " is >= vocab_size ",
                                                       vocab));
      }
    }
  }

  // Model (FP32, one process), weights through the trainer's --init_from path.
  kernels::CpuBackend ops(absl::GetFlag(FLAGS_threads));
  model::DeepseekV3Model net(cfg, model::Numerics::kFp32, &ops, seq);
  std::vector<std::string> warnings;
  RETURN_IF_ERROR(trainer::InitWeightsFrom(dir, cfg, /*bf16=*/false, &net.params(), ops, &warnings));
  for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());

  std::printf("eval_long: model %s\n", dir.c_str());
  std::printf("  tokenizer %s, %s\n", trainer::DescribeTokenizer(tokenizer).c_str(), model_tokenizer.source.c_str());
  std::printf("  seq_len %lld, base_len %lld, %lld windows from %s (%lld tokens), rope_scaling: %s\n",
              static_cast<long long>(seq), static_cast<long long>(base_len), static_cast<long long>(num_seq),
              absl::GetFlag(FLAGS_tokens).c_str(), static_cast<long long>(total), rope_desc.c_str());
  std::printf("  softmax scale %.6g, RoPE attention factor %.6g\n", model::SoftmaxScale(cfg),
              model::RopeAttentionFactor(cfg));
  if (seq > trained_max_pos) {
    std::printf("  note: seq_len %lld exceeds the config's max_position_embeddings %lld\n",
                static_cast<long long>(seq), static_cast<long long>(trained_max_pos));
  }

  // Per-position loss sums.
  std::vector<double> pos_sum(seq, 0.0);
  std::vector<double> losses;
  for (int64_t n0 = 0; n0 < num_seq; n0 += batch) {
    const int64_t b = std::min(batch, num_seq - n0);
    std::vector<int32_t> ids(b * seq), targets(b * seq);
    for (int64_t i = 0; i < b; ++i) {
      const uint32_t* w = tokens.data() + (n0 + i) * stride;
      for (int64_t t = 0; t < seq; ++t) {
        ids[i * seq + t] = static_cast<int32_t>(w[t]);
        targets[i * seq + t] = static_cast<int32_t>(w[t + 1]);
      }
    }
    const std::vector<float> logits = net.Logits(ids.data(), b, seq);
    TokenLosses(logits, targets.data(), b * seq, vocab, &losses);
    for (int64_t i = 0; i < b; ++i) {
      for (int64_t t = 0; t < seq; ++t) pos_sum[t] += losses[i * seq + t];
    }
  }

  std::vector<Bucket> buckets;
  for (int64_t lo = 0, hi = std::min(base_len, seq); lo < seq; lo = hi, hi = std::min(2 * hi, seq)) {
    Bucket bk;
    bk.begin = lo;
    bk.end = hi;
    for (int64_t t = lo; t < hi; ++t) bk.loss_sum += pos_sum[t];
    bk.tokens = (hi - lo) * num_seq;
    buckets.push_back(bk);
  }
  Bucket all{0, seq, 0, 0}, shorter{0, std::min(base_len, seq), 0, 0}, longer{std::min(base_len, seq), seq, 0, 0};
  for (int64_t t = 0; t < seq; ++t) {
    Bucket& side = t < base_len ? shorter : longer;
    side.loss_sum += pos_sum[t];
    side.tokens += num_seq;
    all.loss_sum += pos_sum[t];
    all.tokens += num_seq;
  }
  const double ratio = longer.tokens && shorter.loss() > 0 ? longer.loss() / shorter.loss() : 0.0;

  std::printf("\n  %-14s %8s %10s %10s\n", "positions", "tokens", "loss", "ppl");
  for (const Bucket& bk : buckets) {
    std::printf("  %-14s %8lld %10.4f %10.3f\n", absl::StrFormat("[%d,%d)", bk.begin, bk.end).c_str(),
                static_cast<long long>(bk.tokens), bk.loss(), std::exp(bk.loss()));
  }
  std::printf("  %-14s %8lld %10.4f %10.3f\n", "all", static_cast<long long>(all.tokens), all.loss(),
              std::exp(all.loss()));
  if (longer.tokens) {
    std::printf("  mean loss [%lld,%lld) / mean loss [0,%lld) = %.4f / %.4f = %.4f\n",
                static_cast<long long>(longer.begin), static_cast<long long>(seq),
                static_cast<long long>(shorter.end), longer.loss(), shorter.loss(), ratio);
  }

  // Passkey retrieval: greedy answer tokens, one decoding step at a time for every prompt that still
  // needs tokens; consecutive prompts of the same length run as one batch (in chunks of --batch). With
  // the byte tokenizer every prompt has the same length and needs 5 tokens.
  int64_t max_prompt_tokens = 0;
  if (passkey) {
    const int64_t count = static_cast<int64_t>(cases.size());
    size_t steps = 0;
    for (const PasskeyCase& c : cases) {
      steps = std::max(steps, c.expected.size());
      max_prompt_tokens = std::max(max_prompt_tokens, c.prompt_tokens);
    }
    for (size_t step = 0; step < steps; ++step) {
      std::vector<int64_t> active;
      for (int64_t i = 0; i < count; ++i) {
        if (cases[i].expected.size() > step) active.push_back(i);
      }
      for (size_t a0 = 0; a0 < active.size();) {
        const size_t len = cases[active[a0]].ids.size();
        size_t a1 = a0;
        while (a1 < active.size() && a1 - a0 < static_cast<size_t>(batch) && cases[active[a1]].ids.size() == len) ++a1;
        const int64_t b = static_cast<int64_t>(a1 - a0);
        std::vector<int32_t> ids;
        for (size_t a = a0; a < a1; ++a) ids.insert(ids.end(), cases[active[a]].ids.begin(), cases[active[a]].ids.end());
        const std::vector<int32_t> next =
            LastArgmax(net.Logits(ids.data(), b, static_cast<int64_t>(len)), b, static_cast<int64_t>(len), vocab);
        for (size_t a = a0; a < a1; ++a) cases[active[a]].ids.push_back(next[a - a0]);
        a0 = a1;
      }
    }
    ScorePasskey(tokenizer, cases, trials, &pk);
    if (byte_tokenizer) {
      std::printf("\n  passkey retrieval: %lld-byte prompts + %d greedy tokens, %lld trials per depth, seed %llu\n",
                  static_cast<long long>(prompt_len), kKeyDigits, static_cast<long long>(trials),
                  static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)));
    } else {
      std::printf("\n  passkey retrieval: prompts of up to %lld tokens + the key's tokens greedily, %lld trials per "
                  "depth, seed %llu\n",
                  static_cast<long long>(max_prompt_tokens), static_cast<long long>(trials),
                  static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)));
    }
    std::printf("  %-8s %8s %10s %10s   %s\n", "depth", "offset", "exact", "digits", "first key -> answer");
    for (const PasskeyDepth& p : pk) {
      std::printf("  %-8g %8lld %10.2f %10.2f   %s -> %s\n", p.depth, static_cast<long long>(p.key_offset),
                  static_cast<double>(p.exact) / p.trials,
                  static_cast<double>(p.digits_right) / (p.trials * kKeyDigits), p.keys[0].c_str(),
                  absl::CEscape(p.answers[0]).c_str());
    }
  }

  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::string j = "{\n";
    absl::StrAppendFormat(&j, "  \"model\": %s,\n", JsonQuote(dir));
    absl::StrAppendFormat(&j, "  \"tokens\": %s,\n", JsonQuote(absl::GetFlag(FLAGS_tokens)));
    absl::StrAppendFormat(&j, "  \"tokenizer\": %s,\n", JsonQuote(tokenizer.fingerprint()));
    absl::StrAppendFormat(&j, "  \"seq_len\": %d,\n  \"base_len\": %d,\n  \"num_sequences\": %d,\n", seq,
                          base_len, num_seq);
    absl::StrAppendFormat(&j, "  \"rope_scaling\": %s,\n", JsonQuote(rope_desc));
    absl::StrAppendFormat(&j, "  \"softmax_scale\": %.17g,\n  \"rope_attention_factor\": %.17g,\n",
                          model::SoftmaxScale(cfg), model::RopeAttentionFactor(cfg));
    j += "  \"buckets\": [";
    for (size_t i = 0; i < buckets.size(); ++i) {
      absl::StrAppendFormat(&j, "%s\n    {\"begin\": %d, \"end\": %d, \"tokens\": %d, \"loss\": %.17g, \"ppl\": %.17g}",
                            i ? "," : "", buckets[i].begin, buckets[i].end, buckets[i].tokens, buckets[i].loss(),
                            std::exp(buckets[i].loss()));
    }
    absl::StrAppendFormat(&j, "\n  ],\n  \"loss\": %.17g,\n  \"loss_short\": %.17g,\n", all.loss(), shorter.loss());
    absl::StrAppendFormat(&j, "  \"loss_long\": %.17g,\n  \"long_over_short\": %.17g,\n", longer.loss(), ratio);
    j += "  \"position_loss\": [";
    for (int64_t t = 0; t < seq; ++t) absl::StrAppendFormat(&j, "%s%.9g", t ? ", " : "", pos_sum[t] / num_seq);
    j += "]";
    if (passkey) {
      int64_t exact = 0, n = 0;
      for (const PasskeyDepth& p : pk) exact += p.exact, n += p.trials;
      absl::StrAppendFormat(&j, ",\n  \"passkey\": {\"prompt_tokens\": %d, \"trials\": %d, \"seed\": %d, "
                                "\"accuracy\": %.17g, \"depths\": [",
                            max_prompt_tokens, trials, absl::GetFlag(FLAGS_seed), static_cast<double>(exact) / n);
      for (size_t d = 0; d < pk.size(); ++d) {
        std::vector<std::string> keys, answers;
        for (const auto& k : pk[d].keys) keys.push_back(absl::StrCat("\"", k, "\""));
        for (const auto& a : pk[d].answers) {
          answers.push_back(JsonQuote(a, /*escape_non_ascii=*/true));
        }
        absl::StrAppendFormat(&j, "%s\n    {\"depth\": %.17g, \"key_offset\": %d, \"accuracy\": %.17g, "
                                  "\"digit_accuracy\": %.17g, \"keys\": [%s], \"answers\": [%s]}",
                              d ? "," : "", pk[d].depth, pk[d].key_offset,
                              static_cast<double>(pk[d].exact) / pk[d].trials,
                              static_cast<double>(pk[d].digits_right) / (pk[d].trials * kKeyDigits),
                              absl::StrJoin(keys, ", "), absl::StrJoin(answers, ", "));
      }
      j += "\n  ]}";
    }
    j += "\n}\n";
    RETURN_IF_ERROR(WriteFileAtomically(absl::GetFlag(FLAGS_json), j));
    std::printf("\n  wrote %s\n", absl::GetFlag(FLAGS_json).c_str());
  }
  std::fflush(stdout);
  std::fprintf(stderr, "eval_long: %.1f s\n", absl::ToDoubleSeconds(absl::Now() - start));
  return absl::OkStatus();
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = moe::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "eval_long: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
