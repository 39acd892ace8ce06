// The batch engine (see batch_run.h). Inputs stream from an enumerator thread through bounded
// queues to decode/preprocess workers, in batches to the model's thread, and (by default on CUDA)
// on to writer threads that encode and write while the model runs the next batch. The queues are
// bounded, so a list of millions of images never sits in memory.
#include "batch/batch_run.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <thread>
#include <unordered_set>

#include "batch/model_turn.h"
#include "batch/work_queue.h"
#include "cli_common.h"
#include "groupvit/image/image_io.h"
#include "groupvit/runtime/cpu_share.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

void join_all(std::vector<std::thread>& threads) {
  for (auto& t : threads)
    if (t.joinable()) t.join();
}

// `dir`, created with its parents; a failure names --output.
const std::string& created(const std::string& dir) {
  try {
    make_directories(dir);
  } catch (const OutputError& e) {
    throw OutputError("--output " + dir + ": " + e.what(), e.error());
  }
  return dir;
}

// --resume: the keys that results.jsonl records as done (a partial last line is dropped).
std::unordered_set<std::string> finished_keys(const std::string& results_path) {
  std::unordered_set<std::string> done;
  for (const auto& line : read_complete_lines_and_trim(results_path)) {
    try {
      done.insert(json::parse(line).at("key").get<std::string>());
    } catch (const std::exception&) {  // a foreign or damaged line: its input is redone
    }
  }
  return done;
}

// An input handed from the model's thread to a writer.
struct ToWrite {
  Prepared p;
  std::unique_ptr<ImageResult> result;
};

// The threads around the model's: enumerator -> `pending` -> workers -> `ready` -> model's thread
// -> `to_write` -> writers.
class Pipeline {
 public:
  // take_turns: the workers decode only while the model is not running (model_turn.h).
  Pipeline(size_t batch_size, size_t workers, bool ordered, bool take_turns)
      : turn_(take_turns),
        workers_(workers),
        ordered_(ordered),
        pending_(batch_size * 2 + workers),
        ready_(batch_size * 2 + workers),
        to_write_(batch_size),  // one batch: nvlabs logits at the original size can be large
        workers_left_(workers) {}
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  ~Pipeline() { stop(); }  // also on the way out of an error: a joinable std::thread must not be destroyed

  // The enumerator: the inputs that `wanted` accepts, in order. Its error (an input that does not
  // exist) is kept for enumerate_error(): the inputs before it are still processed.
  void start_enumerator(std::function<void(const std::function<bool(const InputItem&)>&)> source,
                        std::function<bool(const InputItem&)> wanted);
  void start_workers(const groupvit::ImagePreprocessConfig& prep, bool keep_originals);
  void start_writers(size_t count, BatchJob& job, RunLog& log);

  // The next decoded and preprocessed input (in listing order when ordered); none once all are
  // done or the pipeline stopped.
  std::optional<Prepared> next();
  bool has_writers() const { return !writers_.empty(); }
  ModelTurn& turn() { return turn_; }
  // To the writers; false when they stopped (rethrow_fatal says why).
  bool hand_over(ToWrite w) { return to_write_.push(std::move(w)); }
  // The writers finish what is queued.
  void finish_writing() {
    to_write_.close();
    join_all(writers_);
  }
  // The first error that stopped a writer (e.g. a full disk, which every later write would hit).
  void rethrow_fatal() {
    const std::lock_guard<std::mutex> lock(fatal_mu_);
    if (fatal_) std::rethrow_exception(fatal_);
  }
  // Stops and joins every thread; may be called again.
  void stop() {
    turn_.stop();
    pending_.abort();
    ready_.abort();
    to_write_.abort();
    if (enumerator_.joinable()) enumerator_.join();
    join_all(pool_);
    join_all(writers_);
  }
  const std::string& enumerate_error() const { return enumerate_error_; }

 private:
  void fail(std::exception_ptr e) {
    {
      const std::lock_guard<std::mutex> lock(fatal_mu_);
      if (!fatal_) fatal_ = e;
    }
    to_write_.abort();
    ready_.abort();
  }

