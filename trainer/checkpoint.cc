#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <google/protobuf/text_format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/crc32c.h"
#include "base/file_util.h"
#include "base/status.h"
#include "configs/config_loader.h"

namespace moe::trainer {
namespace {

namespace fs = std::filesystem;
using checkpoint::Manifest;
using checkpoint::Piece;
using checkpoint::TensorEntry;

constexpr int kFormatVersion = 1;

std::string RankFile(int rank, const char* ext) { return absl::StrFormat("rank-%05d.%s", rank, ext); }

const char* KindName(model::ParamKind k) {
  switch (k) {
    case model::ParamKind::kMatrix: return "matrix";
    case model::ParamKind::kNorm: return "norm";
    case model::ParamKind::kBuffer: return "buffer";
  }
  return "?";
}

// Writes m as a text proto to `path` atomically; returns the bytes written (the manifest's checksum
// covers them).
absl::StatusOr<std::string> WriteTextProto(const std::string& path, const google::protobuf::Message& m) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(m, &text)) {
    return absl::InternalError(absl::StrCat("cannot serialise ", path));
  }
  RETURN_IF_ERROR(WriteFileAtomically(path, text));
  return text;
}

// `text`, read from `path`, as a text proto.
template <typename M>
absl::StatusOr<M> ParseTextProto(const std::string& text, const std::string& path) {
  M m;
  if (!google::protobuf::TextFormat::ParseFromString(text, &m)) {
    return absl::DataLossError(absl::StrCat("cannot parse ", path, ": the file is corrupt"));
  }
  return m;
}

template <typename M>
absl::StatusOr<M> ReadTextProto(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  return ParseTextProto<M>(text, path);
}

// Appends `n` floats to the rank's data file and describes them as a piece of `p`. With `ops`, `values`
// is backend memory, copied out first.
absl::Status AppendPiece(AtomicFileWriter& w, const std::string& file, int rank, uint64_t* offset,
                         const model::Param& p, int64_t local_begin, const float* values, int64_t n,
                         Piece* piece, kernels::Backend* ops = nullptr) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  std::vector<float> host;
  if (ops != nullptr) {
    host.resize(static_cast<size_t>(n));
    ops->CopyToHost(values, bytes, host.data());
    values = host.data();
  }
  RETURN_IF_ERROR(w.Append(values, bytes));
  piece->set_rank(rank);
  piece->set_file(file);
  piece->set_byte_offset(*offset);
  piece->set_num_elements(n);
  piece->set_crc32c(Crc32c(values, bytes));
  piece->set_shard_dim(p.shard.dim);
  piece->set_shard_offset(p.shard.offset);
  for (int64_t s : p.shape) piece->add_local_shape(s);
  piece->set_local_begin(local_begin);
  *offset += bytes;
  return absl::OkStatus();
}

TensorEntry* EntryFor(Manifest* m, std::map<std::string, TensorEntry*>* index, const model::Param& p) {
  auto it = index->find(p.name);
  if (it != index->end()) return it->second;
  TensorEntry* e = m->add_tensors();
  e->set_name(p.name);
  for (int64_t s : p.global_shape()) e->add_global_shape(s);
  e->set_kind(KindName(p.kind));
  (*index)[p.name] = e;
  return e;
}

// The run-level fields of a checkpoint of `cfg` after `state`, written by `world_size` ranks.
Manifest NewManifest(const config::TrainConfig& cfg, const config::ParallelConfig& layout, int world_size,
                     const ResumeState& state) {
  Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_step(state.step);
  m.set_tokens_seen(state.tokens_seen);
  m.set_next_sample_index(state.next_sample);
  m.set_data_seed(cfg.data().seed());
  m.set_init_seed(cfg.seed());
  m.set_adam_step(state.step);
  m.set_lr_schedule_step(state.step);
  *m.mutable_config() = cfg;
  *m.mutable_layout() = layout;
  m.set_world_size(world_size);
  return m;
}

