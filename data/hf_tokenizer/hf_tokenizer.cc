// See hf_tokenizer.h. The pipeline, as Hugging Face's TokenizerImpl::encode runs it:
//   1. added tokens with `normalized: false` are split out of the raw text;
//   2. every other piece is normalized, then added tokens with `normalized: true` are split out of it;
//   3. every remaining piece is pre-tokenized (Split / ByteLevel / Digits) into words;
//   4. each word goes through the BPE model;
//   5. with add_special_tokens, the post-processor (TemplateProcessing) adds its special ids.
// Decoding maps ids back to token strings (added tokens first), drops special ones on request, and the
// ByteLevel decoder turns the characters back into bytes, read as lossy UTF-8.
#include "data/hf_tokenizer/hf_tokenizer.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file_util.h"
#include "data/hf_tokenizer/added_vocabulary.h"
#include "data/hf_tokenizer/bpe.h"
#include "data/hf_tokenizer/normalizer.h"
#include "data/hf_tokenizer/pre_tokenizer.h"
#include "data/hf_tokenizer/unicode.h"
#include "data/prng.h"
#include "data/utf8.h"

namespace moe::data::hf {
namespace {

namespace fs = std::filesystem;

// simdjson speaks std::string_view; this Abseil build has its own string_view.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
using simdjson::dom::element;
using simdjson::dom::element_type;

// One TemplateProcessing "single" template: special-token ids around the sequence.
struct Template {
  // Each item: the ids of a special token, or (empty optional) the encoded sequence itself.
  std::vector<std::optional<std::vector<uint32_t>>> items;
};

class HfTokenizer final : public Tokenizer {
 public:
  std::vector<uint32_t> Encode(absl::string_view text, bool add_special_tokens) const override;
  std::string Decode(absl::Span<const uint32_t> ids, bool skip_special_tokens) const override;
  uint32_t vocab_size() const override { return std::max(model_->max_id(), added_.max_id()) + 1; }
  std::optional<uint32_t> TokenToId(absl::string_view token) const override {
    if (const auto id = added_.TokenToId(token)) return id;
    return model_->TokenToId(token);
  }
  std::optional<uint32_t> bos_id() const override { return bos_id_; }
  std::optional<uint32_t> eos_id() const override { return eos_id_; }
  bool add_bos_token() const override { return add_bos_token_; }
  std::string fingerprint() const override { return fingerprint_; }
  std::string name() const override { return name_; }
  std::vector<std::string> files() const override { return files_; }

 private:
  friend class Loader;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  std::unique_ptr<Bpe> model_;
  AddedVocabulary added_;
  std::vector<Template> templates_;
  bool byte_level_decoder_ = false;
  std::optional<uint32_t> bos_id_, eos_id_;
  bool add_bos_token_ = false;
  std::string fingerprint_, name_;
  std::vector<std::string> files_;
};

std::vector<uint32_t> HfTokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = RepairUtf8(text).text;
    text = repaired;
  }
  std::vector<uint32_t> ids;
  std::vector<std::string> words;
  for (const AddedVocabulary::Piece& raw : added_.FindMatches(text, /*normalized=*/false)) {
    if (raw.id) {
      ids.push_back(*raw.id);
      continue;
    }
    const absl::string_view piece = text.substr(raw.begin, raw.end - raw.begin);
    std::string normalized_storage;
    absl::string_view normalized = piece;
    if (!normalizer_.is_identity()) {
      normalized_storage = normalizer_.Apply(piece);
      normalized = normalized_storage;
    }
    for (const AddedVocabulary::Piece& sub : added_.FindMatches(normalized, /*normalized=*/true)) {
      if (sub.id) {
        ids.push_back(*sub.id);
        continue;
      }
      words.clear();
      pre_tokenizer_.Apply(normalized.substr(sub.begin, sub.end - sub.begin), &words);
      for (const std::string& word : words) model_->Tokenize(word, &ids);
    }
  }
  if (add_special_tokens) {
    for (const Template& t : templates_) {
      std::vector<uint32_t> wrapped;
      for (const auto& item : t.items) {
        const std::vector<uint32_t>& part = item ? *item : ids;
        wrapped.insert(wrapped.end(), part.begin(), part.end());
      }
      ids = std::move(wrapped);
    }
  }
  return ids;
}

