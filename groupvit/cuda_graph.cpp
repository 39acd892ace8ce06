#include "groupvit/cuda_graph.h"

#include <torch/torch.h>

#include <map>
#include <set>
#include <tuple>

#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace groupvit {

namespace {
using Key = std::tuple<std::vector<int64_t>, int, int>;  // sizes, dtype, device index

Key key_of(const torch::Tensor& t) {
  return {t.sizes().vec(), static_cast<int>(t.scalar_type()), static_cast<int>(t.device().index())};
}
}  // namespace

struct CudaGraphCache::Impl {
  Fn fn;
  std::size_t max_graphs;
  std::map<Key, int> eager_calls;  // per shape not captured (yet)
  std::set<Key> failed;            // shapes whose capture failed: eager from then on
  std::size_t replays = 0;
  std::string fallback_reason;
#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
  struct Graph {
    at::cuda::CUDAGraph graph;
    torch::Tensor input;
    std::vector<torch::Tensor> outputs;
  };
  std::map<Key, std::unique_ptr<Graph>> graphs;

  std::unique_ptr<Graph> capture(const torch::Tensor& input) {
    auto g = std::make_unique<Graph>();
    g->input = input.clone();
    const c10::cuda::CUDAGuard device_guard(input.device());
    auto caller = c10::cuda::getCurrentCUDAStream();
    auto side = c10::cuda::getStreamFromPool(false, input.device().index());
    at::cuda::CUDAEvent input_ready;
    input_ready.record(caller);
    input_ready.block(side);
    {
      const c10::cuda::CUDAStreamGuard stream_guard(side);
      // Warm-ups on the capture stream: library handles, workspaces and kernel choices are made
      // here, not inside the capture.
      for (int i = 0; i < 3; ++i) fn(g->input);
      // Thread-local capture mode: decode threads of a batch job may touch CUDA meanwhile.
      g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      try {
        g->outputs = fn(g->input);
      } catch (...) {
        try {
          g->graph.capture_end();  // leave capture mode before reporting
        } catch (...) {
        }
        throw;
      }
      g->graph.capture_end();
    }
    at::cuda::CUDAEvent captured;
    captured.record(side);
    captured.block(caller);
    return g;
  }
#endif
};

CudaGraphCache::CudaGraphCache(Fn fn, std::size_t max_graphs) : impl_(std::make_unique<Impl>()) {
  impl_->fn = std::move(fn);
  impl_->max_graphs = max_graphs;
}

CudaGraphCache::~CudaGraphCache() = default;

std::vector<torch::Tensor> CudaGraphCache::operator()(const torch::Tensor& input) {
  const torch::NoGradGuard no_grad;
#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
  if (input.is_cuda()) {
    const auto key = key_of(input);
    auto it = impl_->graphs.find(key);
    if (it == impl_->graphs.end() && impl_->eager_calls[key] >= 1 && !impl_->failed.count(key) &&
        impl_->graphs.size() < impl_->max_graphs) {
      try {
        it = impl_->graphs.emplace(key, impl_->capture(input)).first;
      } catch (const std::exception& e) {
        impl_->fallback_reason = e.what();
        impl_->failed.insert(key);
      }
    }
    if (it != impl_->graphs.end()) {
      auto& g = *it->second;
      g.input.copy_(input);
      g.graph.replay();
      ++impl_->replays;
      std::vector<torch::Tensor> out;
      out.reserve(g.outputs.size());
      for (const auto& t : g.outputs) out.push_back(t.clone());  // the next replay overwrites them
      return out;
    }
    ++impl_->eager_calls[key];
  }
#endif
  return impl_->fn(input);
}

std::size_t CudaGraphCache::graphs() const {
#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
  return impl_->graphs.size();
#else
  return 0;
#endif
}

std::size_t CudaGraphCache::replays() const { return impl_->replays; }

const std::string& CudaGraphCache::fallback_reason() const { return impl_->fallback_reason; }

bool CudaGraphCache::built_with_cuda() {
#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
  return true;
#else
  return false;
#endif
}

}  // namespace groupvit