  ModelTurn turn_;
  size_t workers_;
  bool ordered_;
  uint64_t next_seq_ = 0;
  std::map<uint64_t, Prepared> early_;  // ordered: inputs decoded before an earlier one (a few per worker)
  WorkQueue<InputItem> pending_;
  WorkQueue<Prepared> ready_;
  WorkQueue<ToWrite> to_write_;
  std::thread enumerator_;
  std::vector<std::thread> pool_, writers_;
  std::string enumerate_error_;
  std::atomic<size_t> workers_left_;
  std::mutex fatal_mu_;
  std::exception_ptr fatal_;
};

void Pipeline::start_enumerator(std::function<void(const std::function<bool(const InputItem&)>&)> source,
                                std::function<bool(const InputItem&)> wanted) {
  enumerator_ = std::thread([this, source = std::move(source), wanted = std::move(wanted)] {
    try {
      uint64_t seq = 0;
      source([&](const InputItem& item) {
        if (!wanted(item)) return true;
        InputItem numbered = item;
        numbered.seq = seq++;
        return pending_.push(std::move(numbered));
      });
    } catch (const std::exception& e) {
      enumerate_error_ = e.what();
    }
    pending_.close();
  });
}

std::optional<Prepared> Pipeline::next() {
  if (!ordered_) return ready_.pop();
  // The workers take inputs in order, so the one awaited is being decoded by one of them.
  while (!early_.count(next_seq_)) {
    auto p = ready_.pop();
    if (!p) {
      if (early_.empty()) return std::nullopt;
      next_seq_ = early_.begin()->first;  // stopped: hand out what is left
      break;
    }
    early_.emplace(p->item.seq, std::move(*p));
  }
  auto it = early_.find(next_seq_++);
  Prepared p = std::move(it->second);
  early_.erase(it);
  return p;
}

}  // namespace

Prepared prepare(InputItem item, const groupvit::ImagePreprocessConfig& prep) {
  Prepared p;
  const auto t0 = Clock::now();
  p.error = item.error;
  if (p.error.empty()) {
    try {
      p.original = item.data.empty() ? groupvit::decode_image_file(item.path)
                                     : groupvit::decode_image_bytes(reinterpret_cast<const uint8_t*>(item.data.data()),
                                                                    item.data.size());
      p.pixels = groupvit::preprocess(p.original, prep);
    } catch (const std::exception& e) {
      p.error = e.what();
    }
  }
  item.data.clear();  // decoded: the bytes are not needed any more
  item.data.shrink_to_fit();
  p.item = std::move(item);
  p.prep_ms = ms_since(t0);
  return p;
}

namespace {

void Pipeline::start_workers(const groupvit::ImagePreprocessConfig& prep, bool keep_originals) {
  try {
    for (size_t w = 0; w < workers_; ++w)
      pool_.emplace_back([this, prep = &prep, keep_originals] {
        for (;;) {
          turn_.wait_for_workers_turn();
          auto item = pending_.pop();
          if (!item) break;
          auto p = prepare(std::move(*item), *prep);
          if (!keep_originals) p.original = groupvit::RgbImage();
          if (!ready_.push(std::move(p))) break;
        }
        if (--workers_left_ == 0) ready_.close();
      });
  } catch (...) {  // e.g. no more threads: stop the ones started
    stop();
    throw;
  }
}

void Pipeline::start_writers(size_t count, BatchJob& job, RunLog& log) {
  try {
    for (size_t w = 0; w < count; ++w)
      writers_.emplace_back([this, &job, &log] {
        while (auto item = to_write_.pop()) {
          try {
            job.write(item->p, *item->result, log);
          } catch (...) {  // the outputs or errors.jsonl are unusable: stop all; the model thread reports it
            fail(std::current_exception());
            return;
          }
        }
      });
  } catch (...) {
    stop();
    throw;
  }
}

// The model's thread: batches until the inputs are done or a stop signal came. Throws
// OutputError when the outputs became unusable (here or in a writer).
class ModelLoop {
 public:
  ModelLoop(const BatchSettings& s, BatchJob& job, Pipeline& pipeline, RunLog& log)
      : s_(s), job_(job), pipeline_(pipeline), log_(log) {}
  void run();
  double model_seconds() const { return model_seconds_; }

