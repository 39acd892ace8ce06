// The batch engine of segment, embed, similarity and eval: source -> shard filter -> decode and
// preprocess workers -> model step (batched, on the device) -> writer threads -> results.jsonl /
// errors.jsonl, with --resume, atomic outputs, the progress display and the exit codes of the
// README (0, 1, 3, 4, 130, 143). A command is a BatchJob (its model step and output writer) and
// the BatchSettings of its options.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "batch/shard.h"
#include "batch/source.h"
#include "groupvit/formats/directory_lock.h"
#include "groupvit/preprocess/image_preprocess.h"
#include "groupvit/preprocess/rgb_image.h"
#include "outputs.h"
#include "progress.h"

namespace groupvit_cli {

// One decoded and preprocessed input, on its way to the model.
struct Prepared {
  InputItem item;
  groupvit::RgbImage original;
  torch::Tensor pixels;  // [3, h, w] float32, CPU
  std::string error;
  double prep_ms = 0;
};

// Decodes (a file, or a shard member's bytes) and preprocesses one input; a failure is its `error`.
Prepared prepare(InputItem item, const groupvit::ImagePreprocessConfig& prep);

// Host to device; on CUDA asynchronously from page-locked memory, so that the next batch's decoding
// overlaps the copy. batch_pixels: the batch's pixel_values stacked, [n, 3, h, w].
torch::Tensor to_device(const torch::Tensor& host, torch::Device device, torch::Dtype dtype);
torch::Tensor batch_pixels(const std::vector<Prepared>& batch, torch::Device device, torch::Dtype dtype);

// One input's results of a model call, on the host: what the command's writer needs.
struct ImageResult {
  virtual ~ImageResult() = default;
  std::string error;  // set: the input failed after the model call (copying its results)
  double model_ms = 0, host_ms = 0;
};
using ImageResults = std::vector<std::unique_ptr<ImageResult>>;

// results.jsonl, errors.jsonl (or, without an output directory, stderr), the progress display
// and the counts, under one mutex: the model's thread and the writers share it.
class RunLog {
 public:
  RunLog(LineAppender* results, LineAppender* errors, Progress& progress)
      : results_(results), errors_(errors), progress_(progress) {}
  // An input that failed (decoding, the model, writing).
  void record_error(const InputItem& item, const std::string& what);
  // An input whose outputs are all written; `line` goes to results.jsonl (if there is one).
  void record_done(const nlohmann::json& line);

  int64_t processed = 0, failed = 0;  // read without the lock only once the other threads are joined

 private:
  LineAppender* results_;
  LineAppender* errors_;
  Progress& progress_;
  std::mutex mu_;
};

// A command on the engine.
class BatchJob {
 public:
  virtual ~BatchJob() = default;
  // What the decode workers do to each image.
  virtual const groupvit::ImagePreprocessConfig& preprocessing() const = 0;
  // Whether run/write need each input's decoded original (segment, eval: its size, overlays). When
  // not, the workers drop it after preprocessing: at batch 32 the queue ahead of the model and the
  // batch held about a hundred 640x480 originals, 90 MB of the embed job's peak memory.
  virtual bool needs_originals() const { return true; }
  // The model's thread: one model call for the batch, one result a prepared input, in order. An
  // exception fails every input of the batch with its message.
  virtual ImageResults run(std::vector<Prepared>& batch) = 0;
  // A writer thread (or the model's): writes one input's outputs and records it done or failed.
  // An OutputError saying the output location is unusable stops the run (exit 4).
  virtual void write(Prepared& p, ImageResult& result, RunLog& log) = 0;
  // After the last input, also after a stop signal (embed writes its last chunk).
  virtual void finish(RunLog&) {}
  virtual bool on_cuda() const { return false; }
  // Adds what the job has to say to the --json summary (segment: its CUDA graphs).
  virtual void add_to_summary(nlohmann::json&) const {}
};

struct BatchSettings {
  std::string tool;                // "groupvit segment": the output directory's lock names it
  std::string verb = "processed";  // of the closing line: "groupvit: segmented 12 image(s) into out"
  std::vector<std::string> inputs;
  std::set<std::string> extensions = default_image_extensions();
  std::string output;  // directory of results.jsonl/errors.jsonl; empty: none (errors on stderr)
  Shard shard;
  bool resume = false;
  int batch_size = 4;
  int workers = 0;   // 0: min(4, cores - 1)
  int writers = -1;  // -1: as many as the workers on CUDA, none on the CPU
  double progress_interval = 30;
  bool quiet = false;
  bool stop_on_error = false;  // eval: a failed input ends the run (exit 1)
  bool ordered = false;        // the model sees the inputs in listing order (embed, similarity)
  // --resume: besides its results line, are the input's outputs there? Null: the line suffices.
  std::function<bool(const std::string& key)> outputs_present;
  // Replaces the inputs (eval's image/label pairs): calls visit for each until it returns false.
  std::function<void(const std::function<bool(const InputItem&)>& visit)> source;
};

// The output directory of a run, created and locked (two runs into one directory would interleave
// results.jsonl and overwrite each other's outputs; the shards of one run share it, each with its
// own results file), checked against the shard results already in it.
struct OutputDir {
  OutputDir(const BatchSettings& s);
  std::string dir, part;  // part: "shard-I-of-N" when sharded, else empty
  groupvit::DirectoryLock lock;
  std::string results_path, errors_path;
  // NAME.EXT, or NAME.shard-I-of-N.EXT: a per-run file of this shard.
  std::string file(const std::string& name, const std::string& ext) const;
};

struct BatchOutcome {
  int exit_code = 0;
  int64_t processed = 0, failed = 0, skipped = 0;
  int signal = 0;
  nlohmann::json summary;  // processed, failed, skipped_done, output, results, errors, shard, interrupted
};

// The job is made (and kept by the caller) once the inputs are checked (keys, shard, output
// directory) and counted, so that a usage error costs no model load; `out` is null without an
// output directory. Throws UsageError for bad inputs (exit 1); returns the outcome of a run that
// started, with its exit code.
BatchOutcome run_batch(const BatchSettings& settings, const std::function<BatchJob&(const OutputDir* out)>& make_job);

}  // namespace groupvit_cli
