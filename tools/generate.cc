// generate: text from a trained model, token by token with the absorbed MLA latent cache
// (model/inference/decoder.h, MODEL_SPEC §3.5).
//
//   generate --model=DIR --prompt="text" [--max_new_tokens=100] [--temperature=0.8] [--top_p=0.95]
//            [--seed=1] [--precision=fp32|bf16] [--threads=1]
//
// DIR is a Hugging Face directory (config.json + safetensors) or a native checkpoint step directory (the
// model config comes from its manifest). Only the byte-level tokenizer exists (data/byte_tokenizer.h), so
// the model's vocabulary must be 256 or 257; an empty prompt starts from the end-of-document id 256 when
// the vocabulary has it. Sampling: temperature 0 is greedy; otherwise temperature and nucleus top-p with
// a SplitMix64 stream seeded by --seed (the same flags give the same text on any machine). Generation
// stops after --max_new_tokens or at the end-of-document id 256 (printed as <|endoftext|>).
// stdout: the prompt and the generated text, then one line "# generate: ..." with the decode speed and
// the KV-cache bytes per token of the absorbed cache against a full multi-head cache.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "data/byte_tokenizer.h"
#include "data/prng.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/inference/decoder.h"
#include "model/inference/sampling.h"
#include "model/model.h"
#include "trainer/checkpoint.h"
#include "trainer/init_from.h"

ABSL_FLAG(std::string, model, "", "Hugging Face directory or native checkpoint step directory");
ABSL_FLAG(std::string, prompt, "", "the text to continue");
ABSL_FLAG(int64_t, max_new_tokens, 100, "tokens to generate at most");
ABSL_FLAG(double, temperature, 0.8, "sampling temperature; 0 = greedy");
ABSL_FLAG(double, top_p, 0.95, "nucleus sampling mass in (0, 1]");
ABSL_FLAG(uint64_t, seed, 1, "sampling seed");
ABSL_FLAG(std::string, precision, "fp32", "fp32 or bf16 (working weights and activations)");
ABSL_FLAG(int32_t, threads, 1,
          "CPU threads (0: all cores). One token at a time is a chain of small matrix-vector products: "
          "extra threads only pay off for large models");

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The model config of a native checkpoint step directory (its manifest) or of an HF directory.
absl::StatusOr<config::ModelConfig> ModelConfigOf(const std::string& dir) {
  if (FileExists(JoinPath(dir, trainer::kManifestFile))) {
    ASSIGN_OR_RETURN(const checkpoint::Manifest m, trainer::ReadManifest(dir));
    return m.config().model();
  }
  const std::string json = JoinPath(dir, "config.json");
  if (FileExists(json)) return config::LoadHfConfigJson(json);
  return absl::NotFoundError(absl::StrCat("--model=", dir, " is neither a native checkpoint step directory (",
                                          trainer::kManifestFile, ") nor a Hugging Face directory (config.json)"));
}

void PrintIds(const std::vector<uint32_t>& ids) {
  const std::string text = data::ByteTokenizer().Decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  const std::string precision = absl::GetFlag(FLAGS_precision);
  const int64_t max_new = absl::GetFlag(FLAGS_max_new_tokens);
  inference::SamplingOptions sampling;
  sampling.temperature = absl::GetFlag(FLAGS_temperature);
  sampling.top_p = absl::GetFlag(FLAGS_top_p);
  if (dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (precision != "fp32" && precision != "bf16") {
    return absl::InvalidArgumentError(absl::StrCat("--precision must be fp32 or bf16, got '", precision, "'"));
  }
  if (max_new < 0) return absl::InvalidArgumentError("--max_new_tokens must be >= 0");
  RETURN_IF_ERROR(inference::ValidateSamplingOptions(sampling));
  const bool bf16 = precision == "bf16";
  const model::Numerics numerics = bf16 ? model::Numerics::kBf16 : model::Numerics::kFp32;

  ASSIGN_OR_RETURN(const config::ModelConfig cfg, ModelConfigOf(dir));
  const int64_t vocab = cfg.vocab_size();
  if (vocab != 256 && vocab != 257) {
    return absl::UnimplementedError(absl::StrCat(
        dir, ": vocab_size is ", vocab, "; generate has only the byte-level tokenizer (vocabulary 256, or 257 "
        "with the end-of-document id) and no BPE tokenizer yet"));
  }
  const bool has_eod = vocab > static_cast<int64_t>(data::ByteTokenizer::kEndOfDocument);
  const std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  std::vector<int32_t> prompt;
  for (uint32_t id : data::ByteTokenizer().Encode(prompt_text)) prompt.push_back(static_cast<int32_t>(id));
  if (prompt.empty()) {
    if (!has_eod) return absl::InvalidArgumentError("--prompt is empty and the model has no end-of-document id to start from");
    prompt.push_back(static_cast<int32_t>(data::ByteTokenizer::kEndOfDocument));
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
  RETURN_IF_ERROR(trainer::InitWeightsFrom(dir, cfg, bf16, &net.params(), &warnings));
  for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  ASSIGN_OR_RETURN(std::unique_ptr<inference::IncrementalDecoder> decoder,
                   inference::IncrementalDecoder::Create(cfg, net.params(), &ops, net.rope(), {length, numerics}));
  const Clock::time_point t_prefill = Clock::now();

  if (!prompt_text.empty()) {
    std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
    std::fflush(stdout);
  }
  ASSIGN_OR_RETURN(std::vector<float> logits, decoder->Prefill(prompt));
  const Clock::time_point t_decode = Clock::now();

  data::SplitMix64 rng(absl::GetFlag(FLAGS_seed));
  int64_t generated = 0;
  for (int64_t i = 0; i < max_new; ++i) {
    const int32_t next = inference::SampleToken(logits, sampling, &rng);
    ++generated;
    PrintIds({static_cast<uint32_t>(next)});
    if (has_eod && next == static_cast<int32_t>(data::ByteTokenizer::kEndOfDocument)) break;
    if (i + 1 == max_new) break;
    ASSIGN_OR_RETURN(logits, decoder->Step(next));
  }
  const Clock::time_point t_end = Clock::now();

  const double decode_s = Seconds(t_decode, t_end), prefill_s = Seconds(t_prefill, t_decode);
  const int64_t absorbed = decoder->CacheBytesPerToken();
  const int64_t full = inference::IncrementalDecoder::FullMhaCacheBytesPerToken(cfg);
  std::printf("\n# generate: %lld new tokens in %.3f s (%.1f tokens/s); prefill %zu tokens in %.3f s "
              "(%.1f tokens/s); load %.3f s; KV cache per token: absorbed %lld bytes "
              "(L*(rkv+dr)*4) vs full MHA %lld bytes (L*H*(dqk+dv)*4), %.1fx smaller\n",
              static_cast<long long>(generated), decode_s, decode_s > 0 ? generated / decode_s : 0.0,
              prompt.size(), prefill_s, prefill_s > 0 ? prompt.size() / prefill_s : 0.0,
              Seconds(t_load, t_prefill), static_cast<long long>(absorbed), static_cast<long long>(full),
              static_cast<double>(full) / static_cast<double>(absorbed));
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
