// prepare_data's reading and encoding pipeline: input files are read in order as chunks (a whole file
// for text/Brown; about chunk_bytes of whole lines for JSON Lines, data/jsonl_documents.h), encoded on
// worker threads, and handed back in input order. What a chunk holds depends only on the files and
// chunk_bytes, and its encoding only on the chunk, so the sequence of chunks Next() returns is the same
// for every thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/jsonl_documents.h"

namespace moe::data {

enum class InputFormat { kText, kBrown, kJsonl };

struct InputFile {
  std::string path;   // where to read it
  std::string name;   // its path relative to the input it was found in (what the split hashes)
  uint64_t size = 0;  // bytes, for progress and the size limit of whole-file documents
};

// A unit of work, and what encoding made of it.
struct DocumentChunk {
  size_t file = 0;          // index into the input list
  std::string data;         // JSONL: whole lines; text/brown: the file's contents, BOM stripped (emptied once encoded)
  int64_t first_line = 0;   // JSONL: the number (from 1) of the first line in `data`
  bool whole_file = false;  // text/brown: one document, the file
  bool skip = false;        // nothing to encode (the file was refused before it was read, or has no lines)
  int64_t input_bytes = 0;  // bytes of the file this chunk covers (the chunks of a file add up to its size)
  EncodedChunk out;         // its documents; issues found while reading come first in out.issues
};

class DocumentPipeline {
 public:
  // Reading issues: a UTF-8 BOM at the start of a file (stripped; line 1), a whole-file document larger
  // than options.max_document_bytes (not read; line 0), a JSONL file without lines (line 0).
  DocumentPipeline(std::vector<InputFile> files, InputFormat format, const DocumentOptions& options, int threads,
                   size_t chunk_bytes);
  // Stops and joins the workers; chunks still in flight are dropped.
  ~DocumentPipeline();
  DocumentPipeline(const DocumentPipeline&) = delete;
  DocumentPipeline& operator=(const DocumentPipeline&) = delete;

  // The next chunk in input order, encoded; nullptr after the last. Reads ahead up to 2 * threads + 2
  // chunks. A file that cannot be opened or read is an error.
  absl::StatusOr<std::unique_ptr<DocumentChunk>> Next();

  const std::vector<InputFile>& files() const { return files_; }

 private:
  class Source;
  class Workers;
  std::vector<InputFile> files_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<Workers> workers_;
  int64_t max_in_flight_;
  bool more_ = true;
};

}  // namespace moe::data
