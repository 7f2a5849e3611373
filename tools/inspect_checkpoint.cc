// inspect_checkpoint: summarises a native checkpoint (trainer/checkpoint.h) and verifies it without
// loading a model, so a bad checkpoint is found before a long job tries to resume from it.
//
//   inspect_checkpoint --checkpoint=STEP_DIR [--verify=true]
//
// STEP_DIR is a step directory (or a checkpoints root holding `latest`). Prints the manifest's step,
// tokens, layout, model dimensions, tensor count, elements per field and bytes per data file. With
// --verify (default) it also checks, reading every piece once:
//   - every data file exists and has exactly the bytes its pieces describe;
//   - every piece's CRC32C;
//   - every piece lies inside its tensor, and the pieces of each field (master; adam_m and adam_v for
//     trainable tensors) cover every element of the global tensor exactly once;
//   - every stored file (the tokenizer's tokenizer.json, tokenizer_config.json): present, size, CRC32C.
// Every problem is printed on its own line naming the file and/or tensor; exit status 1 if any.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "trainer/checkpoint.h"
#include "trainer/init_from.h"

ABSL_FLAG(std::string, checkpoint, "", "checkpoint step directory (or a checkpoints root with `latest`)");
ABSL_FLAG(bool, verify, true, "check file sizes, every piece's CRC32C and the coverage of every tensor");