// Writes the tokenizer files and lists them in the manifest, then writes the manifest, then COMPLETE,
// then points `latest` at the step directory.
absl::Status PublishStepDir(const std::string& root, int64_t step, Manifest m, const TokenizerFiles& tokenizer) {
  const std::string dir = JoinPath(root, StepDirName(step));
  m.set_tokenizer_fingerprint(tokenizer.fingerprint);
  for (const auto& [name, contents] : tokenizer.files) {
    if (!IsPlainFileName(name)) return absl::InvalidArgumentError(absl::StrCat("bad stored file name '", name, "'"));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, name), contents));
    checkpoint::StoredFile* f = m.add_files();
    f->set_name(name);
    f->set_size(contents.size());
    f->set_crc32c(Crc32c(contents.data(), contents.size()));
  }
  ASSIGN_OR_RETURN(const std::string text, WriteTextProto(JoinPath(dir, kManifestFile), m));
  // COMPLETE carries the manifest's checksum, so a changed digit in the step or the sampler position
  // (which no data CRC covers) is refused too.
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, kCompleteMarker),
                                      absl::StrFormat("complete\n%s%08x\n", kManifestCrcKey, Crc32c(text.data(), text.size()))));
  return WriteFileAtomically(JoinPath(root, "latest"), StepDirName(step) + "\n");
}

// Removes step directories beyond the newest `keep_last` complete ones (never `current`); keep_last 0
// keeps them all (torchtitan's keep_latest_k = 0).
void Prune(const std::string& root, const std::string& current, int64_t keep_last) {
  if (keep_last <= 0) return;
  std::vector<std::pair<int64_t, fs::path>> complete;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (!absl::StartsWith(name, "step-") || !absl::SimpleAtoi(name.substr(5), &step)) continue;
    if (fs::exists(entry.path() / kCompleteMarker)) complete.push_back({step, entry.path()});
  }
  std::sort(complete.begin(), complete.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = static_cast<size_t>(keep_last); i < complete.size(); ++i) {
    if (complete[i].second.filename() == current) continue;
    fs::remove_all(complete[i].second, ec);
  }
}

bool SameSlice(const Piece& piece, const model::Param& p) {
  if (piece.shard_dim() != p.shard.dim || piece.shard_offset() != p.shard.offset) return false;
  if (piece.local_shape_size() != static_cast<int>(p.shape.size())) return false;
  for (size_t i = 0; i < p.shape.size(); ++i) {
    if (piece.local_shape(static_cast<int>(i)) != p.shape[i]) return false;
  }
  return true;
}

// Fills dest[0, n) (backend memory: written with one CopyFromHost) with elements [local_begin,
// local_begin + n) of p's local shard from `pieces`; `host` receives them too.
absl::Status FillFromPieces(const std::string& dir, const TensorEntry& entry,
                            const google::protobuf::RepeatedPtrField<Piece>& pieces, const model::Param& p,
                            int64_t local_begin, int64_t n, kernels::Backend& ops, float* dest_on_backend,
                            std::vector<float>* host) {
  host->assign(static_cast<size_t>(n), 0.0f);
  float* dest = host->data();
  const std::vector<int64_t> global_shape(entry.global_shape().begin(), entry.global_shape().end());
  int64_t filled = 0;
  for (const Piece& piece : pieces) {
    if (SameSlice(piece, p)) {  // same layout: a plain range overlap, read only what overlaps
      const int64_t lo = std::max(local_begin, piece.local_begin());
      const int64_t hi = std::min(local_begin + n, piece.local_begin() + piece.num_elements());
      if (lo >= hi) continue;
      ASSIGN_OR_RETURN(std::vector<float> v, ReadPiece(dir, piece, entry.name()));
      std::copy(v.begin() + (lo - piece.local_begin()), v.begin() + (hi - piece.local_begin()),
                dest + (lo - local_begin));
      filled += hi - lo;
      continue;
    }
    // Another layout: place every element through its global index.
    ASSIGN_OR_RETURN(std::vector<float> v, ReadPiece(dir, piece, entry.name()));
    for (int64_t i = 0; i < piece.num_elements(); ++i) {
      const int64_t l = p.LocalIndex(PieceGlobalIndex(piece, global_shape, i));
      if (l >= local_begin && l < local_begin + n) {
        dest[l - local_begin] = v[i];
        ++filled;
      }
    }
  }
  if (filled != n) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, " covers ", filled, " of the ", n,
                                            " elements of ", entry.name(), " this rank needs"));
  }
  ops.CopyFromHost(dest, sizeof(float) * static_cast<size_t>(n), dest_on_backend);
  return absl::OkStatus();
}

}  // namespace

