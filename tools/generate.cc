// generate: text from a trained model, token by token with the absorbed MLA latent cache
// (model/inference/decoder.h, docs/model.md, "Attention with an absorbed latent cache").
//
//   generate --model=DIR --prompt="text" [--max_new_tokens=100] [--temperature=0.8] [--top_p=0.95]
//            [--seed=1] [--precision=fp32|bf16] [--threads=1] [--tokenizer=byte|PATH] [--speculative=mtp]
//
// DIR is a Hugging Face directory (config.json + safetensors), a native checkpoint step directory (the
// model config comes from its manifest), a checkpoints root or a run directory (their `latest`). Text is encoded and decoded with the model's tokenizer: the one
// stored beside the weights (tokenizer.json, trainer/stored_tokenizer.h), else the byte-level tokenizer;
// --tokenizer overrides. Its ids must fit the model's vocabulary (the byte tokenizer also serves a
// vocabulary of 256, without the end-of-document id; a model that stores no tokenizer must then have a
// byte-sized vocabulary, 256 or 257, unless --tokenizer names one). The prompt is encoded with the
// tokenizer's special tokens (e.g. a BOS); an empty prompt starts from the BOS id, else the EOS id.
// Sampling: temperature 0 is greedy; otherwise temperature and nucleus top-p with a SplitMix64 stream
// seeded by --seed (the same flags give the same text on any machine). Generation stops after
// --max_new_tokens or at the tokenizer's EOS id (the byte tokenizer's end-of-document id 256), which is
// printed (decoded with special tokens, e.g. <|endoftext|>).
// --speculative=mtp: self-speculative greedy decoding (model/inference/speculative.h): the model's MTP
// modules draft, the main model verifies several tokens per pass; the text is the plain greedy text.
// It needs --temperature=0 (speculative sampling is not implemented) and a model trained with MTP.
// stdout: the prompt and the generated text, then one line "# generate: ..." with the decode speed, the
// KV-cache bytes per token of the absorbed cache against a full multi-head cache, and the tokenizer
// (with --speculative, a line "# speculative: ..." with the acceptance rate first).
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "data/tokenizer.h"
#include "data/prng.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/inference/decoder.h"
#include "model/inference/sampling.h"
#include "model/inference/speculative.h"
#include "model/model.h"
#include "trainer/checkpoint.h"
#include "trainer/init_from.h"
#include "trainer/stored_tokenizer.h"

ABSL_FLAG(std::string, model, "", "Hugging Face directory or native checkpoint step directory");
ABSL_FLAG(std::string, prompt, "", "the text to continue");
ABSL_FLAG(int64_t, max_new_tokens, 100, "tokens to generate at most");
ABSL_FLAG(double, temperature, 0.8, "sampling temperature; 0 = greedy");
ABSL_FLAG(double, top_p, 0.95, "nucleus sampling mass in (0, 1]");
ABSL_FLAG(uint64_t, seed, 1, "sampling seed");
ABSL_FLAG(std::string, precision, "fp32", "fp32 or bf16 (working weights and activations)");
ABSL_FLAG(std::string, tokenizer, "",
          "\"byte\", or a tokenizer.json file or a directory holding one; default: the tokenizer stored "
          "with the model, else byte");
ABSL_FLAG(int32_t, threads, 1,
          "CPU threads (0: all cores). One token at a time is a chain of small matrix-vector products: "
          "extra threads only pay off for large models");