 private:
  // Up to --batch-size inputs; those that failed to decode are recorded. `more` becomes false
  // once the workers are done.
  std::vector<Prepared> next_batch(bool& more);
  // Each input of a batch on to the writers, or written here when there are none. False when the
  // writers stopped.
  bool hand_over(std::vector<Prepared>& batch, ImageResults& results);
  void record_error(const InputItem& item, const std::string& what) {
    if (s_.stop_on_error) throw std::runtime_error(item.path + ": " + what);
    log_.record_error(item, what);
  }

  const BatchSettings& s_;
  BatchJob& job_;
  Pipeline& pipeline_;
  RunLog& log_;
  double model_seconds_ = 0;  // in job.run: the model-only time, for the pipeline's efficiency
};

void ModelLoop::run() {
  bool more = true;
  while (more && !stop_signal()) {
    auto batch = next_batch(more);
    pipeline_.rethrow_fatal();  // a writer stopped the pipeline: no model call for the rest
    if (batch.empty()) continue;
    const auto t0 = Clock::now();
    ImageResults results;
    std::string error;
    try {
      adapt_threads();  // between batches: the neighbours' share of the cores since the last one
      const ModelTurnScope model_turn(pipeline_.turn());
      results = job_.run(batch);
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty() || results.size() != batch.size()) {
      if (error.empty()) error = "no result";
      for (const auto& p : batch) record_error(p.item, "model: " + error);
      continue;
    }
    model_seconds_ += ms_since(t0) / 1000;
    const double model_ms = ms_since(t0) / static_cast<double>(batch.size());
    for (auto& r : results) r->model_ms = model_ms;
    if (!hand_over(batch, results)) more = false;
  }
}

std::vector<Prepared> ModelLoop::next_batch(bool& more) {
  std::vector<Prepared> batch;
  while (static_cast<int>(batch.size()) < s_.batch_size) {
    auto p = pipeline_.next();
    if (!p) {
      more = false;
      break;
    }
    if (!p->error.empty()) {
      record_error(p->item, p->error);
      continue;
    }
    batch.push_back(std::move(*p));
  }
  return batch;
}

bool ModelLoop::hand_over(std::vector<Prepared>& batch, ImageResults& results) {
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!results[i]->error.empty()) {
      record_error(batch[i].item, "writing outputs: " + results[i]->error);
      continue;
    }
    batch[i].pixels = torch::Tensor();  // the writers need the decoded image, not the model input
    if (!pipeline_.has_writers()) {
      job_.write(batch[i], *results[i], log_);  // an unusable output throws from here to run_batch
    } else if (!pipeline_.hand_over({std::move(batch[i]), std::move(results[i])})) {
      pipeline_.rethrow_fatal();  // aborted: a writer found the output unusable
      return false;
    }
  }
  return true;
}

struct InputCounts {
  int64_t total = 0;    // to process: the progress bar's total
  int64_t skipped = 0;  // of this shard, but already done
};

// What the run needs before its threads start: the checked inputs and the output files.
struct Prepass {
  std::function<void(const std::function<bool(const InputItem&)>&)> source;
  std::function<bool(const InputItem&)> wanted;
  InputCounts counts;
};

Prepass check_inputs(const BatchSettings& s, const OutputDir* out, const std::unordered_set<std::string>& done,
                     std::shared_ptr<InputSource> inputs) {
  Prepass pass;
  SourceOptions options;
  options.extensions = s.extensions;
  if (out) options.exclude_dir = out->dir;
  const auto shard = s.shard;
  const auto present = s.outputs_present;
  const auto is_done = [&done, present](const InputItem& item) {
    return done.count(item.key) && (!present || present(item.key));
  };
  // The counting for the progress bar, in the same pass as the key check (shards: headers only).
  const auto count = [&](const InputItem& item) {
    if (shard.contains(item.key)) (is_done(item) ? pass.counts.skipped : pass.counts.total) += 1;
  };
  std::shared_ptr<KeyCheck> keys;
  if (s.source) {
    s.source([&](const InputItem& item) { return count(item), true; });
    pass.source = s.source;
  } else {
    SourceOptions checking = options;
    checking.warn = [](const std::string& text) { std::cerr << "groupvit: warning: " << text << "\n"; };
    keys = std::make_shared<KeyCheck>(*inputs, checking, count);  // refuses key collisions before any work
    pass.source = [inputs, options](const std::function<bool(const InputItem&)>& visit) {
      inputs->for_each(options, visit);
    };
  }
  pass.wanted = [shard, keys, is_done](const InputItem& item) {
    return shard.contains(item.key) && (!keys || keys->first_occurrence(item)) && !is_done(item);
  };
  return pass;
}

