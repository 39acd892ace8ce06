// Dynamic batching (see batcher.h).
#include "serve/batcher.h"

#include <algorithm>

namespace groupvit_cli {

using Clock = std::chrono::steady_clock;

DynamicBatcher::DynamicBatcher(size_t max_batch, std::chrono::milliseconds max_wait, size_t max_queue, RunBatch run)
    : max_batch_(std::max<size_t>(1, max_batch)),
      max_queue_(std::max<size_t>(1, max_queue)),
      max_wait_(max_wait),
      run_(std::move(run)),
      thread_([this] { loop(); }) {}

DynamicBatcher::~DynamicBatcher() { stop(); }

void DynamicBatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DynamicBatcher::run(Item& item) {
  std::future<void> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw Stopping();
    if (queue_.size() >= max_queue_) throw QueueFull();
    item.queued = Clock::now();
    queue_.push_back({&item, {}});
    done = queue_.back().done.get_future();
  }
  changed_.notify_all();
  done.get();
}

std::vector<DynamicBatcher::Waiting> DynamicBatcher::take_batch(std::unique_lock<std::mutex>& lock) {
  const std::string key = queue_.front().item->key;
  const auto deadline = queue_.front().item->queued + max_wait_;
  auto same_key = [&] {
    return static_cast<size_t>(
        std::count_if(queue_.begin(), queue_.end(), [&](const Waiting& w) { return w.item->key == key; }));
  };
  // More of the same key may arrive while the oldest waits out max_wait.
  while (!stopping_ && same_key() < max_batch_ && Clock::now() < deadline) changed_.wait_until(lock, deadline);
  std::vector<Waiting> batch;
  for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
    if (it->item->key == key) {
      batch.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return batch;
}

void DynamicBatcher::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    auto batch = take_batch(lock);
    lock.unlock();
    std::vector<Item*> items;
    for (auto& w : batch) {
      w.item->queue_ms = std::chrono::duration<double, std::milli>(Clock::now() - w.item->queued).count();
      items.push_back(w.item);
    }
    std::exception_ptr error;
    try {
      run_(items);
    } catch (...) {
      error = std::current_exception();
    }
    for (auto& w : batch) error ? w.done.set_exception(error) : w.done.set_value();
    lock.lock();
    ++batches_;
    largest_ = std::max(largest_, batch.size());
  }
}

size_t DynamicBatcher::batches_run() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

size_t DynamicBatcher::largest_batch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return largest_;
}

}  // namespace groupvit_cli