std::string CheckpointRoot(const std::string& output_dir) { return JoinPath(output_dir, "checkpoints"); }
std::string StepDirName(int64_t step) { return absl::StrFormat("step-%08d", step); }

int64_t PieceGlobalIndex(const Piece& piece, const std::vector<int64_t>& global_shape, int64_t i) {
  const int64_t l = piece.local_begin() + i;
  if (piece.shard_dim() < 0) return l;
  const int64_t local_cols = piece.local_shape(1), cols = global_shape[1];
  const int64_t r = l / local_cols, c = l % local_cols;
  if (piece.shard_dim() == 0) return (piece.shard_offset() + r) * cols + c;
  return r * cols + piece.shard_offset() + c;
}

absl::StatusOr<std::vector<float>> ReadPiece(const std::string& step_dir, const Piece& piece,
                                             const std::string& tensor) {
  const std::string path = JoinPath(step_dir, piece.file());
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("checkpoint data file ", path, " is missing (tensor ", tensor, ")"));
  struct stat st;
  ::fstat(fd, &st);
  const uint64_t need = piece.byte_offset() + static_cast<uint64_t>(piece.num_elements()) * sizeof(float);
  if (static_cast<uint64_t>(st.st_size) < need) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat("checkpoint data file ", path, " is truncated: ", st.st_size,
                                            " bytes, tensor ", tensor, " needs bytes up to ", need));
  }
  std::vector<float> v(piece.num_elements());
  const size_t bytes = v.size() * sizeof(float);
  const ssize_t got = ::pread(fd, v.data(), bytes, static_cast<off_t>(piece.byte_offset()));
  ::close(fd);
  if (got != static_cast<ssize_t>(bytes)) {
    return absl::DataLossError(absl::StrCat("short read from ", path, " (tensor ", tensor, ")"));
  }
  if (Crc32c(v.data(), bytes) != piece.crc32c()) {
    return absl::DataLossError(absl::StrCat("CRC32C mismatch in checkpoint data file ", path, " at byte ",
                                            piece.byte_offset(), " (tensor ", tensor,
                                            "): the checkpoint is corrupt"));
  }
  return v;
}

absl::StatusOr<std::vector<float>> ReadGlobalTensor(const std::string& step_dir, const TensorEntry& entry,
                                                    const std::string& field) {
  const auto& pieces = field == "master" ? entry.master() : field == "adam_m" ? entry.adam_m() : entry.adam_v();
  const std::vector<int64_t> shape(entry.global_shape().begin(), entry.global_shape().end());
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  std::vector<float> out(numel);
  std::vector<char> seen(numel, 0);
  for (const Piece& piece : pieces) {
    ASSIGN_OR_RETURN(std::vector<float> v, ReadPiece(step_dir, piece, entry.name()));
    for (int64_t i = 0; i < piece.num_elements(); ++i) {
      const int64_t g = PieceGlobalIndex(piece, shape, i);
      if (g < 0 || g >= numel) return absl::DataLossError(absl::StrCat("piece of ", entry.name(), " out of range"));
      out[g] = v[i];
      seen[g] = 1;
    }
  }
  if (std::count(seen.begin(), seen.end(), 0) != 0) {
    return absl::DataLossError(absl::StrCat("checkpoint ", step_dir, " does not cover every element of ",
                                            entry.name(), " (", field, ")"));
  }
  return out;
}