// Taking turns, the workers have every core while the model waits: as many as the cores (at most 4
// unless asked); otherwise the cores the model leaves, at most 4.
size_t worker_count(const BatchSettings& s, bool take_turns) {
  if (s.workers > 0) return static_cast<size_t>(s.workers);
  const int cpus = groupvit::usable_cpus();
  return static_cast<size_t>(std::max(1, std::min(4, take_turns ? cpus : cpus - 1)));
}

// Whether the workers would share the cores with the model's intra-op threads (then they take
// turns, model_turn.h): on the CPU, when the model's threads and the workers outnumber the cores.
bool workers_take_turns(const BatchSettings& s, const BatchJob& job) {
  if (job.on_cuda()) return false;  // the model's thread mostly waits for the GPU
  return torch::get_num_threads() + static_cast<int>(worker_count(s, false)) > groupvit::usable_cpus();
}

// The summary and closing lines of a run that finished or was stopped by a signal.
BatchOutcome outcome(const BatchSettings& s, const OutputDir* out, const RunLog& log, int64_t skipped,
                     double model_seconds, double wall_seconds) {
  BatchOutcome r;
  r.processed = log.processed;
  r.failed = log.failed;
  r.skipped = skipped;
  r.signal = stop_signal();
  r.summary = {{"processed", log.processed},
               {"failed", log.failed},
               {"skipped_done", skipped},
               {"shard", {{"index", s.shard.index}, {"count", s.shard.count}, {"source", s.shard.source}}},
               {"interrupted", r.signal != 0},
               // model_seconds / wall_seconds: how busy the pipeline kept the model
               {"model_seconds", model_seconds},
               {"wall_seconds", wall_seconds}};
  const auto threads = thread_use();
  r.summary["threads"] = {{"adaptive", threads.adaptive}, {"most", threads.most}, {"fewest", threads.fewest}};
  if (out) {
    r.summary["output"] = out->dir;
    r.summary["results"] = out->results_path;
    r.summary["errors"] = out->errors_path;
  }
  if (out && (!s.quiet || r.signal || log.failed)) {
    std::cerr << "groupvit: " << s.verb << " " << log.processed << " image(s) into " << out->dir;
    if (skipped) std::cerr << ", " << skipped << " already done";
    if (log.failed) std::cerr << ", " << log.failed << " failed (see " << out->errors_path << ")";
    std::cerr << "\n";
  } else if (!out && log.failed) {
    std::cerr << "groupvit: " << log.failed << " input(s) failed (listed above)\n";
  }
  if (r.signal) {
    std::cerr << "groupvit: stopped by signal " << r.signal << " after finishing the current batch"
              << (out ? "; rerun with --resume" : "") << "\n";
    r.exit_code = 128 + r.signal;
  } else {
    r.exit_code = log.failed ? kExitSomeImagesFailed : kExitOk;
  }
  return r;
}

}  // namespace

// Host to device (see batch_run.h). On CUDA through page-locked memory (LibTorch's caching host allocator, which
// keeps the buffer until the copy is done), so the copy is asynchronous and the next batch's
// decoding overlaps it; elsewhere a plain conversion.
torch::Tensor to_device(const torch::Tensor& host, torch::Device device, torch::Dtype dtype) {
  if (!device.is_cuda()) return host.to(device, dtype);
  return host.pin_memory().to(device, dtype, /*non_blocking=*/true);
}

torch::Tensor batch_pixels(const std::vector<Prepared>& batch, torch::Device device, torch::Dtype dtype) {
  std::vector<torch::Tensor> images;
  for (const auto& p : batch) images.push_back(p.pixels);
  if (!device.is_cuda()) return torch::stack(images).to(device, dtype);
  auto sizes = images.front().sizes().vec();
  sizes.insert(sizes.begin(), static_cast<int64_t>(images.size()));
  auto pinned = torch::empty(sizes, images.front().options().pinned_memory(true));
  torch::stack_out(pinned, images);
  return pinned.to(device, dtype, /*non_blocking=*/true);
}

