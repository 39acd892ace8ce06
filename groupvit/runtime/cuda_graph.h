// CUDA graphs for fixed input shapes: a batch job calls the same forward with the same shape
// thousands of times, and at batch sizes that fit a GPU the launch overhead of the image tower's
// few hundred small kernels is a visible share of the time. A graph replays all of them as one.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace groupvit {

// Runs `fn` through CUDA graphs, one per input shape, dtype and device. The first call with a
// shape runs `fn` eagerly; the second captures it (after warm-ups on a side stream) and every
// later call copies its input into the graph's input buffer and replays the graph, so one-off
// shapes (the last, smaller batch of a job) never pay for a capture. Results are fresh tensors
// (copies of the graph's outputs). CPU inputs, and builds without CUDA, always run `fn` eagerly.
//
// `fn` must be capturable: a function of its input alone (anything else it reads, e.g. label
// embeddings, must stay alive and unchanged while this object lives), with no host
// synchronisation (.item(), copies to the CPU) and no shape that depends on values. The image
// tower in eval mode qualifies. If a capture fails, that shape runs eagerly from then on and
// fallback_reason() says why. Runs under NoGradGuard. Not thread-safe: one caller at a time, and
// every call on the same CUDA stream (replays reuse one input buffer in stream order).
class CudaGraphCache {
 public:
  using Fn = std::function<std::vector<torch::Tensor>(const torch::Tensor&)>;

  explicit CudaGraphCache(Fn fn, std::size_t max_graphs = 4);
  ~CudaGraphCache();
  CudaGraphCache(const CudaGraphCache&) = delete;
  CudaGraphCache& operator=(const CudaGraphCache&) = delete;

  std::vector<torch::Tensor> operator()(const torch::Tensor& input);

  std::size_t graphs() const;                  // shapes captured so far
  std::size_t replays() const;                 // calls served by a graph
  const std::string& fallback_reason() const;  // empty unless a capture failed
  static bool built_with_cuda();               // false: this build runs everything eagerly

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace groupvit