absl::StatusOr<SaveStats> SaveCheckpoint(const CheckpointContext& ctx, const ResumeState& state) {
  const auto t0 = std::chrono::steady_clock::now();
  parallel::ProcessMesh& mesh = *ctx.mesh;
  parallel::Communicator& world = mesh.world();
  const int rank = mesh.world_rank();
  const std::string root = CheckpointRoot(ctx.cfg->output_dir());
  const std::string dir = JoinPath(root, StepDirName(state.step));

  // Rank 0 clears a stale (incomplete) directory of the same step, then everyone writes.
  absl::Status status;
  if (rank == 0) {
    status = MakeDirs(root);
    std::error_code ec;
    if (status.ok()) fs::remove_all(dir, ec);
    if (status.ok()) status = MakeDirs(dir);
  }
  world.Barrier();
  RETURN_IF_ERROR(status);

  // This rank's data file and manifest part; a failure on any rank fails the save on all of them.
  const std::string file = RankFile(rank, "bin");
  uint64_t offset = 0;
  auto write_rank_files = [&]() -> absl::Status {
    Manifest part;
    std::map<std::string, TensorEntry*> index;
    ASSIGN_OR_RETURN(AtomicFileWriter w, AtomicFileWriter::Create(JoinPath(dir, file)));
    for (const auto& op : ctx.optimizer->OwnedPieces()) {
      TensorEntry* e = EntryFor(&part, &index, *op.param);
      RETURN_IF_ERROR(AppendPiece(w, file, rank, &offset, *op.param, op.local_begin, op.master, op.size, e->add_master(), ctx.ops));
      RETURN_IF_ERROR(AppendPiece(w, file, rank, &offset, *op.param, op.local_begin, op.adam_m, op.size, e->add_adam_m(), ctx.ops));
      RETURN_IF_ERROR(AppendPiece(w, file, rank, &offset, *op.param, op.local_begin, op.adam_v, op.size, e->add_adam_v(), ctx.ops));
    }
    if (rank == 0) {  // buffers (the correction biases) are identical everywhere; rank 0 saves them
      absl::Status s;
      ctx.params->ForEach([&](const model::Param& p) {
        if (!s.ok() || p.trainable()) return;
        s = AppendPiece(w, file, rank, &offset, p, 0, p.master.data(), p.numel(), EntryFor(&part, &index, p)->add_master(),
                        ctx.ops);
      });
      RETURN_IF_ERROR(s);
    }
    RETURN_IF_ERROR(w.Commit());
    return WriteTextProto(JoinPath(dir, RankFile(rank, "part")), part).status();
  };
  status = write_rank_files();
  if (!status.ok()) std::fprintf(stderr, "train: rank %d: %s\n", rank, std::string(status.message()).c_str());
  // Fault injection for the crash-safety test: widen the window between the data files and the
  // manifest so that kills land inside a save.
  if (const char* delay = std::getenv("MOE_TEST_SAVE_DELAY_MS")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
  }
  int64_t counters[2] = {static_cast<int64_t>(offset), status.ok() ? 0 : 1};  // bytes, failed ranks
  world.AllReduceSum(counters, 2);
  RETURN_IF_ERROR(status);
  if (counters[1] > 0) return absl::InternalError("checkpoint save failed on another rank");
  const int64_t bytes = counters[0];

  if (rank == 0) {
    Manifest m = NewManifest(*ctx.cfg, ctx.cfg->parallel(), world.size(), state);
    std::map<std::string, TensorEntry*> merged;
    for (int r = 0; r < world.size() && status.ok(); ++r) {
      auto p = ReadTextProto<Manifest>(JoinPath(dir, RankFile(r, "part")));
      if (!p.ok()) {
        status = p.status();
        break;
      }
      for (const TensorEntry& e : p->tensors()) {
        auto it = merged.find(e.name());
        if (it == merged.end()) {
          TensorEntry* n = m.add_tensors();
          *n = e;
          merged[e.name()] = n;
        } else {
          it->second->mutable_master()->MergeFrom(e.master());
          it->second->mutable_adam_m()->MergeFrom(e.adam_m());
          it->second->mutable_adam_v()->MergeFrom(e.adam_v());
        }
      }
    }
    // The parts are merged: remove them, so that every file left is covered by a checksum.
    for (int r = 0; r < world.size() && status.ok(); ++r) {
      std::error_code ec;
      std::filesystem::remove(JoinPath(dir, RankFile(r, "part")), ec);
    }
    if (status.ok()) status = PublishStepDir(root, state.step, m, ctx.tokenizer ? *ctx.tokenizer : TokenizerFiles());
    if (status.ok()) Prune(root, StepDirName(state.step), ctx.cfg->checkpoint().keep_last());
  }
  // Everyone learns whether rank 0 finished, so a failed save fails on every rank.
  int64_t failed = status.ok() ? 0 : 1;
  world.AllReduceSum(&failed, 1);
  RETURN_IF_ERROR(status);
  if (failed) return absl::InternalError("checkpoint save failed on rank 0");

  SaveStats stats;
  stats.dir = dir;
  stats.bytes = bytes;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

absl::StatusOr<SaveStats> WriteSingleRankCheckpoint(const std::string& root, const config::TrainConfig& cfg,
                                                    const model::ParamStore& params, const ResumeState& state,
                                                    const TokenizerFiles& tokenizer) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = JoinPath(root, StepDirName(state.step));
  RETURN_IF_ERROR(MakeDirs(root));
  std::error_code ec;
  fs::remove_all(dir, ec);
  RETURN_IF_ERROR(MakeDirs(dir));

  // The order SaveCheckpoint's rank 0 would use: trainable tensors (master, adam_m, adam_v), then buffers.
  const std::string file = RankFile(0, "bin");
  uint64_t offset = 0;
  Manifest part;
  std::map<std::string, TensorEntry*> index;
  ASSIGN_OR_RETURN(AtomicFileWriter w, AtomicFileWriter::Create(JoinPath(dir, file)));
  std::vector<float> zeros;
  absl::Status s;
  // values == nullptr: zeros (a fresh optimizer's moments).
  auto append = [&](const model::Param& p, const float* values, Piece* piece) {
    if (values == nullptr) {
      zeros.assign(p.numel(), 0.0f);
      values = zeros.data();
    }
    return AppendPiece(w, file, 0, &offset, p, 0, values, p.numel(), piece);
  };
  for (const bool buffers : {false, true}) {
    params.ForEach([&](const model::Param& p) {
      if (!s.ok() || p.trainable() == buffers) return;
      if (p.shape != p.global_shape() || static_cast<int64_t>(p.master.size()) != p.numel()) {
        s = absl::InvalidArgumentError(absl::StrCat("cannot write ", p.name, " to a 1-rank checkpoint: ",
                                                    "it is a shard or its master copy is not held"));
        return;
      }
      TensorEntry* e = EntryFor(&part, &index, p);
      s = append(p, p.master.data(), e->add_master());
      if (s.ok() && p.trainable()) s = append(p, nullptr, e->add_adam_m());
      if (s.ok() && p.trainable()) s = append(p, nullptr, e->add_adam_v());
    });
  }
  RETURN_IF_ERROR(s);
  RETURN_IF_ERROR(w.Commit());

  config::ParallelConfig layout = cfg.parallel();
  layout.set_dp(1);
  layout.set_tp(1);
  layout.set_ep(1);
  Manifest m = NewManifest(cfg, layout, 1, state);
  m.mutable_tensors()->MergeFrom(part.tensors());
  RETURN_IF_ERROR(PublishStepDir(root, state.step, m, tokenizer));

  SaveStats stats;
  stats.dir = dir;
  stats.bytes = static_cast<int64_t>(offset);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

absl::StatusOr<std::string> FindResumeDir(const std::string& output_dir, const std::string& explicit_dir) {
  if (!explicit_dir.empty()) {
    if (!FileExists(JoinPath(explicit_dir, kCompleteMarker))) {
      return absl::FailedPreconditionError(absl::StrCat("--resume_from=", explicit_dir,
                                                        " is not a complete checkpoint (no ", kCompleteMarker, ")"));
    }
    return explicit_dir;
  }
  const std::string root = CheckpointRoot(output_dir);
  const std::string latest = JoinPath(root, "latest");
  if (!FileExists(latest)) return std::string();
  ASSIGN_OR_RETURN(std::string name, ReadFileToString(latest));
  const std::string dir = JoinPath(root, std::string(absl::StripTrailingAsciiWhitespace(name)));
  if (!FileExists(JoinPath(dir, kCompleteMarker))) {
    return absl::DataLossError(absl::StrCat(latest, " names ", dir, ", which is not a complete checkpoint"));
  }
  return dir;
}

absl::StatusOr<Manifest> ReadManifest(const std::string& step_dir, bool verify_stored_files) {
  const std::string complete_path = JoinPath(step_dir, kCompleteMarker);
  if (!FileExists(complete_path)) {
    return absl::FailedPreconditionError(absl::StrCat(step_dir, " is not a complete checkpoint (no ",
                                                      kCompleteMarker, " marker)"));
  }
  // COMPLETE: "complete", then the manifest's CRC32C (checkpoints written before it have none).
  ASSIGN_OR_RETURN(const std::string complete, ReadFileToString(complete_path));
  const std::vector<std::string> lines = absl::StrSplit(complete, '\n', absl::SkipEmpty());
  uint32_t want_crc = 0;
  const bool has_crc = lines.size() == 2 && absl::StartsWith(lines[1], kManifestCrcKey) &&
                       lines[1].size() == std::strlen(kManifestCrcKey) + 8 &&
                       absl::SimpleHexAtoi(lines[1].substr(std::strlen(kManifestCrcKey)), &want_crc);
  if (lines.empty() || lines[0] != "complete" || (lines.size() > 1 && !has_crc)) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", complete_path, " is not a completion marker: the "
                                            "checkpoint is corrupt"));
  }
  const std::string manifest_path = JoinPath(step_dir, kManifestFile);
  ASSIGN_OR_RETURN(const std::string manifest_text, ReadFileToString(manifest_path));
  if (!has_crc) {
    std::fprintf(stderr, "warning: %s was written before manifests carried a checksum; its manifest (step, "
                 "sampler position, layout) is not verified\n", step_dir.c_str());
  } else if (Crc32c(manifest_text.data(), manifest_text.size()) != want_crc) {
    return absl::DataLossError(absl::StrCat("CRC32C mismatch in checkpoint file ", manifest_path, " (against ",
                                            complete_path, "): the checkpoint is corrupt"));
  }
  ASSIGN_OR_RETURN(Manifest m, ParseTextProto<Manifest>(manifest_text, manifest_path));
  if (m.format_version() != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(step_dir, "/manifest has format version ",
                                                      m.format_version(), ", expected ", kFormatVersion));
  }
  if (verify_stored_files) {
    for (const checkpoint::StoredFile& f : m.files()) RETURN_IF_ERROR(VerifyStoredFile(step_dir, f));
  }
  return m;
}

