// Config loading, --set overrides, validation and Hugging Face config.json conversion (see the header).
//
// Design notes:
// - Text configs go through protobuf's TextFormat parser with our own ErrorCollector, so a typo reports
//   "file:line:col" and the field name instead of a bare "parse failed".
// - Overrides walk the descriptor, so any field added to config.proto is settable without code changes.
// - Validation collects every problem before failing: a user fixing a config sees the whole list at once.
// - config.json is first parsed into a google.protobuf.Struct, normalised (newer HF spellings, list-valued
//   token ids), re-serialised and parsed into ModelConfig with unknown keys ignored. Writing goes through a
//   small hand-written emitter because protobuf's JSON printer writes int64 values as strings, which HF
//   does not accept.
#include "configs/config_loader.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace moe::config {
namespace {

namespace pb = ::google::protobuf;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", what, " '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", what, " '", path, "'"));
  return ss.str();
}

// Classic edit distance, for "did you mean" hints on misspelt field names.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" when some field of `desc` is close to `name`, else "".
std::string Suggestion(const pb::Descriptor* desc, absl::string_view name) {
  if (desc == nullptr) return "";
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 3) + 1;
  for (int i = 0; i < desc->field_count(); ++i) {
    const std::string& candidate = desc->field(i)->name();
    const size_t dist = EditDistance(name, candidate);
    if (dist < best_distance) {
      best_distance = dist;
      best = candidate;
    }
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean '", best, "'?)");
}

// Collects the text-format parser's messages as "path:line:col: message".
class TextErrorCollector : public pb::io::ErrorCollector {
 public:
  TextErrorCollector(std::string path, const std::string& text)
      : path_(std::move(path)), lines_(absl::StrSplit(text, '\n')) {}

  // Value errors ("Expected integer, got: abc") do not say which field; the offending line does.
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    std::string where;
    if (line >= 0 && static_cast<size_t>(line) < lines_.size()) {
      const absl::string_view src = absl::StripAsciiWhitespace(lines_[line]);
      if (!src.empty()) where = absl::StrCat(" (in '", src, "')");
    }
    errors_.push_back(
        absl::StrFormat("%s:%d:%d: %s%s%s", path_, line + 1, column + 1, message, Hint(message), where));
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors_.push_back(absl::StrFormat("%s:%d:%d: warning: %s", path_, line + 1, column + 1, message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  // The parser says: Message type "moe.config.TrainConfig" has no field named "optimzer".
  static std::string Hint(const std::string& message) {
    static const std::string kType = "Message type \"";
    static const std::string kField = "has no field named \"";
    const size_t t = message.find(kType);
    const size_t f = message.find(kField);
    if (t == std::string::npos || f == std::string::npos) return "";
    const size_t t_end = message.find('"', t + kType.size());
    const size_t f_end = message.find('"', f + kField.size());
    if (t_end == std::string::npos || f_end == std::string::npos) return "";
    const std::string type = message.substr(t + kType.size(), t_end - t - kType.size());
    const std::string field = message.substr(f + kField.size(), f_end - f - kField.size());
    return Suggestion(pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type), field);
  }

  std::string path_;
  std::vector<std::string> lines_;
  std::vector<std::string> errors_;
};

// ------------------------------------------------------------------------------------------------
// Validation.

// Accumulates problems; each is one self-contained sentence naming its field(s).
class Problems {
 public:
  template <typename... Args>
  void Add(const absl::FormatSpec<Args...>& format, const Args&... args) {
    list_.push_back(absl::StrFormat(format, args...));
  }
  bool empty() const { return list_.empty(); }
  absl::Status ToStatus(absl::string_view prefix = "") const {
    if (list_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(prefix, absl::StrJoin(list_, "; ")));
  }

 private:
  std::vector<std::string> list_;
};

// `p` is the field-name prefix ("model." in a TrainConfig, "" in a config.json).
void RequirePositive(Problems* out, const std::string& p, const char* name, bool has, int64_t value) {
  if (!has) {
    out->Add("%s%s is required", p, name);
  } else if (value <= 0) {
    out->Add("%s%s (%d) must be > 0", p, name, value);
  }
}

// Spec §3.6: layer l is MoE iff n_routed_experts is set, l >= first_k_dense_replace and l % freq == 0.
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
    out->Add("%srope_interleave = false is not supported (interleaved-pair RoPE only, spec §4.2)", p);
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

// ------------------------------------------------------------------------------------------------
// Overrides.

std::string TypeName(const pb::FieldDescriptor* fd) {
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64: return "an integer";
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64: return "a non-negative integer";
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: return "a number";
    case pb::FieldDescriptor::CPPTYPE_BOOL: return "a bool (true or false)";
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      std::vector<std::string> names;
      for (int i = 0; i < fd->enum_type()->value_count(); ++i) names.push_back(fd->enum_type()->value(i)->name());
      return absl::StrCat("one of ", absl::StrJoin(names, ", "));
    }
    default: return "a string";
  }
}