namespace moe {
namespace {

using checkpoint::Manifest;
using checkpoint::Piece;
using checkpoint::TensorEntry;
using Pieces = google::protobuf::RepeatedPtrField<Piece>;

constexpr const char* kFields[] = {"master", "adam_m", "adam_v"};

const Pieces& FieldPieces(const TensorEntry& e, const std::string& field) {
  return field == "master" ? e.master() : field == "adam_m" ? e.adam_m() : e.adam_v();
}

int64_t Numel(const google::protobuf::RepeatedField<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

void PrintSummary(const std::string& dir, const Manifest& m) {
  const config::ModelConfig& mc = m.config().model();
  const auto& l = m.layout();
  std::printf("checkpoint %s\n", dir.c_str());
  std::printf("  step %lld, tokens seen %lld, next sample %lld, adam step %lld, format version %d\n",
              static_cast<long long>(m.step()), static_cast<long long>(m.tokens_seen()),
              static_cast<long long>(m.next_sample_index()), static_cast<long long>(m.adam_step()),
              m.format_version());
  std::printf("  layout dp=%lld tp=%lld ep=%lld, world size %d; run config '%s', precision %s\n",
              static_cast<long long>(l.dp()), static_cast<long long>(l.tp()), static_cast<long long>(l.ep()),
              m.world_size(), m.config().name().c_str(), config::Precision_Name(m.config().precision()).c_str());
  std::printf("  model %s: vocab %lld, hidden %lld, layers %lld (first %lld dense), heads %lld, "
              "experts %lld routed (top %lld) + %lld shared, moe_intermediate %lld, intermediate %lld\n",
              mc.model_type().c_str(), static_cast<long long>(mc.vocab_size()),
              static_cast<long long>(mc.hidden_size()), static_cast<long long>(mc.num_hidden_layers()),
              static_cast<long long>(mc.first_k_dense_replace()),
              static_cast<long long>(mc.num_attention_heads()), static_cast<long long>(mc.n_routed_experts()),
              static_cast<long long>(mc.num_experts_per_tok()), static_cast<long long>(mc.n_shared_experts()),
              static_cast<long long>(mc.moe_intermediate_size()), static_cast<long long>(mc.intermediate_size()));

  std::vector<std::string> stored;
  for (const checkpoint::StoredFile& f : m.files()) stored.push_back(absl::StrCat(f.name(), " ", f.size(), " bytes"));
  std::printf("  tokenizer %s%s\n", trainer::TokenizerFingerprint(m).c_str(),
              stored.empty() ? "" : absl::StrCat(": ", absl::StrJoin(stored, ", ")).c_str());

  std::map<std::string, int64_t> kinds;
  int64_t elements = 0;
  int64_t field_elements[3] = {0, 0, 0};
  std::map<std::string, uint64_t> file_bytes;  // what the pieces describe
  for (const TensorEntry& e : m.tensors()) {
    ++kinds[e.kind()];
    elements += Numel(e.global_shape());
    for (int f = 0; f < 3; ++f) {
      for (const Piece& p : FieldPieces(e, kFields[f])) {
        field_elements[f] += p.num_elements();
        file_bytes[p.file()] += static_cast<uint64_t>(p.num_elements()) * sizeof(float);
      }
    }
  }
  std::vector<std::string> kind_text;
  for (const auto& [k, n] : kinds) kind_text.push_back(absl::StrCat(n, " ", k));
  std::printf("  %d tensors (%s), %lld elements\n", m.tensors_size(), absl::StrJoin(kind_text, ", ").c_str(),
              static_cast<long long>(elements));
  std::printf("  elements stored: master %lld, adam_m %lld, adam_v %lld\n",
              static_cast<long long>(field_elements[0]), static_cast<long long>(field_elements[1]),
              static_cast<long long>(field_elements[2]));
  uint64_t total = 0;
  for (const auto& [file, bytes] : file_bytes) {
    struct stat st;
    const std::string path = JoinPath(dir, file);
    const std::string on_disk = ::stat(path.c_str(), &st) == 0 ? absl::StrCat(st.st_size, " bytes on disk")
                                                                : std::string("missing");
    std::printf("  %s: %llu bytes (%s)\n", file.c_str(), static_cast<unsigned long long>(bytes),
                on_disk.c_str());
    total += bytes;
  }
  std::printf("  data files: %zu, %llu bytes in all\n", file_bytes.size(), static_cast<unsigned long long>(total));
}

// Collects the problems of a checkpoint; every line names a file and/or a tensor.
class Verifier {
 public:
  Verifier(std::string dir, const Manifest& m) : dir_(std::move(dir)), m_(m) {}

  std::vector<std::string> Run() {
    CheckFiles();
    for (const checkpoint::StoredFile& f : m_.files()) {
      const absl::Status s = trainer::VerifyStoredFile(dir_, f);
      if (!s.ok()) Problem(std::string(s.message()));
    }
    for (const TensorEntry& e : m_.tensors()) {
      if (!names_.insert(e.name()).second) Problem(absl::StrCat("tensor ", e.name(), " is listed twice"));
      for (const char* field : kFields) {
        const bool expected = std::string(field) == "master" || e.kind() != "buffer";
        const Pieces& pieces = FieldPieces(e, field);
        if (!expected && pieces.empty()) continue;
        CheckField(e, field, pieces);
      }
    }
    return problems_;
  }

 private:
  void Problem(std::string s) { problems_.push_back(std::move(s)); }

  // Sizes: each data file must hold exactly the bytes its pieces describe.
  void CheckFiles() {
    struct Extent {
      uint64_t end = 0, bytes = 0;
      std::string first_tensor;
      int64_t pieces = 0;
    };
    std::map<std::string, Extent> files;
    for (const TensorEntry& e : m_.tensors()) {
      for (const char* field : kFields) {
        for (const Piece& p : FieldPieces(e, field)) {
          Extent& x = files[p.file()];
          const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(p.num_elements(), 0)) * sizeof(float);
          x.end = std::max(x.end, p.byte_offset() + n);
          x.bytes += n;
          if (x.pieces++ == 0) x.first_tensor = e.name();
        }
      }
    }
    for (const auto& [file, x] : files) {
      const std::string path = JoinPath(dir_, file);
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) {
        Problem(absl::StrCat("data file ", path, " is missing (", x.pieces, " pieces, first tensor ",
                             x.first_tensor, ")"));
        bad_files_[file] = 0;
        continue;
      }
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      size_[file] = size;
      if (size < x.end) {
        Problem(absl::StrCat("data file ", path, " is truncated: ", size, " bytes, its pieces need ", x.end));
      } else if (size != x.end) {
        Problem(absl::StrCat("data file ", path, " has ", size, " bytes, its pieces describe ", x.end,
                             " (trailing bytes)"));
      }
      if (x.bytes != x.end) {
        Problem(absl::StrCat("data file ", path, ": its pieces hold ", x.bytes, " bytes but span ", x.end,
                             " (gaps or overlaps)"));
      }
    }
  }