absl::StatusOr<ResumeState> LoadCheckpoint(const CheckpointContext& ctx, const std::string& step_dir,
                                           std::string* note) {
  ASSIGN_OR_RETURN(Manifest m, ReadManifest(step_dir));
  RETURN_IF_ERROR(config::CheckSameArchitecture(m.config().model(), ctx.cfg->model(), step_dir));
  if (ctx.tokenizer != nullptr && TokenizerFingerprint(m) != ctx.tokenizer->fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint ", step_dir, " was trained with tokenizer ",
                                                      TokenizerFingerprint(m), ", this run's is ",
                                                      ctx.tokenizer->fingerprint));
  }
  const auto& was = m.layout();
  const auto& now = ctx.cfg->parallel();
  note->clear();
  if (was.dp() != now.dp() || was.tp() != now.tp() || was.ep() != now.ep()) {
    *note = absl::StrFormat("resharding checkpoint from dp=%d tp=%d ep=%d (%d ranks) to dp=%d tp=%d ep=%d (%d ranks)",
                            was.dp(), was.tp(), was.ep(), m.world_size(), now.dp(), now.tp(), now.ep(),
                            ctx.mesh->world_size());
  }
  std::map<std::string, const TensorEntry*> index;
  for (const TensorEntry& e : m.tensors()) index[e.name()] = &e;
  auto find = [&](const std::string& name) -> absl::StatusOr<const TensorEntry*> {
    auto it = index.find(name);
    if (it == index.end()) return absl::NotFoundError(absl::StrCat("checkpoint ", step_dir, " has no tensor ", name));
    return it->second;
  };

  absl::Status status;
  kernels::Backend& ops = *ctx.ops;
  std::vector<float> host;  // each piece's values, on their way to the backend
  for (const auto& op : ctx.optimizer->OwnedPieces()) {
    auto entry = find(op.param->name);
    if (!entry.ok()) {
      status = entry.status();
      break;
    }
    const TensorEntry& e = **entry;
    status = FillFromPieces(step_dir, e, e.master(), *op.param, op.local_begin, op.size, ops, op.master, &host);
    if (status.ok()) status = FillFromPieces(step_dir, e, e.adam_m(), *op.param, op.local_begin, op.size, ops, op.adam_m, &host);
    if (status.ok()) status = FillFromPieces(step_dir, e, e.adam_v(), *op.param, op.local_begin, op.size, ops, op.adam_v, &host);
    if (!status.ok()) break;
  }
  if (status.ok()) {
    ctx.params->ForEach([&](model::Param& p) {
      if (!status.ok() || p.trainable()) return;
      auto entry = find(p.name);
      if (!entry.ok()) {
        status = entry.status();
        return;
      }
      status = FillFromPieces(step_dir, **entry, (*entry)->master(), p, 0, p.numel(), ops, p.master.data(), &host);
      // Buffers (the correction biases) have an FP32 working copy equal to the master.
      if (status.ok()) ops.CopyFromHost(host.data(), sizeof(float) * host.size(), p.working.data());
    });
  }
  // A bad file on any rank fails the load everywhere (never a partial load). Say what it was before
  // the collective, since the job may be aborted right after it.
  if (!status.ok()) {
    std::fprintf(stderr, "train: rank %d: %s\n", ctx.mesh->world_rank(), std::string(status.message()).c_str());
  }
  int64_t failed = status.ok() ? 0 : 1;
  ctx.mesh->world().AllReduceSum(&failed, 1);
  RETURN_IF_ERROR(status);
  if (failed) return absl::DataLossError(absl::StrCat("loading ", step_dir, " failed on another rank"));
  ctx.optimizer->SyncWorkingWeights();
  // Checkpoints written before the sampler position was read back recorded step * G there too.
  const int64_t next_sample = m.has_next_sample_index()
                                  ? m.next_sample_index()
                                  : m.step() * m.config().batch().global_batch_size();
  if (next_sample < 0) {
    return absl::DataLossError(absl::StrCat(step_dir, "/manifest: next_sample_index ", next_sample, " is negative"));
  }
  // AdamW's bias correction and the LR schedule resume from `step`; a manifest whose recorded counters
  // say otherwise was not written by this trainer's save.
  for (const auto& [what, recorded, value] :
       {std::tuple<const char*, bool, int64_t>{"adam_step", m.has_adam_step(), m.adam_step()},
        std::tuple<const char*, bool, int64_t>{"lr_schedule_step", m.has_lr_schedule_step(), m.lr_schedule_step()}}) {
    if (recorded && value != m.step()) {
      return absl::DataLossError(absl::StrCat(step_dir, "/manifest: ", what, " ", value, " differs from step ", m.step(),
                                              " (the optimizer and schedule resume from step)"));
    }
  }
  const int64_t was_batch = m.config().batch().global_batch_size(), now_batch = ctx.cfg->batch().global_batch_size();
  if (was_batch != now_batch) {
    if (!note->empty()) *note += "\n";
    *note += absl::StrFormat("global batch size %d -> %d: the data continue from sample %d (the samples consumed)",
                             was_batch, now_batch, next_sample);
  }
  return ResumeState{m.step(), m.tokens_seen(), next_sample};
}

}  // namespace moe::trainer
