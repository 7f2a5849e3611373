// hf_eval: loss and gradient norms of a Hugging Face DeepseekV3 directory on one batch, for
// cross-checking this implementation against others (issue: the model contract).
//
//   hf_eval --model=DIR --tokens=FILE --seq_len=T --batch=B [--precision=fp32|bf16] [--include_mtp]
//
// The batch is the first B·T+1 uint32 little-endian tokens of FILE laid out as docs/model.md says
// (x[b,t] = z[bT+t], y[b,t] = z[bT+t+1]). Prints one JSON object: "loss" (mean next-token CE of the
// main model; balance loss excluded), with multi-token prediction "mtp_loss" (λ/D · Σ_k L^k),
// "grad_norm" (global L2 norm of d loss / d params) and "grad_norms" (per trainable tensor by HF name;
// the correction bias is a buffer and not included). The gradients are those of `loss` alone (the
// MTP modules' tensors are not listed) or, with --include_mtp, of "total_loss" = loss + mtp_loss (the
// shared embedding and head under their main names; the modules' copies of them are not tensors).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "configs/config_loader.h"
#include "data/token_file.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/hf/hf_checkpoint.h"
#include "model/hf_weights.h"
#include "model/model.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory (config.json + safetensors)");
ABSL_FLAG(std::string, tokens, "", "file of uint32 little-endian token ids");
ABSL_FLAG(int64_t, seq_len, 0, "tokens per sequence T");
ABSL_FLAG(int64_t, batch, 1, "sequences B");
ABSL_FLAG(std::string, precision, "fp32", "fp32 or bf16");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0: all cores)");
ABSL_FLAG(bool, include_mtp, false, "gradients of loss + mtp_loss (default: of loss alone)");

namespace moe {
namespace {

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  const int64_t seq = absl::GetFlag(FLAGS_seq_len), batch = absl::GetFlag(FLAGS_batch);
  const std::string precision = absl::GetFlag(FLAGS_precision);
  if (dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (seq <= 0 || batch <= 0) return absl::InvalidArgumentError("--seq_len and --batch must be > 0");
  if (precision != "fp32" && precision != "bf16") {
    return absl::InvalidArgumentError(absl::StrCat("--precision must be fp32 or bf16, got '", precision, "'"));
  }
  const bool bf16 = precision == "bf16";

  ASSIGN_OR_RETURN(hf::HfTensorSource source, hf::HfTensorSource::Open(dir));
  ASSIGN_OR_RETURN(std::string config_text, source.ReadConfigJson());
  ASSIGN_OR_RETURN(config::ModelConfig cfg,
                   config::ModelConfigFromHfJson(config_text, dir + "/config.json"));
  const bool include_mtp = absl::GetFlag(FLAGS_include_mtp);
  if (include_mtp && cfg.num_nextn_predict_layers() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--include_mtp, but ", dir, " has no multi-token-prediction modules"));
  }
  cfg.set_aux_loss_alpha(0.0);  // no balance loss in the gradient

  ASSIGN_OR_RETURN(data::Batch b, data::ReadBatchFromTokenFile(absl::GetFlag(FLAGS_tokens), batch, seq));
  for (int32_t id : b.inputs) {
    if (id >= cfg.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " in ", absl::GetFlag(FLAGS_tokens),
                                                     " is >= vocab_size ", cfg.vocab_size()));
    }
  }

  kernels::CpuBackend ops(absl::GetFlag(FLAGS_threads));
  model::DeepseekV3Model net(cfg, bf16 ? model::Numerics::kBf16 : model::Numerics::kFp32, &ops,
                             std::max<int64_t>(seq, 1));
  std::vector<std::string> warnings;
  RETURN_IF_ERROR(model::LoadHfWeights(source, bf16, &net.params(), ops, &warnings));
  for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());

  const double depth_weight = net.mtp_depth_weight();  // of the checkpoint's λ
  if (!include_mtp) net.set_mtp_loss_weight(0.0);     // the MTP losses are evaluated, not differentiated
  net.params().ZeroGrads();
  const model::LossStats stats =
      net.Step(b.inputs.data(), b.targets.data(), batch, seq, /*backward=*/true, 1.0f);
  double mtp_loss = 0;
  for (int64_t k = 1; k <= net.mtp_depths(); ++k) mtp_loss += depth_weight * stats.mtp_ce_loss(k);

  std::string json = absl::StrFormat("{\"loss\": %.17g, ", stats.ce_loss());
  if (net.mtp_depths() > 0) absl::StrAppendFormat(&json, "\"mtp_loss\": %.17g, ", mtp_loss);
  if (include_mtp) absl::StrAppendFormat(&json, "\"total_loss\": %.17g, ", stats.ce_loss() + mtp_loss);
  auto listed = [&](const model::Param& p) { return p.trainable() && (include_mtp || model::MtpDepthOf(cfg, p.name) == 0); };
  double sum_squares = 0;  // of the listed tensors (the others have no gradient)
  net.params().ForEach([&](const model::Param& p) {
    if (listed(p)) sum_squares += std::pow(model::GradNorm(ops, p), 2);
  });
  absl::StrAppendFormat(&json, "\"grad_norm\": %.17g, \"grad_norms\": {", std::sqrt(sum_squares));
  bool first = true;
  net.params().ForEach([&](const model::Param& p) {
    if (!listed(p)) return;
    absl::StrAppendFormat(&json, "%s\"%s\": %.17g", first ? "" : ", ", p.name,
                          model::GradNorm(ops, p));
    first = false;
  });
  json += "}}";
  std::printf("%s\n", json.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = moe::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "hf_eval: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