std::string HfTokenizer::Decode(absl::Span<const uint32_t> ids, bool skip_special_tokens) const {
  std::vector<const std::string*> tokens;
  tokens.reserve(ids.size());
  for (const uint32_t id : ids) {
    const std::string* token = added_.IdToToken(id);
    if (token == nullptr) token = model_->IdToToken(id);
    if (token == nullptr) continue;  // unknown ids are skipped, as Hugging Face does
    if (skip_special_tokens && added_.IsSpecialContent(*token)) continue;
    tokens.push_back(token);
  }
  if (!byte_level_decoder_) {
    return absl::StrJoin(tokens, " ", [](std::string* out, const std::string* t) { out->append(*t); });
  }
  // ByteLevel: a token whose characters all come from the byte map becomes those bytes; any other token
  // (e.g. a special token's text) is taken as it is.
  std::string bytes;
  for (const std::string* token : tokens) {
    const size_t mark = bytes.size();
    bool all_mapped = true;
    for (size_t i = 0; i < token->size();) {
      int length = 0;
      const int b = UnicodeToByte(DecodeUtf8At(*token, i, &length));
      if (b < 0) {
        all_mapped = false;
        break;
      }
      bytes.push_back(static_cast<char>(b));
      i += length;
    }
    if (!all_mapped) {
      bytes.resize(mark);
      bytes += *token;
    }
  }
  return RepairUtf8(bytes).text;
}

#define RETURN_IF_ERROR_LOCAL(expr)            \
  do {                                         \
    absl::Status _status = (expr);             \
    if (!_status.ok()) return _status;         \
  } while (0)