void RunLog::record_error(const InputItem& item, const std::string& what) {
  const std::lock_guard<std::mutex> lock(mu_);
  if (errors_)
    errors_->append(json{{"input", item.path}, {"key", item.key}, {"error", what}}.dump());
  else
    std::cerr << "groupvit: error: " << item.path << ": " << what << "\n";
  ++failed;
  progress_.update(processed, failed);
}

void RunLog::record_done(const json& line) {
  const std::lock_guard<std::mutex> lock(mu_);
  if (results_) results_->append(line.dump());
  ++processed;
  progress_.update(processed, failed);
}

OutputDir::OutputDir(const BatchSettings& s)
    : dir(s.output), part(s.shard.part()), lock((check_partition(s.output, s.shard), created(s.output)), s.tool, part) {
  results_path = file("results", "jsonl");
  errors_path = file("errors", "jsonl");
}

std::string OutputDir::file(const std::string& name, const std::string& ext) const {
  return dir + "/" + name + (part.empty() ? "" : "." + part) + "." + ext;
}

BatchOutcome run_batch(const BatchSettings& s, const std::function<BatchJob&(const OutputDir* out)>& make_job) {
  if (s.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (s.writers < -1 || s.writers > 256) throw UsageError("--writers must be between 0 and 256");
  if (s.workers > 256) throw UsageError("--workers must be at most 256");
  auto inputs = std::make_shared<InputSource>(s.inputs);
  std::unique_ptr<OutputDir> out;
  if (!s.output.empty()) out = std::make_unique<OutputDir>(s);
  const auto done = out && s.resume ? finished_keys(out->results_path) : std::unordered_set<std::string>{};
  const auto pass = check_inputs(s, out.get(), done, inputs);
  std::unique_ptr<LineAppender> results, errors;
  if (out) {
    results = std::make_unique<LineAppender>(out->results_path, /*truncate=*/!s.resume);
    errors = std::make_unique<LineAppender>(out->errors_path, /*truncate=*/true);
  }
  BatchJob* job = &make_job(out.get());

  install_stop_handlers();
  const bool take_turns = workers_take_turns(s, *job);
  const size_t workers = worker_count(s, take_turns);
  // On the CPU the model's intra-op threads already use every core (and spin between operators),
  // so writer threads only compete with them; on a GPU the cores are otherwise idle.
  const size_t writers = static_cast<size_t>(s.writers >= 0   ? s.writers
                                             : job->on_cuda() ? static_cast<int>(workers)
                                                              : 0);
  Progress progress(pass.counts.total, s.progress_interval, !s.quiet);
  RunLog log(results.get(), errors.get(), progress);
  // Last of the locals: its threads use everything above, and it joins them when destroyed.
  Pipeline pipeline(static_cast<size_t>(s.batch_size), workers, s.ordered, take_turns);
  pipeline.start_enumerator(pass.source, pass.wanted);
  pipeline.start_workers(job->preprocessing(), job->needs_originals());
  pipeline.start_writers(writers, *job, log);
  const auto started = Clock::now();
  ModelLoop loop(s, *job, pipeline, log);
  try {
    loop.run();
    pipeline.finish_writing();
    pipeline.rethrow_fatal();
    job->finish(log);
  } catch (const OutputError& e) {  // the output location is unusable, or errors.jsonl cannot be written
    pipeline.stop();
    if (!out) throw;  // one output file (embed FILE.npy): nothing to resume, exit 1
    progress.finish(log.processed, log.failed);
    std::cerr << "groupvit: error: " << e.what() << "\n"
              << "groupvit: stopped after " << log.processed << " image(s), each complete and recorded in "
              << out->results_path << "; fix the output location (e.g. free space) and rerun with --resume\n";
    BatchOutcome r;
    r.exit_code = kExitOutputUnusable;
    return r;
  } catch (...) {
    pipeline.stop();
    throw;
  }
  pipeline.stop();
  progress.finish(log.processed, log.failed);
  if (!pipeline.enumerate_error().empty()) throw UsageError(pipeline.enumerate_error());
  auto result = outcome(s, out.get(), log, pass.counts.skipped, loop.model_seconds(), ms_since(started) / 1000);
  job->add_to_summary(result.summary);
  return result;
}

}  // namespace groupvit_cli
