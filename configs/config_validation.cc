// Validation of run configs: ValidateModelConfig / ValidateTrainConfig and their per-section helpers,
// EffectiveRopeScalingType, and CheckSameArchitecture (see configs/config_loader.h). Validation collects
// every problem before failing: a user fixing a config sees the whole list at once. The model checks
// (internal::ValidateModel) are shared with the config.json reader in hf_config_json.cc.
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "configs/config_internal.h"
#include "configs/config_loader.h"
#include "google/protobuf/descriptor.h"

namespace moe::config {
namespace {

using internal::Problems;

// `p` is the field-name prefix ("model." in a TrainConfig, "" in a config.json).
void RequirePositive(Problems* out, const std::string& p, const char* name, bool has, int64_t value) {
  if (!has) {
    out->Add("%s%s is required", p, name);
  } else if (value <= 0) {
    out->Add("%s%s (%d) must be > 0", p, name, value);
  }
}

// docs/model.md "SwiGLU and MoE layers": layer l is MoE iff n_routed_experts is set,
// l >= first_k_dense_replace and l % freq == 0.
bool IsMoeLayer(const ModelConfig& m, int64_t layer) {
  return m.has_n_routed_experts() && m.n_routed_experts() > 0 && layer >= m.first_k_dense_replace() &&
         m.moe_layer_freq() > 0 && layer % m.moe_layer_freq() == 0;
}

bool HasDenseLayer(const ModelConfig& m) {
  const int64_t layers = std::max<int64_t>(0, m.num_hidden_layers()) +
                         std::max<int64_t>(0, m.num_nextn_predict_layers());
  for (int64_t l = 0; l < std::min<int64_t>(layers, 1 << 20); ++l) {
    if (!IsMoeLayer(m, l)) return true;
  }
  return false;
}

void ValidateRopeScaling(const ModelConfig& m, const std::string& p, Problems* out) {
  if (!m.has_rope_scaling()) return;
  const RopeScaling& rs = m.rope_scaling();
  const std::string q = p + "rope_scaling.";
  if (rs.has_type() && rs.has_rope_type() && rs.type() != rs.rope_type()) {
    out->Add("%stype ('%s') and %srope_type ('%s') disagree", q, rs.type(), q, rs.rope_type());
    return;
  }
  if (!rs.has_type() && !rs.has_rope_type()) {
    out->Add("%stype is missing (yarn, linear or none; remove %srope_scaling for plain RoPE)", q, p);
    return;
  }
  const std::string type = rs.has_type() ? rs.type() : rs.rope_type();
  if (type == "none" || type == "default") return;
  if (type != "yarn" && type != "linear") {
    out->Add("%stype '%s' is unknown (yarn, linear or none)", q, type);
    return;
  }
  if (!rs.has_factor()) {
    out->Add("%sfactor is required for %s scaling", q, type);
  } else if (!(rs.factor() > 0)) {
    out->Add("%sfactor (%g) must be > 0", q, rs.factor());
  }
  if (type != "yarn") return;
  if (!rs.has_original_max_position_embeddings()) {
    out->Add("%soriginal_max_position_embeddings is required for yarn scaling", q);
  } else if (rs.original_max_position_embeddings() <= 0) {
    out->Add("%soriginal_max_position_embeddings (%d) must be > 0", q, rs.original_max_position_embeddings());
  }
  if (!(rs.beta_fast() > 0)) out->Add("%sbeta_fast (%g) must be > 0", q, rs.beta_fast());
  if (!(rs.beta_slow() > 0)) out->Add("%sbeta_slow (%g) must be > 0", q, rs.beta_slow());
  if (!(rs.mscale() >= 0)) out->Add("%smscale (%g) must be >= 0", q, rs.mscale());
  if (!(rs.mscale_all_dim() >= 0)) out->Add("%smscale_all_dim (%g) must be >= 0", q, rs.mscale_all_dim());
  if (rs.has_attention_factor() && !(rs.attention_factor() > 0)) {
    out->Add("%sattention_factor (%g) must be > 0", q, rs.attention_factor());
  }
}

void ValidateRouting(const ModelConfig& m, const std::string& p, Problems* out) {
  const std::string& method = m.topk_method();
  if (method != "noaux_tc" && method != "greedy" && method != "group_limited_greedy") {
    out->Add("%stopk_method '%s' is unknown (noaux_tc, greedy or group_limited_greedy)", p, method);
  }
  if (m.scoring_func() != "sigmoid" && m.scoring_func() != "softmax") {
    out->Add("%sscoring_func '%s' is unknown (sigmoid or softmax)", p, m.scoring_func());
  }
  if (m.n_shared_experts() < 0) out->Add("%sn_shared_experts (%d) must be >= 0", p, m.n_shared_experts());
  if (!m.has_n_routed_experts()) return;  // every layer dense
  const int64_t nr = m.n_routed_experts();
  if (nr <= 0) {
    out->Add("%sn_routed_experts (%d) must be > 0 (leave it unset for a dense model)", p, nr);
    return;
  }
  RequirePositive(out, p, "moe_intermediate_size", m.has_moe_intermediate_size(), m.moe_intermediate_size());
  RequirePositive(out, p, "num_experts_per_tok", m.has_num_experts_per_tok(), m.num_experts_per_tok());
  const int64_t k = m.num_experts_per_tok();
  if (k > nr) out->Add("%snum_experts_per_tok (%d) exceeds %sn_routed_experts (%d)", p, k, p, nr);
  const int64_t g = m.n_group();
  const int64_t mg = m.topk_group();
  if (g < 1) out->Add("%sn_group (%d) must be >= 1", p, g);
  if (mg < 1) out->Add("%stopk_group (%d) must be >= 1", p, mg);
  if (g < 1 || mg < 1) return;
  if (nr % g != 0) {
    out->Add("%sn_routed_experts (%d) is not divisible by %sn_group (%d)", p, nr, p, g);
    return;
  }
  if (method == "noaux_tc" && nr / g < 2) {
    out->Add("%sn_routed_experts / %sn_group (%d / %d) must be >= 2 with topk_method noaux_tc "
             "(the group score sums each group's top 2)",
             p, p, nr, g);
  }
  if (mg > g) out->Add("%stopk_group (%d) exceeds %sn_group (%d)", p, mg, p, g);
  if (mg <= g && k > mg * (nr / g)) {
    out->Add("%snum_experts_per_tok (%d) exceeds %stopk_group * %sn_routed_experts / %sn_group "
             "(%d * %d / %d = %d experts reachable)",
             p, k, p, p, p, mg, nr, g, mg * (nr / g));
  }
}

}  // namespace

namespace internal {

void ValidateModel(const ModelConfig& m, const std::string& p, Problems* out) {
  if (m.model_type() != "deepseek_v3" && m.model_type() != "deepseek_v2") {
    out->Add("%smodel_type '%s' is not supported (deepseek_v3 or deepseek_v2)", p, m.model_type());
  }
  RequirePositive(out, p, "vocab_size", m.has_vocab_size(), m.vocab_size());
  RequirePositive(out, p, "hidden_size", m.has_hidden_size(), m.hidden_size());
  RequirePositive(out, p, "num_hidden_layers", m.has_num_hidden_layers(), m.num_hidden_layers());
  RequirePositive(out, p, "num_attention_heads", m.has_num_attention_heads(), m.num_attention_heads());
  RequirePositive(out, p, "kv_lora_rank", m.has_kv_lora_rank(), m.kv_lora_rank());
  RequirePositive(out, p, "qk_nope_head_dim", m.has_qk_nope_head_dim(), m.qk_nope_head_dim());
  RequirePositive(out, p, "qk_rope_head_dim", m.has_qk_rope_head_dim(), m.qk_rope_head_dim());
  RequirePositive(out, p, "v_head_dim", m.has_v_head_dim(), m.v_head_dim());
  RequirePositive(out, p, "max_position_embeddings", m.has_max_position_embeddings(),
                  m.max_position_embeddings());
  if (m.has_q_lora_rank() && m.q_lora_rank() <= 0) {
    out->Add("%sq_lora_rank (%d) must be > 0 (or unset/null for a single q_proj)", p, m.q_lora_rank());
  }
  if (m.has_num_key_value_heads() && m.num_key_value_heads() <= 0) {
    out->Add("%snum_key_value_heads (%d) must be > 0", p, m.num_key_value_heads());
  }
  if (m.has_qk_rope_head_dim() && m.qk_rope_head_dim() % 2 != 0) {
    out->Add("%sqk_rope_head_dim (%d) must be even (RoPE rotates pairs)", p, m.qk_rope_head_dim());
  }
  if (m.first_k_dense_replace() < 0 || m.first_k_dense_replace() > m.num_hidden_layers()) {
    out->Add("%sfirst_k_dense_replace (%d) must be in [0, %snum_hidden_layers (%d)]", p,
             m.first_k_dense_replace(), p, m.num_hidden_layers());
  }
  if (m.moe_layer_freq() < 1) out->Add("%smoe_layer_freq (%d) must be >= 1", p, m.moe_layer_freq());
  if (m.num_nextn_predict_layers() < 0) {
    out->Add("%snum_nextn_predict_layers (%d) must be >= 0", p, m.num_nextn_predict_layers());
  }
  if (HasDenseLayer(m)) {
    if (!m.has_intermediate_size()) {
      out->Add("%sintermediate_size is required (the model has dense FFN layers)", p);
    } else if (m.intermediate_size() <= 0) {
      out->Add("%sintermediate_size (%d) must be > 0", p, m.intermediate_size());
    }
  }
  ValidateRouting(m, p, out);
  if (m.hidden_act() != "silu") {
    out->Add("%shidden_act '%s' is not supported (only silu)", p, m.hidden_act());
  }
  ValidateRopeScaling(m, p, out);
  if (m.attention_bias()) out->Add("%sattention_bias must be false (this model family has no biases)", p);
  if (m.tie_word_embeddings()) {
    out->Add("%stie_word_embeddings = true is not supported yet (lm_head.weight is a separate matrix)", p);
  }
  if (m.attention_dropout() != 0) {
    out->Add("%sattention_dropout (%g) is not supported (must be 0)", p, m.attention_dropout());
  }
  if (!m.rope_interleave()) {
    out->Add("%srope_interleave = false is not supported (interleaved-pair RoPE only, see docs/model.md)", p);
  }
  if (!(m.rms_norm_eps() > 0)) out->Add("%srms_norm_eps (%g) must be > 0", p, m.rms_norm_eps());
  if (!(m.rope_theta() > 0)) out->Add("%srope_theta (%g) must be > 0", p, m.rope_theta());
  if (!(m.routed_scaling_factor() > 0)) {
    out->Add("%srouted_scaling_factor (%g) must be > 0", p, m.routed_scaling_factor());
  }
  if (!(m.initializer_range() > 0)) {
    out->Add("%sinitializer_range (%g) must be > 0", p, m.initializer_range());
  }
  if (!(m.aux_loss_alpha() >= 0)) out->Add("%saux_loss_alpha (%g) must be >= 0", p, m.aux_loss_alpha());
  if (!(m.bias_update_speed() >= 0)) {
    out->Add("%sbias_update_speed (%g) must be >= 0", p, m.bias_update_speed());
  }
  if (!(m.mtp_loss_weight() >= 0)) out->Add("%smtp_loss_weight (%g) must be >= 0", p, m.mtp_loss_weight());
}

}  // namespace internal

namespace {

void ValidateBatch(const TrainConfig& cfg, Problems* out) {
  const BatchConfig& b = cfg.batch();
  const ParallelConfig& par = cfg.parallel();
  RequirePositive(out, "batch.", "seq_len", b.has_seq_len(), b.seq_len());
  RequirePositive(out, "batch.", "micro_batch_size", b.has_micro_batch_size(), b.micro_batch_size());
  RequirePositive(out, "batch.", "global_batch_size", b.has_global_batch_size(), b.global_batch_size());
  if (b.micro_batch_size() > 0 && b.global_batch_size() > 0 && par.dp() >= 1 &&
      b.global_batch_size() % (b.micro_batch_size() * par.dp()) != 0) {
    out->Add("batch.global_batch_size (%d) is not divisible by batch.micro_batch_size * parallel.dp "
             "(%d * %d = %d)",
             b.global_batch_size(), b.micro_batch_size(), par.dp(), b.micro_batch_size() * par.dp());
  }
  const ModelConfig& m = cfg.model();
  if (b.seq_len() > 0 && m.max_position_embeddings() > 0 && b.seq_len() > m.max_position_embeddings()) {
    out->Add("batch.seq_len (%d) exceeds model.max_position_embeddings (%d)", b.seq_len(),
             m.max_position_embeddings());
  }
  if (b.seq_len() > 0 && b.seq_len() <= m.num_nextn_predict_layers()) {
    out->Add("batch.seq_len (%d) must exceed model.num_nextn_predict_layers (%d)", b.seq_len(),
             m.num_nextn_predict_layers());
  }
  // Sequence parallelism splits each micro-batch's tokens evenly over the TP group.
  if (b.seq_len() > 0 && b.micro_batch_size() > 0 && par.tp() >= 1 &&
      (b.micro_batch_size() * b.seq_len()) % par.tp() != 0) {
    out->Add("batch.micro_batch_size * batch.seq_len (%d * %d) is not divisible by parallel.tp (%d) "
             "(sequence parallelism splits the tokens over TP ranks)",
             b.micro_batch_size(), b.seq_len(), par.tp());
  }
}

void ValidateOptimizer(const TrainConfig& cfg, Problems* out) {
  const OptimizerConfig& o = cfg.optimizer();
  if (!(o.lr() >= 0)) out->Add("optimizer.lr (%g) must be >= 0", o.lr());
  if (!(o.beta1() >= 0 && o.beta1() < 1)) out->Add("optimizer.beta1 (%g) must be in [0, 1)", o.beta1());
  if (!(o.beta2() >= 0 && o.beta2() < 1)) out->Add("optimizer.beta2 (%g) must be in [0, 1)", o.beta2());
  if (!(o.eps() > 0)) out->Add("optimizer.eps (%g) must be > 0", o.eps());
  if (!(o.weight_decay() >= 0)) out->Add("optimizer.weight_decay (%g) must be >= 0", o.weight_decay());
  if (!(o.grad_clip() >= 0)) out->Add("optimizer.grad_clip (%g) must be >= 0 (0 disables)", o.grad_clip());
  const ScheduleConfig& s = cfg.schedule();
  RequirePositive(out, "schedule.", "total_steps", s.has_total_steps(), s.total_steps());
  if (s.warmup_steps() < 0) {
    out->Add("schedule.warmup_steps (%d) must be >= 0", s.warmup_steps());
  } else if (s.total_steps() > 0 && s.warmup_steps() > s.total_steps()) {
    out->Add("schedule.warmup_steps (%d) exceeds schedule.total_steps (%d)", s.warmup_steps(),
             s.total_steps());
  }
  if (!(s.min_lr_ratio() >= 0 && s.min_lr_ratio() <= 1)) {
    out->Add("schedule.min_lr_ratio (%g) must be in [0, 1]", s.min_lr_ratio());
  }
}

void ValidateParallel(const TrainConfig& cfg, Problems* out) {
  const ParallelConfig& par = cfg.parallel();
  const ModelConfig& m = cfg.model();
  bool sizes_ok = true;
  for (auto [name, value] : {std::pair<const char*, int64_t>{"dp", par.dp()}, {"tp", par.tp()},
                             {"ep", par.ep()}}) {
    if (value < 1) {
      out->Add("parallel.%s (%d) must be >= 1", name, value);
      sizes_ok = false;
    }
  }
  if (!(par.collective_timeout_s() > 0)) {
    out->Add("parallel.collective_timeout_s (%g) must be > 0", par.collective_timeout_s());
  }
  if (!(par.capacity_factor() >= 0)) {
    out->Add("parallel.capacity_factor (%g) must be >= 0 (0: dropless)", par.capacity_factor());
  }
  if (par.grad_bucket_elements() < 1) {
    out->Add("parallel.grad_bucket_elements (%d) must be >= 1", par.grad_bucket_elements());
  }
  if (!sizes_ok) return;
  const int64_t world = par.dp() * par.tp();
  if (world % par.ep() != 0) {
    out->Add("parallel.ep (%d) does not divide the world size parallel.dp * parallel.tp (%d * %d = %d)",
             par.ep(), par.dp(), par.tp(), world);
  }
  if (m.has_n_routed_experts() && m.n_routed_experts() > 0) {
    if (m.n_routed_experts() % par.ep() != 0) {
      out->Add("model.n_routed_experts (%d) is not divisible by parallel.ep (%d)", m.n_routed_experts(),
               par.ep());
    }
  } else if (par.ep() > 1) {
    out->Add("parallel.ep (%d) > 1 but the model has no routed experts (model.n_routed_experts unset)",
             par.ep());
  }
  const int64_t tp = par.tp();
  if (m.num_attention_heads() > 0 && m.num_attention_heads() % tp != 0) {
    out->Add("model.num_attention_heads (%d) is not divisible by parallel.tp (%d)", m.num_attention_heads(),
             tp);
  }
  if (m.intermediate_size() > 0 && m.intermediate_size() % tp != 0) {
    out->Add("model.intermediate_size (%d) is not divisible by parallel.tp (%d)", m.intermediate_size(), tp);
  }
  const int64_t shared = m.moe_intermediate_size() * m.n_shared_experts();
  if (m.has_n_routed_experts() && shared > 0 && shared % tp != 0) {
    out->Add("model.moe_intermediate_size * model.n_shared_experts (%d * %d = %d) is not divisible by "
             "parallel.tp (%d)",
             m.moe_intermediate_size(), m.n_shared_experts(), shared, tp);
  }
}

void ValidateRun(const TrainConfig& cfg, Problems* out) {
  if (cfg.precision() == PRECISION_UNSPECIFIED) out->Add("precision must be BF16 or FP32");
  if (cfg.device() == DEVICE_UNSPECIFIED) out->Add("device must be CPU or CUDA");
  if (cfg.eval().every() < 0) out->Add("eval.every (%d) must be >= 0", cfg.eval().every());
  if (cfg.eval().batches() < 0) out->Add("eval.batches (%d) must be >= 0", cfg.eval().batches());
  if (cfg.logging().every() < 1) out->Add("logging.every (%d) must be >= 1", cfg.logging().every());
  if (cfg.logging().peak_tflops() < 0) {
    out->Add("logging.peak_tflops (%g) must be >= 0", cfg.logging().peak_tflops());
  }
  if (cfg.checkpoint().save_every() < 0) {
    out->Add("checkpoint.save_every (%d) must be >= 0", cfg.checkpoint().save_every());
  }
  if (cfg.checkpoint().keep_last() < 0) {
    out->Add("checkpoint.keep_last (%d) must be >= 0", cfg.checkpoint().keep_last());
  }
  if (cfg.num_threads() < 0) out->Add("num_threads (%d) must be >= 0", cfg.num_threads());
}

// data.tokenizer must be "byte", a file, or a directory holding tokenizer.json. The file itself is read
// (and an unsupported tokenizer refused, naming the field) when the run starts: the config library does
// not link the tokenizers (ICU, PCRE2), which binaries that never read text do without.
void ValidateData(const TrainConfig& cfg, Problems* out) {
  if (!cfg.data().has_tokenizer()) return;
  const std::string& spec = cfg.data().tokenizer();
  if (spec.empty()) {
    out->Add("data.tokenizer is empty: use \"byte\", a tokenizer.json file or a directory holding one");
    return;
  }
  if (spec == "byte") return;
  std::error_code ec;
  const bool found = std::filesystem::is_directory(spec, ec)
                         ? std::filesystem::is_regular_file(std::filesystem::path(spec) / "tokenizer.json", ec)
                         : std::filesystem::is_regular_file(spec, ec);
  if (!found) {
    out->Add("data.tokenizer (\"%s\") is neither \"byte\", a tokenizer.json file nor a directory holding one",
             spec);
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------

absl::Status ValidateModelConfig(const ModelConfig& m) {
  Problems problems;
  internal::ValidateModel(m, "model.", &problems);
  return problems.ToStatus();
}

absl::Status ValidateTrainConfig(const TrainConfig& cfg) {
  Problems problems;
  if (!cfg.has_model()) {
    problems.Add("model is required");
  } else {
    internal::ValidateModel(cfg.model(), "model.", &problems);
  }
  ValidateBatch(cfg, &problems);
  ValidateOptimizer(cfg, &problems);
  ValidateParallel(cfg, &problems);
  ValidateRun(cfg, &problems);
  ValidateData(cfg, &problems);
  return problems.ToStatus();
}

std::string EffectiveRopeScalingType(const ModelConfig& m) {
  if (!m.has_rope_scaling()) return "none";
  const RopeScaling& rs = m.rope_scaling();
  const std::string type = rs.has_type() ? rs.type() : rs.rope_type();
  if (type.empty() || type == "default") return "none";
  return type;
}

absl::Status CheckSameArchitecture(const ModelConfig& source, const ModelConfig& target,
                                   const std::string& source_name) {
  google::protobuf::util::MessageDifferencer diff;
  diff.set_message_field_comparison(google::protobuf::util::MessageDifferencer::EQUIVALENT);
  const auto* d = ModelConfig::descriptor();
  for (const char* field : {"rope_scaling", "max_position_embeddings", "rope_theta", "aux_loss_alpha",
                            "seq_aux", "bias_update_speed", "mtp_loss_weight", "torch_dtype", "architectures",
                            "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id",
                            "num_nextn_predict_layers", "attention_dropout"}) {
    diff.IgnoreField(d->FindFieldByName(field));
  }
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (diff.Compare(source, target)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      source_name, " holds a model of another architecture than the config (source vs config):\n", report));
}

}  // namespace moe::config
