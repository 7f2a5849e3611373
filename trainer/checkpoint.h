// Native checkpoints (docs/checkpoints.md): save, find, verify and load, over the process mesh.
//
//   <output_dir>/checkpoints/step-00000040/
//       rank-00000.bin ...   each rank's owned FP32 masters and Adam moments (ZeRO-1 shards), raw
//       rank-00000.part ...  each rank's part of the manifest while saving (merged by rank 0, removed)
//       tokenizer.json       the run tokenizer's files (none for the byte tokenizer), so the tokenizer
//       tokenizer_config.json  travels with the weights; listed in the manifest with size and CRC32C
//       manifest             text proto (trainer/checkpoint.proto): step, sampler, schedule, config,
//                            layout, tokenizer fingerprint and files, and for every tensor its pieces
//                            (file, offset, slice, CRC32C)
//       COMPLETE             written last ("complete" and the manifest's CRC32C): a directory without
//                            it is ignored, and a manifest that does not match it is refused
//   <output_dir>/checkpoints/latest   "step-00000040", replaced atomically after COMPLETE
//
// Every file is written under a temporary name, fsynced and renamed, so a crash at any moment leaves
// the previous checkpoint loadable. Loading verifies sizes and CRCs of everything it reads and maps
// each element through its global index, so any layout (DP, TP, EP, world size) can read any other.
// Reading a manifest verifies the stored tokenizer files (size and CRC32C) too.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.pb.h"
#include "kernels/backend.h"
#include "model/params.h"
#include "trainer/distributed_optimizer.h"
#include "parallel/mesh.h"
#include "trainer/checkpoint.pb.h"

namespace moe::trainer {

inline constexpr char kCompleteMarker[] = "COMPLETE";
inline constexpr char kManifestFile[] = "manifest";
// The line of COMPLETE that holds the manifest's CRC32C (8 hex digits).
inline constexpr char kManifestCrcKey[] = "manifest_crc32c: ";
// The names a tokenizer's files have beside weights (step directories and Hugging Face directories).
inline constexpr char kTokenizerFile[] = "tokenizer.json";
inline constexpr char kTokenizerConfigFile[] = "tokenizer_config.json";
inline constexpr char kByteFingerprint[] = "byte";

// A tokenizer's files held in memory (trainer/stored_tokenizer.h reads them), so every checkpoint of a
// run stores the same bytes, whatever happens to the originals (or to a pruned checkpoint they were
// read from) during the run.
struct TokenizerFiles {
  std::string fingerprint = kByteFingerprint;  // data::Tokenizer::fingerprint()
  // (kTokenizerFile or kTokenizerConfigFile, contents); empty for the byte tokenizer.
  std::vector<std::pair<std::string, std::string>> files;
};

struct ResumeState {
  int64_t step = 0;         // optimizer steps completed
  int64_t tokens_seen = 0;
  int64_t next_sample = 0;  // samples consumed: the sampler index the next step starts at
};

struct CheckpointContext {
  const config::TrainConfig* cfg = nullptr;
  model::ParamStore* params = nullptr;
  trainer::DistributedOptimizer* optimizer = nullptr;
  parallel::ProcessMesh* mesh = nullptr;
  const TokenizerFiles* tokenizer = nullptr;  // stored in every step directory; nullptr: byte
  // The backend whose memory holds the tensors (required): saves and loads copy through it
  // (CopyToHost / CopyFromHost), so file I/O never reads or writes device memory.
  kernels::Backend* ops = nullptr;
};

struct SaveStats {
  std::string dir;
  double seconds = 0;
  int64_t bytes = 0;  // data files over all ranks
};

std::string CheckpointRoot(const std::string& output_dir);
std::string StepDirName(int64_t step);

// Collective: writes the step directory, marks it complete, moves `latest`, prunes to keep_last.
absl::StatusOr<SaveStats> SaveCheckpoint(const CheckpointContext& ctx, const ResumeState& state);

// One process, no optimizer (e.g. tools/convert_checkpoint): writes <root>/step-NNNNNNNN as a 1-rank
// checkpoint (layout dp=tp=ep=1, world size 1) of `params`, which must hold whole tensors with full
// masters; the Adam moments are written as zeros (a fresh optimizer). Same files and
// conventions as SaveCheckpoint: rank-00000.bin/.part, tokenizer files, manifest, COMPLETE, then
// `latest` is moved. Never prunes. A stale directory of the same step is replaced.
absl::StatusOr<SaveStats> WriteSingleRankCheckpoint(const std::string& root, const config::TrainConfig& cfg,
                                                    const model::ParamStore& params, const ResumeState& state,
                                                    const TokenizerFiles& tokenizer = TokenizerFiles());

// The step directory to resume from: `explicit_dir` if given (it must be complete), else the one
// `latest` names under output_dir, else "" (a fresh run).
absl::StatusOr<std::string> FindResumeDir(const std::string& output_dir, const std::string& explicit_dir);

// Reads a complete step directory's manifest (refuses one without COMPLETE) and, with
// `verify_stored_files`, checks every stored file it lists (VerifyStoredFile).
absl::StatusOr<checkpoint::Manifest> ReadManifest(const std::string& step_dir, bool verify_stored_files = true);

// A stored file (a tokenizer file) against its manifest entry: present, size, CRC32C; errors name it.
absl::Status VerifyStoredFile(const std::string& step_dir, const checkpoint::StoredFile& file);
// A stored file's name must be a plain file name in the step directory (no '/', not "." or "..").
bool IsPlainFileName(const std::string& name);

// The manifest's tokenizer fingerprint ("byte" when absent: checkpoints written before it was recorded).
std::string TokenizerFingerprint(const checkpoint::Manifest& m);

// The tokenizer files stored in a step directory (verified), with the manifest's fingerprint.
absl::StatusOr<TokenizerFiles> ReadStoredTokenizerFiles(const std::string& step_dir, const checkpoint::Manifest& m);

// Writes `tokenizer`'s files into `dir` (a Hugging Face directory) atomically, and removes stale
// tokenizer files it does not have (so a directory re-exported with the byte tokenizer holds none).
absl::Status WriteTokenizerFiles(const std::string& dir, const TokenizerFiles& tokenizer);

// Collective: restores masters, moments, buffers and working weights. Refuses a checkpoint of another
// model. `note` says whether the layout changed (resharding).
absl::StatusOr<ResumeState> LoadCheckpoint(const CheckpointContext& ctx, const std::string& step_dir,
                                           std::string* note);

// One piece's values, after checking the file size and the CRC; errors name file and tensor.
absl::StatusOr<std::vector<float>> ReadPiece(const std::string& step_dir, const checkpoint::Piece& piece,
                                             const std::string& tensor);

// The global flat index of element i of `piece` (global_shape [R, C] for sharded pieces).
int64_t PieceGlobalIndex(const checkpoint::Piece& piece, const std::vector<int64_t>& global_shape,
                         int64_t i);

// Assembles a whole global tensor (e.g. for conversion to Hugging Face); `field` is "master",
// "adam_m" or "adam_v". Fails unless the pieces cover every element.
absl::StatusOr<std::vector<float>> ReadGlobalTensor(const std::string& step_dir,
                                                    const checkpoint::TensorEntry& entry,
                                                    const std::string& field);

}  // namespace moe::trainer
