// groupvit serve's dynamic batching, as model servers do it: requests wait in one bounded queue; the
// model's thread takes the oldest and up to max_batch - 1 more of the same key (same model call:
// same label set and options), waiting at most max_wait after the oldest arrived for more to come,
// and runs them as one call. A full queue refuses at once (the server answers 503).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace groupvit_cli {

// The server cannot take the request now (HTTP 503): the queue is full, or the server is stopping.
struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct QueueFull : Unavailable {
  QueueFull() : Unavailable("the server is busy: too many requests are waiting") {}
};
struct Stopping : Unavailable {
  Stopping() : Unavailable("the server is stopping") {}
};

class DynamicBatcher {
 public:
  // One request's work; the command's type derives from it (its inputs and results).
  struct Item {
    virtual ~Item() = default;
    std::string key;  // items of one key may share a model call
    std::chrono::steady_clock::time_point queued;
    double queue_ms = 0;  // time waited before its batch ran
  };
  // Runs one batch (all of one key); an exception fails every item of the batch with it.
  using RunBatch = std::function<void(std::vector<Item*>& batch)>;

  DynamicBatcher(size_t max_batch, std::chrono::milliseconds max_wait, size_t max_queue, RunBatch run);
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Queues the item and blocks until its batch ran; rethrows the batch's exception; QueueFull, Stopping.
  void run(Item& item);
  // Finishes the queued items, then ends the model's thread.
  void stop();
  size_t batches_run() const;
  size_t largest_batch() const;

 private:
  struct Waiting {
    Item* item;
    std::promise<void> done;
  };
  void loop();
  std::vector<Waiting> take_batch(std::unique_lock<std::mutex>& lock);

  const size_t max_batch_, max_queue_;
  const std::chrono::milliseconds max_wait_;
  RunBatch run_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Waiting> queue_;
  bool stopping_ = false;
  size_t batches_ = 0, largest_ = 0;
  std::thread thread_;
};

}  // namespace groupvit_cli
