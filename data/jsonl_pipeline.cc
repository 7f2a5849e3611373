// prepare_data's reading and encoding pipeline (see jsonl_pipeline.h).
#include "data/jsonl_pipeline.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/status.h"

namespace moe::data {
namespace {

constexpr char kBomDetail[] = "a UTF-8 byte order mark starts the file";

}  // namespace

// Reads the files in order as chunks (on the thread that calls Next).
class DocumentPipeline::Source {
 public:
  Source(const std::vector<InputFile>& files, InputFormat format, int64_t max_document_bytes, size_t chunk_bytes)
      : files_(files), format_(format), max_document_bytes_(max_document_bytes), chunk_bytes_(chunk_bytes) {}

  // The next chunk; nullptr after the last.
  absl::StatusOr<std::unique_ptr<DocumentChunk>> Next() {
    while (file_ < files_.size()) {
      const InputFile& file = files_[file_];
      auto chunk = std::make_unique<DocumentChunk>();
      chunk->file = file_;
      if (format_ != InputFormat::kJsonl) {
        ++file_;
        chunk->whole_file = true;
        chunk->input_bytes = static_cast<int64_t>(file.size);
        if (max_document_bytes_ > 0 && file.size > static_cast<uint64_t>(max_document_bytes_)) {
          chunk->skip = true;
          chunk->out.issues.Add(InputIssue::kHugeDocument, 0,
                                absl::StrCat("the file has ", file.size, " bytes, more than --max_document_bytes=",
                                             max_document_bytes_));
          return chunk;
        }
        ASSIGN_OR_RETURN(chunk->data, ReadFileToString(file.path));
        chunk->input_bytes = static_cast<int64_t>(chunk->data.size());
        if (absl::StartsWith(chunk->data, kUtf8ByteOrderMark)) {
          chunk->data.erase(0, kUtf8ByteOrderMark.size());
          chunk->out.issues.Add(InputIssue::kByteOrderMark, 1, kBomDetail);
        }
        return chunk;
      }
      if (reader_ == nullptr) {
        ASSIGN_OR_RETURN(reader_, JsonlChunkReader::Open(file.path, chunk_bytes_));
        first_of_file_ = true;
      }
      ASSIGN_OR_RETURN(const bool more, reader_->Next(&chunk->data, &chunk->first_line));
      const bool bom = first_of_file_ && reader_->bom_stripped();
      if (bom) chunk->out.issues.Add(InputIssue::kByteOrderMark, 1, kBomDetail);
      chunk->input_bytes = static_cast<int64_t>(chunk->data.size() + (bom ? kUtf8ByteOrderMark.size() : 0));
      if (!more) {
        const bool empty = first_of_file_;
        reader_.reset();
        ++file_;
        if (!empty) continue;
        chunk->skip = true;
        chunk->out.issues.Add(InputIssue::kEmptyDocument, 0, "the file has no lines");
        return chunk;
      }
      first_of_file_ = false;
      return chunk;
    }
    return std::unique_ptr<DocumentChunk>();
  }

 private:
  const std::vector<InputFile>& files_;
  InputFormat format_;
  int64_t max_document_bytes_;
  size_t chunk_bytes_;
  size_t file_ = 0;
  std::unique_ptr<JsonlChunkReader> reader_;
  bool first_of_file_ = false;
};

// Encodes chunks on worker threads, one DocumentEncoder each, and returns them in submission order.
class DocumentPipeline::Workers {
 public:
  Workers(int threads, const DocumentOptions& options) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this, options] { Work(options); });
  }
  ~Workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void Submit(std::unique_ptr<DocumentChunk> chunk) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      todo_.emplace_back(next_submit_++, std::move(chunk));
    }
    work_cv_.notify_one();
  }
  int64_t in_flight() const { return next_submit_ - next_out_; }  // the submitting thread's view

  // The oldest submitted chunk not yet returned, once encoded. Requires in_flight() > 0.
  std::unique_ptr<DocumentChunk> NextInOrder() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return done_.count(next_out_) > 0; });
    auto it = done_.find(next_out_++);
    std::unique_ptr<DocumentChunk> chunk = std::move(it->second);
    done_.erase(it);
    return chunk;
  }

 private:
  void Work(const DocumentOptions& options) {
    DocumentEncoder encoder(options);
    for (;;) {
      std::pair<int64_t, std::unique_ptr<DocumentChunk>> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [this] { return stop_ || !todo_.empty(); });
        if (stop_) return;
        job = std::move(todo_.front());
        todo_.pop_front();
      }
      DocumentChunk& chunk = *job.second;
      if (!chunk.skip && chunk.whole_file) {
        encoder.EncodeFile(std::move(chunk.data), &chunk.out);
      } else if (!chunk.skip) {
        encoder.EncodeJsonl(chunk.data, chunk.first_line, &chunk.out);
      }
      chunk.data = std::string();
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_.emplace(job.first, std::move(job.second));
      }
      done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::pair<int64_t, std::unique_ptr<DocumentChunk>>> todo_;
  std::map<int64_t, std::unique_ptr<DocumentChunk>> done_;
  int64_t next_submit_ = 0, next_out_ = 0;  // changed by the submitting thread only
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

DocumentPipeline::DocumentPipeline(std::vector<InputFile> files, InputFormat format, const DocumentOptions& options,
                                   int threads, size_t chunk_bytes)
    : files_(std::move(files)), max_in_flight_(2 * std::max(threads, 1) + 2) {
  DocumentOptions worker_options = options;
  worker_options.brown = format == InputFormat::kBrown;
  source_ = std::make_unique<Source>(files_, format, options.max_document_bytes, chunk_bytes);
  workers_ = std::make_unique<Workers>(std::max(threads, 1), worker_options);
}

DocumentPipeline::~DocumentPipeline() = default;

absl::StatusOr<std::unique_ptr<DocumentChunk>> DocumentPipeline::Next() {
  while (more_ && workers_->in_flight() < max_in_flight_) {
    ASSIGN_OR_RETURN(std::unique_ptr<DocumentChunk> chunk, source_->Next());
    more_ = chunk != nullptr;
    if (more_) workers_->Submit(std::move(chunk));
  }
  if (workers_->in_flight() == 0) return std::unique_ptr<DocumentChunk>();
  return workers_->NextInOrder();
}

}  // namespace moe::data