// Reads tokenizer.json into an HfTokenizer. Every error names the field path, e.g.
// "pre_tokenizer.pretokenizers[1].type".
class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& json_bytes, const std::string& config_path) {
    element root;
    const simdjson::padded_string padded(json_bytes);
    if (const auto error = parser_.parse(padded).get(root); error) {
      return Error("", absl::StrCat("invalid JSON: ", simdjson::error_message(error)));
    }
    if (root.type() != element_type::OBJECT) return Error("", "not a JSON object");
    auto tokenizer = std::make_unique<HfTokenizer>();
    if (const auto version = Field(root, "version"); version && version->is_string() &&
                                                     Sv(std::string_view(*version)) != "1.0") {
      return Error("version", absl::StrCat("unknown tokenizer.json version '", Sv(std::string_view(*version)), "'"));
    }
    RETURN_IF_ERROR_LOCAL(LoadModel(root, tokenizer.get()));
    RETURN_IF_ERROR_LOCAL(LoadNormalizer(Field(root, "normalizer"), "normalizer", &tokenizer->normalizer_));
    std::vector<PreTokenizerStep> steps;
    RETURN_IF_ERROR_LOCAL(LoadPreTokenizer(Field(root, "pre_tokenizer"), "pre_tokenizer", &steps));
    tokenizer->pre_tokenizer_ = PreTokenizer(std::move(steps));
    RETURN_IF_ERROR_LOCAL(LoadAddedTokens(root, tokenizer.get()));
    RETURN_IF_ERROR_LOCAL(LoadPostProcessor(Field(root, "post_processor"), "post_processor", tokenizer.get()));
    RETURN_IF_ERROR_LOCAL(LoadDecoder(Field(root, "decoder"), tokenizer.get()));
    for (const char* ignored : {"truncation", "padding"}) {
      if (const auto f = Field(root, ignored)) {
        std::fprintf(stderr, "tokenizer: note: %s: \"%s\" is set and ignored (whole texts are encoded)\n",
                     file_.c_str(), ignored);
      }
    }
    tokenizer->fingerprint_ = absl::StrFormat("fnv1a64:%016x", Fnv1a64(json_bytes));
    tokenizer->name_ = file_;
    tokenizer->files_.push_back(file_);
    if (!config_path.empty()) {
      RETURN_IF_ERROR_LOCAL(LoadConfig(config_path, tokenizer.get()));
      tokenizer->files_.push_back(config_path);
    }
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }

 private:

  absl::Status Error(absl::string_view path, absl::string_view what) const {
    return absl::InvalidArgumentError(
        path.empty() ? absl::StrCat(file_, ": ", what) : absl::StrCat(file_, ": ", path, ": ", what));
  }
  absl::Status Unsupported(absl::string_view path, absl::string_view value, absl::string_view supported) const {
    return Error(path, absl::StrCat("'", value, "' is not supported (supported: ", supported, ")"));
  }

  // A present, non-null field of an object.
  static std::optional<element> Field(element object, std::string_view key) {
    element value;
    if (object.type() != element_type::OBJECT || object.at_key(key).get(value) != simdjson::SUCCESS ||
        value.is_null()) {
      return std::nullopt;
    }
    return value;
  }

  absl::StatusOr<std::string> String(element object, std::string_view key, const std::string& path) const {
    const auto f = Field(object, key);
    if (!f || !f->is_string()) return Error(absl::StrCat(path, ".", Sv(key)), "expected a string");
    return std::string(std::string_view(*f));
  }
  absl::StatusOr<bool> Bool(element object, std::string_view key, const std::string& path, bool fallback) const {
    const auto f = Field(object, key);
    if (!f) return fallback;
    if (!f->is_bool()) return Error(absl::StrCat(path, ".", Sv(key)), "expected true or false");
    return bool(*f);
  }
  absl::StatusOr<std::string> Type(element object, const std::string& path) const {
    return String(object, "type", path);
  }

  absl::Status LoadModel(element root, HfTokenizer* tokenizer) {
    const auto model = Field(root, "model");
    if (!model || !model->is_object()) return Error("model", "missing");
    std::string type = "BPE";  // the type tag is optional for BPE in Hugging Face's reader
    if (Field(*model, "type")) {
      auto t = Type(*model, "model");
      if (!t.ok()) return t.status();
      type = *t;
    }
    if (type != "BPE") return Unsupported("model.type", type, "BPE");
    BpeOptions options;
    if (auto f = Field(*model, "byte_fallback"); f && f->is_bool() && bool(*f)) {
      return Unsupported("model.byte_fallback", "true", "false");
    }
    if (auto f = Field(*model, "dropout"); f && !(f->is_number() && double(*f) == 0.0)) {
      return Error("model.dropout", "a non-zero dropout is not supported (it makes encoding random)");
    }
    if (auto f = Field(*model, "unk_token")) {
      if (!f->is_string()) return Error("model.unk_token", "expected a string");
      options.unk_token = std::string(std::string_view(*f));
    }
    if (auto f = Field(*model, "continuing_subword_prefix"); f && f->is_string()) {
      options.continuing_subword_prefix = std::string(std::string_view(*f));
    }
    if (auto f = Field(*model, "end_of_word_suffix"); f && f->is_string()) {
      options.end_of_word_suffix = std::string(std::string_view(*f));
    }
    auto fuse = Bool(*model, "fuse_unk", "model", false);
    if (!fuse.ok()) return fuse.status();
    options.fuse_unk = *fuse;
    auto ignore = Bool(*model, "ignore_merges", "model", false);
    if (!ignore.ok()) return ignore.status();
    options.ignore_merges = *ignore;

    const auto vocab = Field(*model, "vocab");
    if (!vocab || !vocab->is_object()) return Error("model.vocab", "expected an object of token -> id");
    std::vector<std::pair<std::string, uint32_t>> entries;
    for (const auto field : simdjson::dom::object(*vocab)) {
      uint64_t id = 0;
      if (field.value.get_uint64().get(id) != simdjson::SUCCESS || id > 0xFFFFFFFFull) {
        return Error(absl::StrCat("model.vocab[\"", Sv(field.key), "\"]"),
                     "expected a non-negative integer id");
      }
      entries.emplace_back(std::string(field.key), static_cast<uint32_t>(id));
    }
    const auto merges = Field(*model, "merges");
    if (!merges || !merges->is_array()) return Error("model.merges", "expected an array");
    std::vector<std::pair<std::string, std::string>> pairs;
    size_t index = 0;
    for (const element merge : simdjson::dom::array(*merges)) {
      const std::string path = absl::StrCat("model.merges[", index++, "]");
      if (merge.is_string()) {  // "a b"; "#version" lines are comments
        const std::string_view line(merge);
        if (line.substr(0, 8) == "#version") continue;
        const size_t space = line.find(' ');
        if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
          return Error(path, absl::StrCat("expected two tokens separated by one space, got '", Sv(line), "'"));
        }
        pairs.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
      } else if (merge.is_array() && simdjson::dom::array(merge).size() == 2 &&
                 merge.at(0).is_string() && merge.at(1).is_string()) {  // ["a", "b"]
        pairs.emplace_back(std::string(std::string_view(merge.at(0))), std::string(std::string_view(merge.at(1))));
      } else {
        return Error(path, "expected \"a b\" or [\"a\", \"b\"]");
      }
    }
    auto bpe = Bpe::Create(std::move(entries), pairs, std::move(options));
    if (!bpe.ok()) return Error("", bpe.status().message());
    tokenizer->model_ = std::move(*bpe);
    return absl::OkStatus();
  }

  absl::Status LoadNormalizer(std::optional<element> node, const std::string& path, Normalizer* out) {
    std::vector<NormalForm> forms;
    RETURN_IF_ERROR_LOCAL(CollectForms(node, path, &forms));
    *out = Normalizer(std::move(forms));
    return absl::OkStatus();
  }

  absl::Status CollectForms(std::optional<element> node, const std::string& path, std::vector<NormalForm>* forms) {
    if (!node) return absl::OkStatus();
    auto type = Type(*node, path);
    if (!type.ok()) return type.status();
    if (*type == "Sequence") {
      const auto list = Field(*node, "normalizers");
      if (!list || !list->is_array()) return Error(path + ".normalizers", "expected an array");
      size_t i = 0;
      for (const element child : simdjson::dom::array(*list)) {
        RETURN_IF_ERROR_LOCAL(CollectForms(child, absl::StrCat(path, ".normalizers[", i++, "]"), forms));
      }
      return absl::OkStatus();
    }
    static const std::pair<const char*, NormalForm> kForms[] = {
        {"NFC", NormalForm::kNFC}, {"NFKC", NormalForm::kNFKC}, {"NFD", NormalForm::kNFD}, {"NFKD", NormalForm::kNFKD}};
    for (const auto& [name, form] : kForms) {
      if (*type == name) {
        forms->push_back(form);
        return absl::OkStatus();
      }
    }
    return Unsupported(path + ".type", *type, "NFC, NFKC, NFD, NFKD, Sequence");
  }

  absl::Status LoadPreTokenizer(std::optional<element> node, const std::string& path,
                                std::vector<PreTokenizerStep>* steps) {
    if (!node) return absl::OkStatus();
    auto type = Type(*node, path);
    if (!type.ok()) return type.status();
    PreTokenizerStep step;
    if (*type == "Sequence") {
      const auto list = Field(*node, "pretokenizers");
      if (!list || !list->is_array()) return Error(path + ".pretokenizers", "expected an array");
      size_t i = 0;
      for (const element child : simdjson::dom::array(*list)) {
        RETURN_IF_ERROR_LOCAL(LoadPreTokenizer(child, absl::StrCat(path, ".pretokenizers[", i++, "]"), steps));
      }
      return absl::OkStatus();
    } else if (*type == "ByteLevel") {
      step.kind = PreTokenizerStep::Kind::kByteLevel;
      auto prefix = Bool(*node, "add_prefix_space", path, true);
      if (!prefix.ok()) return prefix.status();
      auto use_regex = Bool(*node, "use_regex", path, true);
      if (!use_regex.ok()) return use_regex.status();
      step.add_prefix_space = *prefix;
      step.use_regex = *use_regex;
    } else if (*type == "Digits") {
      step.kind = PreTokenizerStep::Kind::kDigits;
      auto individual = Bool(*node, "individual_digits", path, false);
      if (!individual.ok()) return individual.status();
      step.individual_digits = *individual;
    } else if (*type == "Split") {
      step.kind = PreTokenizerStep::Kind::kSplit;
      const auto pattern = Field(*node, "pattern");
      if (!pattern || !pattern->is_object()) return Error(path + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
      absl::StatusOr<Regex> regex = absl::InvalidArgumentError("");
      if (const auto r = Field(*pattern, "Regex"); r && r->is_string()) {
        regex = Regex::Compile(Sv(std::string_view(*r)));
      } else if (const auto s = Field(*pattern, "String"); s && s->is_string()) {
        regex = Regex::Literal(Sv(std::string_view(*s)));
      } else {
        return Error(path + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
      }
      if (!regex.ok()) return Error(path + ".pattern", regex.status().message());
      step.regex = std::move(*regex);
      auto behavior = String(*node, "behavior", path);
      if (!behavior.ok()) return behavior.status();
      static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
          {"Removed", SplitBehavior::kRemoved},
          {"Isolated", SplitBehavior::kIsolated},
          {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
          {"MergedWithNext", SplitBehavior::kMergedWithNext},
          {"Contiguous", SplitBehavior::kContiguous}};
      bool known = false;
      for (const auto& [name, value] : kBehaviors) {
        if (*behavior == name) {
          step.behavior = value;
          known = true;
        }
      }
      if (!known) {
        return Unsupported(path + ".behavior", *behavior,
                           "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
      }
      auto invert = Bool(*node, "invert", path, false);
      if (!invert.ok()) return invert.status();
      step.invert = *invert;
    } else {
      return Unsupported(path + ".type", *type, "Split, ByteLevel, Digits, Sequence");
    }
    steps->push_back(std::move(step));
    return absl::OkStatus();
  }

  absl::Status LoadAddedTokens(element root, HfTokenizer* tokenizer) {
    std::vector<AddedToken> tokens;
    if (const auto list = Field(root, "added_tokens")) {
      if (!list->is_array()) return Error("added_tokens", "expected an array");
      size_t i = 0;
      for (const element item : simdjson::dom::array(*list)) {
        const std::string path = absl::StrCat("added_tokens[", i++, "]");
        AddedToken token;
        auto content = String(item, "content", path);
        if (!content.ok()) return content.status();
        token.content = *content;
        for (auto [key, target, fallback] : {std::make_tuple("single_word", &token.single_word, false),
                                             std::make_tuple("lstrip", &token.lstrip, false),
                                             std::make_tuple("rstrip", &token.rstrip, false),
                                             std::make_tuple("normalized", &token.normalized, true),
                                             std::make_tuple("special", &token.special, false)}) {
          auto value = Bool(item, key, path, fallback);
          if (!value.ok()) return value.status();
          *target = *value;
        }
        tokens.push_back(std::move(token));
      }
    }
    tokenizer->added_ = AddedVocabulary(tokens, *tokenizer->model_, tokenizer->normalizer_);
    return absl::OkStatus();
  }

  absl::Status LoadPostProcessor(std::optional<element> node, const std::string& path, HfTokenizer* tokenizer) {
    if (!node) return absl::OkStatus();
    auto type = Type(*node, path);
    if (!type.ok()) return type.status();
    if (*type == "ByteLevel") return absl::OkStatus();  // offsets only; ids unchanged
    if (*type == "Sequence") {
      const auto list = Field(*node, "processors");
      if (!list || !list->is_array()) return Error(path + ".processors", "expected an array");
      size_t i = 0;
      for (const element child : simdjson::dom::array(*list)) {
        RETURN_IF_ERROR_LOCAL(LoadPostProcessor(child, absl::StrCat(path, ".processors[", i++, "]"), tokenizer));
      }
      return absl::OkStatus();
    }
    if (*type != "TemplateProcessing") {
      return Unsupported(path + ".type", *type, "TemplateProcessing, ByteLevel, Sequence");
    }
    const auto single = Field(*node, "single");
    if (!single || !single->is_array()) return Error(path + ".single", "expected an array");
    const auto specials = Field(*node, "special_tokens");
    Template t;
    size_t i = 0;
    for (const element piece : simdjson::dom::array(*single)) {
      const std::string piece_path = absl::StrCat(path, ".single[", i++, "]");
      if (const auto seq = Field(piece, "Sequence")) {
        t.items.emplace_back(std::nullopt);
      } else if (const auto special = Field(piece, "SpecialToken")) {
        auto id = String(*special, "id", piece_path + ".SpecialToken");
        if (!id.ok()) return id.status();
        const auto entry = specials ? Field(*specials, *id) : std::nullopt;
        const auto ids = entry ? Field(*entry, "ids") : std::nullopt;
        if (!ids || !ids->is_array()) {
          return Error(absl::StrCat(path, ".special_tokens[\"", *id, "\"].ids"), "missing");
        }
        std::vector<uint32_t> values;
        for (const element v : simdjson::dom::array(*ids)) {
          uint64_t x = 0;
          if (v.get_uint64().get(x) != simdjson::SUCCESS || x > 0xFFFFFFFFull) {
            return Error(absl::StrCat(path, ".special_tokens[\"", *id, "\"].ids"), "expected integer ids");
          }
          values.push_back(static_cast<uint32_t>(x));
        }
        t.items.emplace_back(std::move(values));
      } else {
        return Error(piece_path, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    tokenizer->templates_.push_back(std::move(t));
    return absl::OkStatus();
  }

  absl::Status LoadDecoder(std::optional<element> node, HfTokenizer* tokenizer) {
    if (!node) return absl::OkStatus();  // no decoder: tokens joined by spaces
    auto type = Type(*node, "decoder");
    if (!type.ok()) return type.status();
    if (*type != "ByteLevel") return Unsupported("decoder.type", *type, "ByteLevel");
    tokenizer->byte_level_decoder_ = true;
    return absl::OkStatus();
  }

  // tokenizer_config.json: bos_token / eos_token (a string or {"content": ...}) and add_bos_token. Read
  // with simdjson's on-demand API, which only parses the values it is asked for: these files carry
  // integers beyond 64 bits (model_max_length: 1e30 written out) that a full parse rejects.
  absl::Status LoadConfig(const std::string& path, HfTokenizer* tokenizer) {
    simdjson::padded_string bytes;
    if (simdjson::padded_string::load(path).get(bytes) != simdjson::SUCCESS) {
      return absl::NotFoundError(absl::StrCat("cannot read ", path));
    }
    const auto invalid = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
    };
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document doc;
    simdjson::ondemand::object root;
    if (parser.iterate(bytes).get(doc) != simdjson::SUCCESS || doc.get_object().get(root) != simdjson::SUCCESS) {
      return invalid("not a JSON object");
    }
    const auto token_id = [&](const char* key, std::optional<uint32_t>* out) -> absl::Status {
      simdjson::ondemand::value value;
      if (root.find_field_unordered(key).get(value) != simdjson::SUCCESS || value.is_null()) return absl::OkStatus();
      std::string_view content;
      simdjson::ondemand::object object;
      if (value.get_object().get(object) == simdjson::SUCCESS) {
        if (object.find_field_unordered("content").get_string().get(content) != simdjson::SUCCESS) {
          return invalid(absl::StrCat(key, ".content: expected a string"));
        }
      } else if (value.get_string().get(content) != simdjson::SUCCESS) {
        return invalid(absl::StrCat(key, ": expected a string or {\"content\": ...}"));
      }
      *out = tokenizer->TokenToId(Sv(content));
      if (!*out) return invalid(absl::StrCat(key, " '", Sv(content), "' is not a token of ", file_));
      return absl::OkStatus();
    };
    RETURN_IF_ERROR_LOCAL(token_id("bos_token", &tokenizer->bos_id_));
    RETURN_IF_ERROR_LOCAL(token_id("eos_token", &tokenizer->eos_id_));
    bool add_bos = false;
    if (root.find_field_unordered("add_bos_token").get_bool().get(add_bos) == simdjson::SUCCESS) {
      tokenizer->add_bos_token_ = add_bos;
    }
    return absl::OkStatus();
  }

  std::string file_;
  simdjson::dom::parser parser_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path) {
  std::error_code ec;
  std::string json_path = path, config_path;
  if (fs::is_directory(path, ec)) {
    json_path = (fs::path(path) / "tokenizer.json").string();
    if (!fs::exists(json_path, ec)) {
      return absl::NotFoundError(absl::StrCat("tokenizer directory '", path, "' has no tokenizer.json"));
    }
  }
  const fs::path sibling_config = fs::path(json_path).parent_path() / "tokenizer_config.json";
  if (fs::path(json_path).filename() == "tokenizer.json" && fs::exists(sibling_config, ec)) {
    config_path = sibling_config.string();
  }
  auto bytes = ReadFileToString(json_path);
  if (!bytes.ok()) return bytes.status();
  return Loader(json_path).Load(*bytes, config_path);
}

}  // namespace moe::data::hf