  void CheckField(const TensorEntry& e, const std::string& field, const Pieces& pieces) {
    const std::vector<int64_t> shape(e.global_shape().begin(), e.global_shape().end());
    const int64_t numel = Numel(e.global_shape());
    std::vector<uint8_t> count(numel, 0);
    bool placed = true;  // every piece's elements could be placed (else coverage is not meaningful)
    for (int i = 0; i < pieces.size(); ++i) {
      const Piece& p = pieces.Get(i);
      const std::string where = absl::StrCat("tensor ", e.name(), " ", field, " piece ", i, " (",
                                             JoinPath(dir_, p.file()), " byte ", p.byte_offset(), ")");
      // Data: skip pieces of missing files, and those past the end of a truncated one (reported).
      const uint64_t end = p.byte_offset() + static_cast<uint64_t>(std::max<int64_t>(p.num_elements(), 0)) * 4;
      if (bad_files_.count(p.file()) == 0) {
        if (end > size_[p.file()]) {
          Problem(absl::StrCat(where, ": extends past the end of the data file (", size_[p.file()], " bytes)"));
        } else {
          auto v = trainer::ReadPiece(dir_, p, e.name());
          if (!v.ok()) Problem(absl::StrCat(field, " piece ", i, ": ", v.status().message()));
        }
      }
      // Geometry.
      const int64_t local_numel = Numel(p.local_shape());
      if (p.num_elements() < 0 || p.local_begin() < 0 || p.local_begin() + p.num_elements() > local_numel) {
        Problem(absl::StrCat(where, ": elements [", p.local_begin(), ", ", p.local_begin() + p.num_elements(),
                             ") outside its local shard ", ShapeString(p.local_shape())));
        placed = false;
        continue;
      }
      if (!SliceFits(p, shape)) {
        Problem(absl::StrCat(where, ": slice (dim ", p.shard_dim(), ", offset ", p.shard_offset(), ", shape ",
                             ShapeString(p.local_shape()), ") does not fit the tensor's shape ",
                             ShapeString(e.global_shape())));
        placed = false;
        continue;
      }
      for (int64_t k = 0; k < p.num_elements(); ++k) {
        const int64_t g = trainer::PieceGlobalIndex(p, shape, k);
        if (count[g] < 2) ++count[g];
      }
    }
    if (!placed) return;
    const int64_t missing = std::count(count.begin(), count.end(), 0);
    const int64_t repeated = std::count(count.begin(), count.end(), 2);
    if (missing > 0 || repeated > 0) {
      Problem(absl::StrCat("tensor ", e.name(), " ", field, ": pieces leave ", missing, " of ", numel,
                           " elements uncovered and cover ", repeated, " more than once"));
    }
  }

  // The slice (shard_dim, shard_offset, local_shape) lies inside the global tensor.
  static bool SliceFits(const Piece& p, const std::vector<int64_t>& shape) {
    if (p.shard_dim() < 0) {
      return p.local_shape_size() == static_cast<int>(shape.size()) &&
             std::equal(shape.begin(), shape.end(), p.local_shape().begin());
    }
    if (shape.size() != 2 || p.local_shape_size() != 2 || p.shard_dim() > 1) return false;
    const int d = p.shard_dim(), o = 1 - d;
    return p.shard_offset() >= 0 && p.local_shape(o) == shape[o] &&
           p.shard_offset() + p.local_shape(d) <= shape[d];
  }

  std::string dir_;
  const Manifest& m_;
  std::set<std::string> names_;
  std::map<std::string, uint64_t> size_;       // data file -> bytes on disk
  std::map<std::string, int> bad_files_;       // missing data files
  std::vector<std::string> problems_;
};

int Run() {
  const std::string arg = absl::GetFlag(FLAGS_checkpoint);
  if (arg.empty()) {
    std::fprintf(stderr, "inspect_checkpoint: --checkpoint=STEP_DIR is required\n");
    return 1;
  }
  const absl::StatusOr<std::string> resolved = trainer::ResolveWeightsDir(arg);
  if (!resolved.ok()) {
    std::fprintf(stderr, "inspect_checkpoint: %s\n", std::string(resolved.status().message()).c_str());
    return 1;
  }
  const std::string& dir = *resolved;
  auto m = trainer::ReadManifest(dir, /*verify_stored_files=*/false);  // the Verifier reports them
  if (!m.ok()) {
    std::fprintf(stderr, "inspect_checkpoint: %s\n", std::string(m.status().message()).c_str());
    return 1;
  }
  PrintSummary(dir, *m);
  if (!absl::GetFlag(FLAGS_verify)) return 0;
  const std::vector<std::string> problems = Verifier(dir, *m).Run();
  for (const std::string& p : problems) std::printf("PROBLEM: %s\n", p.c_str());
  if (!problems.empty()) {
    std::printf("FAILED: %zu problem(s) in %s\n", problems.size(), dir.c_str());
    return 1;
  }
  std::printf("OK: every data file, CRC32C, tensor coverage and stored file verified\n");
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return moe::Run();
}