ABSL_FLAG(std::string, speculative, "",
          "\"mtp\": greedy self-speculative decoding, the model's MTP modules drafting (needs --temperature=0)");

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Prints generated tokens as they come. A byte-level BPE token can end inside a UTF-8 character, which
// decodes to U+FFFD until the rest arrives, so text ending in U+FFFD is held back (up to a few tokens).
class TextStream {
 public:
  explicit TextStream(const data::Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  void Add(uint32_t id) {
    pending_.push_back(id);
    const std::string text = tokenizer_.Decode(pending_, /*skip_special_tokens=*/false);
    if (absl::EndsWith(text, "\xEF\xBF\xBD") && pending_.size() < kMaxPending) return;
    Write(text);
  }
  void Flush() {
    if (!pending_.empty()) Write(tokenizer_.Decode(pending_, /*skip_special_tokens=*/false));
  }

 private:
  static constexpr size_t kMaxPending = 4;
  void Write(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    pending_.clear();
  }
  const data::Tokenizer& tokenizer_;
  std::vector<uint32_t> pending_;
};

// Refuses a tokenizer whose ids do not fit the model's vocabulary.
absl::Status CheckTokenizerFitsModel(const trainer::ModelTokenizer& t, int64_t vocab, const std::string& dir) {
  const data::Tokenizer& tok = *t.tokenizer;
  const bool byte = tok.fingerprint() == trainer::kByteFingerprint;
  if (t.by_default && vocab != 256 && vocab != 257) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, " stores no tokenizer (no ", trainer::kTokenizerFile, ") and its vocab_size is ", vocab,
        ", not the byte tokenizer's 256 or 257: pass --tokenizer=the model's tokenizer.json or its directory"));
  }
  if (byte ? vocab < 256 : tok.vocab_size() > vocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", tok.name(), " (", t.source, ") has ", tok.vocab_size(), " ids but ", dir,
        " has vocab_size ", vocab, ": it is not this model's tokenizer"));
  }
  return absl::OkStatus();
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("--model is required");
  ASSIGN_OR_RETURN(const std::string dir, trainer::ResolveWeightsDir(absl::GetFlag(FLAGS_model)));
  const std::string precision = absl::GetFlag(FLAGS_precision);
  const int64_t max_new = absl::GetFlag(FLAGS_max_new_tokens);
  inference::SamplingOptions sampling;
  sampling.temperature = absl::GetFlag(FLAGS_temperature);
  sampling.top_p = absl::GetFlag(FLAGS_top_p);
  if (precision != "fp32" && precision != "bf16") {
    return absl::InvalidArgumentError(absl::StrCat("--precision must be fp32 or bf16, got '", precision, "'"));
  }
  if (max_new < 0) return absl::InvalidArgumentError("--max_new_tokens must be >= 0");
  RETURN_IF_ERROR(inference::ValidateSamplingOptions(sampling));
  const std::string speculative = absl::GetFlag(FLAGS_speculative);
  if (!speculative.empty() && speculative != "mtp") {
    return absl::InvalidArgumentError(absl::StrCat("--speculative must be empty or mtp, got '", speculative, "'"));
  }
  if (!speculative.empty() && sampling.temperature != 0) {
    return absl::InvalidArgumentError(
        "--speculative=mtp decodes greedily: pass --temperature=0 (speculative sampling is not implemented)");
  }
  const bool bf16 = precision == "bf16";
  const model::Numerics numerics = bf16 ? model::Numerics::kBf16 : model::Numerics::kFp32;

  ASSIGN_OR_RETURN(const config::ModelConfig cfg, trainer::WeightsModelConfig(dir));
  if (!speculative.empty() && cfg.num_nextn_predict_layers() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--speculative=mtp needs multi-token-prediction modules; ", dir, " has num_nextn_predict_layers 0"));
  }
  const int64_t vocab = cfg.vocab_size();
  ASSIGN_OR_RETURN(const trainer::ModelTokenizer model_tokenizer,
                   trainer::LoadModelTokenizer(dir, absl::GetFlag(FLAGS_tokenizer)));
  RETURN_IF_ERROR(CheckTokenizerFitsModel(model_tokenizer, vocab, dir));
  const data::Tokenizer& tokenizer = *model_tokenizer.tokenizer;
  // The end of generation: the tokenizer's EOS, when the model's vocabulary has it.
  const std::optional<uint32_t> eos = tokenizer.eos_id();
  const bool has_eos = eos.has_value() && *eos < static_cast<uint64_t>(vocab);
  const std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  std::vector<int32_t> prompt;
  for (uint32_t id : tokenizer.Encode(prompt_text, /*add_special_tokens=*/true)) {
    if (id >= static_cast<uint64_t>(vocab)) {
      return absl::InvalidArgumentError(absl::StrCat("the prompt encodes to id ", id, ", outside ", dir,
                                                     "'s vocab_size ", vocab));
    }
    prompt.push_back(static_cast<int32_t>(id));
  }
  if (prompt.empty()) {
    const std::optional<uint32_t> bos = tokenizer.bos_id();
    if (bos.has_value() && *bos < static_cast<uint64_t>(vocab)) {
      prompt.push_back(static_cast<int32_t>(*bos));
    } else if (has_eos) {
      prompt.push_back(static_cast<int32_t>(*eos));
    } else {
      return absl::InvalidArgumentError("--prompt is empty and the model has no BOS or end-of-document id to start from");
    }
  }
  // Positions used: the prompt, then every generated token but the last one is fed back.
  const int64_t length = static_cast<int64_t>(prompt.size()) + std::max<int64_t>(max_new - 1, 0);
  if (cfg.has_max_position_embeddings() && length > cfg.max_position_embeddings()) {
    return absl::OutOfRangeError(absl::StrCat(
        "the prompt (", prompt.size(), " tokens) and --max_new_tokens=", max_new, " need ", length,
        " positions; the model's max_position_embeddings is ", cfg.max_position_embeddings()));
  }

  const Clock::time_point t_load = Clock::now();
  kernels::CpuBackend ops(absl::GetFlag(FLAGS_threads));
  model::DeepseekV3Model net(cfg, numerics, &ops, length);
  std::vector<std::string> warnings;
  RETURN_IF_ERROR(trainer::InitWeightsFrom(dir, cfg, bf16, &net.params(), ops, &warnings));
  for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  ASSIGN_OR_RETURN(std::unique_ptr<inference::IncrementalDecoder> decoder,
                   inference::IncrementalDecoder::Create(cfg, net.params(), &ops, net.rope(),
                                                         {length, numerics, /*mtp=*/!speculative.empty()}));
  const Clock::time_point t_prefill = Clock::now();

  if (!prompt_text.empty()) {
    std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
    std::fflush(stdout);
  }
  TextStream out(tokenizer);
  int64_t generated = 0;
  Clock::time_point t_decode;
  inference::SpeculativeStats spec_stats;
  if (!speculative.empty()) {
    // The prompt's pass (which also yields the first token) is the prefill; the rounds after it the decode.
    t_decode = Clock::now();
    RETURN_IF_ERROR(inference::GenerateGreedySpeculative(*decoder, prompt, max_new,
                                                         has_eos ? static_cast<int32_t>(*eos) : -1,
                                                         [&](int32_t token) {
                                                           if (generated++ == 0) t_decode = Clock::now();
                                                           out.Add(static_cast<uint32_t>(token));
                                                         },
                                                         &spec_stats)
                        .status());
  } else {
    ASSIGN_OR_RETURN(std::vector<float> logits, decoder->Prefill(prompt));
    t_decode = Clock::now();
    data::SplitMix64 rng(absl::GetFlag(FLAGS_seed));
    for (int64_t i = 0; i < max_new; ++i) {
      const int32_t next = inference::SampleToken(logits, sampling, &rng);
      ++generated;
      out.Add(static_cast<uint32_t>(next));
      if (has_eos && next == static_cast<int32_t>(*eos)) break;
      if (i + 1 == max_new) break;
      ASSIGN_OR_RETURN(logits, decoder->Step(next));
    }
  }
  out.Flush();
  const Clock::time_point t_end = Clock::now();
  if (!speculative.empty()) {
    std::string per_depth;
    for (size_t k = 0; k < spec_stats.accepted_at_depth.size(); ++k) {
      absl::StrAppend(&per_depth, k ? ", " : "", "draft ", k + 1, ": ", spec_stats.accepted_at_depth[k]);
    }
    std::printf("\n# speculative: %lld rounds, %lld of %lld drafts accepted (%.1f%%; %s), %.2f tokens per "
                "main-model pass",
                static_cast<long long>(spec_stats.rounds), static_cast<long long>(spec_stats.accepted),
                static_cast<long long>(spec_stats.drafted), 100 * spec_stats.acceptance(), per_depth.c_str(),
                spec_stats.rounds > 0 ? static_cast<double>(generated - 1) / spec_stats.rounds : 0.0);
  }

  const double decode_s = Seconds(t_decode, t_end), prefill_s = Seconds(t_prefill, t_decode);
  const int64_t absorbed = decoder->CacheBytesPerToken();
  const int64_t full = inference::IncrementalDecoder::FullMhaCacheBytesPerToken(cfg);
  std::printf("\n# generate: %lld new tokens in %.3f s (%.1f tokens/s); prefill %zu tokens in %.3f s "
              "(%.1f tokens/s); load %.3f s; KV cache per token: absorbed %lld bytes "
              "(L*(rkv+dr)*4) vs full MHA %lld bytes (L*H*(dqk+dv)*4), %.1fx smaller; tokenizer %s, %s\n",
              static_cast<long long>(generated), decode_s, decode_s > 0 ? generated / decode_s : 0.0,
              prompt.size(), prefill_s, prefill_s > 0 ? prompt.size() / prefill_s : 0.0,
              Seconds(t_load, t_prefill), static_cast<long long>(absorbed), static_cast<long long>(full),
              static_cast<double>(full) / static_cast<double>(absorbed),
              trainer::DescribeTokenizer(tokenizer).c_str(), model_tokenizer.source.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = moe::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "generate: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
