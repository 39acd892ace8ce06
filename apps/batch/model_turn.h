// Whose turn the CPU cores are: the model's forward or the decode/preprocess workers'.
//
// Why: on the CPU the model's intra-op threads already use every core, and LibTorch's OpenMP
// threads wait for each other at the end of every operator. A worker decoding a JPEG beside them
// takes a core from one of them, and the others spin until it gets the core back: on the 2-core
// Zen 4 EPYC the first bf16 batch of 32 took 1.4-1.6 s with one worker decoding beside it against
// 1.05-1.15 s alone (docs/design-notes.md, "Decoding beside the model"). So where the model's
// threads and the workers would share the cores, the workers decode while the model waits for its
// next batch (with every core between them) and pause while it runs; the model then never waits
// for a core.
#pragma once

#include <condition_variable>
#include <mutex>

namespace groupvit_cli {

class ModelTurn {
 public:
  explicit ModelTurn(bool enabled) : enabled_(enabled) {}

  bool enabled() const { return enabled_; }

  // The model's thread, around each forward.
  void model_starts() { set_running(true); }
  void model_ends() { set_running(false); }

  // A worker, before it takes the next input: blocks while the model runs (never when disabled).
  void wait_for_workers_turn() {
    if (!enabled_) return;
    std::unique_lock<std::mutex> lock(mutex_);
    turn_.wait(lock, [&] { return !running_ || stopped_; });
  }

  // Stop: no worker waits any more.
  void stop() {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
    turn_.notify_all();
  }

 private:
  void set_running(bool running) {
    if (!enabled_) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    running_ = running;
    if (!running_) turn_.notify_all();
  }

  const bool enabled_;
  bool running_ = false;
  bool stopped_ = false;
  std::mutex mutex_;
  std::condition_variable turn_;
};

// The model's turn for one forward (ends on the way out of an exception too).
class ModelTurnScope {
 public:
  explicit ModelTurnScope(ModelTurn& turn) : turn_(turn) { turn_.model_starts(); }
  ~ModelTurnScope() { turn_.model_ends(); }
  ModelTurnScope(const ModelTurnScope&) = delete;
  ModelTurnScope& operator=(const ModelTurnScope&) = delete;

 private:
  ModelTurn& turn_;
};

}  // namespace groupvit_cli