// Sets (or, for a repeated field, appends) one scalar value parsed from `text`. Returns false if unparsable.
bool SetScalar(pb::Message* msg, const pb::FieldDescriptor* fd, absl::string_view text) {
  const pb::Reflection* r = msg->GetReflection();
  const bool rep = fd->is_repeated();
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddInt32(msg, fd, v) : r->SetInt32(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddInt64(msg, fd, v) : r->SetInt64(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddUInt32(msg, fd, v) : r->SetUInt32(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      rep ? r->AddUInt64(msg, fd, v) : r->SetUInt64(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(text, &v)) return false;
      rep ? r->AddFloat(msg, fd, v) : r->SetFloat(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(text, &v)) return false;
      rep ? r->AddDouble(msg, fd, v) : r->SetDouble(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      if (lower != "true" && lower != "false") return false;
      rep ? r->AddBool(msg, fd, lower == "true") : r->SetBool(msg, fd, lower == "true");
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumValueDescriptor* v = fd->enum_type()->FindValueByName(std::string(text));
      if (v == nullptr) return false;
      rep ? r->AddEnum(msg, fd, v) : r->SetEnum(msg, fd, v);
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string s(text);
      if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
      rep ? r->AddString(msg, fd, s) : r->SetString(msg, fd, s);
      return true;
    }
    default: return false;
  }
}

// ------------------------------------------------------------------------------------------------
// JSON writing (config.json).

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Shortest text that reads back as the same double; integral values keep a ".0" as Python writes floats.
std::string JsonDouble(double v) {
  if (!std::isfinite(v)) return "null";
  if (v == std::floor(v) && std::abs(v) < 1e16) return absl::StrFormat("%.1f", v);
  std::string s;
  for (int precision = 1; precision <= 17; ++precision) {
    s = absl::StrFormat("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) break;
  }
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string JsonScalar(const pb::Message& msg, const pb::FieldDescriptor* fd) {
  const pb::Reflection* r = msg.GetReflection();
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: return absl::StrCat(r->GetInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_INT64: return absl::StrCat(r->GetInt64(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT32: return absl::StrCat(r->GetUInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT64: return absl::StrCat(r->GetUInt64(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_FLOAT: return JsonDouble(r->GetFloat(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: return JsonDouble(r->GetDouble(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_BOOL: return r->GetBool(msg, fd) ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM: return JsonString(r->GetEnum(msg, fd)->name());
    case pb::FieldDescriptor::CPPTYPE_STRING: return JsonString(r->GetString(msg, fd));
    default: return "null";
  }
}

// Every scalar field with a value (set or with an explicit default) of `msg`, as "key": value, in field
// order, skipping `skip`; fields listed in `null_when_unset` are written as null when they have no value.
std::vector<std::pair<std::string, std::string>> ScalarEntries(const pb::Message& msg,
                                                               const std::vector<std::string>& skip,
                                                               const std::vector<std::string>& null_when_unset) {
  std::vector<std::pair<std::string, std::string>> out;
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* fd = d->field(i);
    if (fd->is_repeated() || fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (std::find(skip.begin(), skip.end(), fd->name()) != skip.end()) continue;
    if (r->HasField(msg, fd) || fd->has_default_value()) {
      out.emplace_back(fd->name(), JsonScalar(msg, fd));
    } else if (std::find(null_when_unset.begin(), null_when_unset.end(), fd->name()) !=
               null_when_unset.end()) {
      out.emplace_back(fd->name(), "null");
    }
  }
  return out;
}

std::string JsonObject(const std::vector<std::pair<std::string, std::string>>& entries, int indent) {
  if (entries.empty()) return "{}";
  const std::string pad(indent + 2, ' ');
  std::string out = "{\n";
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StrAppend(&out, pad, JsonString(entries[i].first), ": ", entries[i].second,
                    i + 1 < entries.size() ? ",\n" : "\n");
  }
  return absl::StrCat(out, std::string(indent, ' '), "}");
}

// ------------------------------------------------------------------------------------------------
// JSON reading: normalising newer HF spellings on a Struct before the typed parse.

bool IsNull(const pb::Value& v) { return v.kind_case() == pb::Value::kNullValue; }

void NormaliseHfJson(pb::Struct* root) {
  auto& f = *root->mutable_fields();
  // `rope_parameters` (newer HF) holds rope_theta and, when scaling is on, the rope_scaling keys.
  auto rp = f.find("rope_parameters");
  if (rp != f.end() && rp->second.kind_case() == pb::Value::kStructValue) {
    pb::Struct params = rp->second.struct_value();
    auto& pf = *params.mutable_fields();
    auto theta = pf.find("rope_theta");
    if (theta != pf.end()) {
      auto top = f.find("rope_theta");
      if (top == f.end() || IsNull(top->second)) f["rope_theta"] = theta->second;
      pf.erase(theta);
    }
    std::string type;
    for (const char* key : {"rope_type", "type"}) {
      auto t = pf.find(key);
      if (t != pf.end() && t->second.kind_case() == pb::Value::kStringValue) type = t->second.string_value();
    }
    auto rs = f.find("rope_scaling");
    const bool has_scaling = rs != f.end() && !IsNull(rs->second);
    if (!has_scaling && !type.empty() && type != "default" && type != "none") {
      *f["rope_scaling"].mutable_struct_value() = params;
    }
  }
  f.erase("rope_parameters");
  // `dtype` is the newer name of torch_dtype.
  auto dtype = f.find("dtype");
  if (dtype != f.end()) {
    auto td = f.find("torch_dtype");
    if (td == f.end() || IsNull(td->second)) f["torch_dtype"] = dtype->second;
    f.erase("dtype");
  }
  // Some tokenizers list several end ids; the model config keeps the first.
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    auto it = f.find(key);
    if (it == f.end() || it->second.kind_case() != pb::Value::kListValue) continue;
    if (it->second.list_value().values_size() == 0) {
      f.erase(it);
    } else {
      const pb::Value first = it->second.list_value().values(0);
      it->second = first;
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadWholeFile(path, "config file"));
  TextErrorCollector errors(path, text);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  TrainConfig cfg;
  if (!parser.ParseFromString(text, &cfg)) {
    if (errors.errors().empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot parse"));
    return absl::InvalidArgumentError(absl::StrJoin(errors.errors(), "; "));
  }
  return cfg;
}

absl::Status ApplyOverride(TrainConfig* cfg, absl::string_view assignment) {
  const std::string from = absl::StrCat(" (from --set ", assignment, ")");
  const size_t eq = assignment.find('=');
  if (eq == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected dotted.path=value", from));
  }
  const absl::string_view path = absl::StripAsciiWhitespace(assignment.substr(0, eq));
  const absl::string_view value = absl::StripAsciiWhitespace(assignment.substr(eq + 1));
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  const bool clear = value == "null";
  pb::Message* msg = cfg;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* desc = msg->GetDescriptor();
    if (parts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("empty field name in '", path, "'", from));
    }
    const pb::FieldDescriptor* fd = desc->FindFieldByName(std::string(parts[i]));
    if (fd == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field '", parts[i], "' in ", desc->name(),
                                                     Suggestion(desc, parts[i]), from));
    }
    const pb::Reflection* r = msg->GetReflection();
    const std::string so_far = absl::StrJoin(parts.begin(), parts.begin() + i + 1, ".");
    const bool is_message = fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (i + 1 < parts.size()) {
      if (!is_message || fd->is_repeated()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", so_far, "' is not a message, so it has no field '", parts[i + 1], "'", from));
      }
      // Clearing a field of a message that is not there is a no-op; do not create the message for it.
      if (clear && !r->HasField(*msg, fd)) return absl::OkStatus();
      msg = r->MutableMessage(msg, fd);
      continue;
    }
    if (clear) {
      r->ClearField(msg, fd);
      return absl::OkStatus();
    }
    if (is_message) {
      return absl::InvalidArgumentError(absl::StrCat("'", so_far, "' is a message: set its fields (", so_far,
                                                     ".<field>=...) or clear it with =null", from));
    }
    if (fd->is_repeated()) {
      r->ClearField(msg, fd);
      if (value.empty()) return absl::OkStatus();
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = absl::StripAsciiWhitespace(item);
        if (!SetScalar(msg, fd, item)) {
          return absl::InvalidArgumentError(absl::StrCat("cannot parse '", item, "' as ", TypeName(fd),
                                                         " for ", so_far, from));
        }
      }
      return absl::OkStatus();
    }
    if (!SetScalar(msg, fd, value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot parse '", value, "' as ", TypeName(fd), " for ", so_far, from));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateModelConfig(const ModelConfig& m) {
  Problems problems;
  ValidateModel(m, "model.", &problems);
  return problems.ToStatus();
}

absl::Status ValidateTrainConfig(const TrainConfig& cfg) {
  Problems problems;
  if (!cfg.has_model()) {
    problems.Add("model is required");
  } else {
    ValidateModel(cfg.model(), "model.", &problems);
  }
  ValidateBatch(cfg, &problems);
  ValidateOptimizer(cfg, &problems);
  ValidateParallel(cfg, &problems);
  ValidateRun(cfg, &problems);
  ValidateData(cfg, &problems);
  return problems.ToStatus();
}

absl::StatusOr<TrainConfig> ResolveTrainConfig(const std::string& path,
                                               const std::vector<std::string>& overrides) {
  ASSIGN_OR_RETURN(TrainConfig cfg, LoadTrainConfig(path));
  for (const std::string& assignment : overrides) {
    const absl::Status st = ApplyOverride(&cfg, assignment);
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  }
  const absl::Status st = ValidateTrainConfig(cfg);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  return cfg;
}

std::string EffectiveRopeScalingType(const ModelConfig& m) {
  if (!m.has_rope_scaling()) return "none";
  const RopeScaling& rs = m.rope_scaling();
  const std::string type = rs.has_type() ? rs.type() : rs.rope_type();
  if (type.empty() || type == "default") return "none";
  return type;
}

absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const std::string& json_text,
                                                  const std::string& source_name) {
  pb::Struct root;
  auto st = pb::util::JsonStringToMessage(json_text, &root);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": not a valid JSON object: ", st.message().as_string()));
  }
  NormaliseHfJson(&root);
  std::string normalised;
  st = pb::util::MessageToJsonString(root, &normalised);
  if (!st.ok()) {
    return absl::InternalError(absl::StrCat(source_name, ": ", st.message().as_string()));
  }
  ModelConfig m;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  st = pb::util::JsonStringToMessage(normalised, &m, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", st.message().as_string()));
  }
  Problems problems;
  ValidateModel(m, "", &problems);
  // Spec §4.4: newer HF recomputes the YaRN factor as max_position_embeddings / L0, so a config.json
  // where the two disagree means different things to different readers.
  if (problems.empty() && EffectiveRopeScalingType(m) == "yarn") {
    const double implied = static_cast<double>(m.max_position_embeddings()) /
                           static_cast<double>(m.rope_scaling().original_max_position_embeddings());
    if (std::abs(implied - m.rope_scaling().factor()) > 1e-9 * std::max(1.0, implied)) {
      problems.Add("rope_scaling.factor (%g) disagrees with max_position_embeddings / "
                   "rope_scaling.original_max_position_embeddings (%d / %d = %g)",
                   m.rope_scaling().factor(), m.max_position_embeddings(),
                   m.rope_scaling().original_max_position_embeddings(), implied);
    }
  }
  RETURN_IF_ERROR(problems.ToStatus(absl::StrCat(source_name, ": ")));
  return m;
}

absl::StatusOr<ModelConfig> LoadHfConfigJson(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadWholeFile(path, "config.json"));
  return ModelConfigFromHfJson(text, path);
}

std::string ModelConfigToHfJson(const ModelConfig& m) {
  std::vector<std::pair<std::string, std::string>> entries;
  std::vector<std::string> arch(m.architectures().begin(), m.architectures().end());
  if (arch.empty()) {
    arch.push_back(m.model_type() == "deepseek_v2" ? "DeepseekV2ForCausalLM" : "DeepseekV3ForCausalLM");
  }
  std::string arch_json = "[\n";
  for (size_t i = 0; i < arch.size(); ++i) {
    absl::StrAppend(&arch_json, "    ", JsonString(arch[i]), i + 1 < arch.size() ? ",\n" : "\n");
  }
  arch_json += "  ]";
  entries.emplace_back("architectures", arch_json);
  entries.emplace_back("model_type", JsonString(m.model_type()));
  for (auto& e : ScalarEntries(m, {"model_type"}, {"q_lora_rank", "n_routed_experts"})) {
    entries.push_back(std::move(e));
    if (entries.back().first == "max_position_embeddings") {
      // rope_scaling right after max_position_embeddings, as HF orders it.
      if (!m.has_rope_scaling()) {
        entries.emplace_back("rope_scaling", "null");
      } else {
        const RopeScaling& rs = m.rope_scaling();
        std::vector<std::pair<std::string, std::string>> rse;
        // `type` and `rope_type` as given (HF reads either); then the numbers with their defaults.
        for (auto& x : ScalarEntries(rs, {}, {})) rse.push_back(std::move(x));
        entries.emplace_back("rope_scaling", JsonObject(rse, 2));
      }
    }
  }
  return JsonObject(entries, 0) + "\n";
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

SplitArgs SplitSetFlags(int argc, char** argv) {
  SplitArgs out;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--set=", 0) == 0) {
      out.overrides.push_back(a.substr(6));
    } else if (a == "--set" && i + 1 < argc) {
      out.overrides.push_back(argv[++i]);
    } else {
      out.rest.push_back(argv[i]);
    }
  }
  out.rest.push_back(nullptr);
  return out;
}

}  // namespace moe::config
