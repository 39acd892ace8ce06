#include "groupvit/runtime/cuda_graph.h"

#include <torch/torch.h>

#include <map>
#include <set>
#include <tuple>

#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace groupvit {

namespace {
using Key = std::tuple<std::vector<int64_t>, int, int>;  // sizes, dtype, device index

Key key_of(const torch::Tensor& t) {
  return {t.sizes().vec(), static_cast<int>(t.scalar_type()), static_cast<int>(t.device().index())};
}

#if defined(GROUPVIT_WITH_CUDA_GRAPHS)
// at::cuda::CUDAGraph does not undo its capture set-up when a capture fails half-way: in torch 2.x
// capture_end() throws at cudaStreamEndCapture before it ends the allocators' pooled allocation
// and takes the RNG out of capture mode, and reset() releases the private pool only of a capture
// that ended. The process would then keep allocating as if a capture were under way, and every
// later CUDA random number would throw. abort() does that clean-up so that the eager fallback
// (and the caller's own code) runs in a clean process. Each step may legitimately find nothing
// to undo, hence one try per step.
class Capture : public at::cuda::CUDAGraph {
 public:
  void abort() noexcept {
    if (capture_ended_) return;  // capture_end() got through: reset() in the destructor cleans up
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(capture_stream_.stream(), &status) == cudaSuccess &&
        status != cudaStreamCaptureStatusNone) {
      cudaGraph_t partial = nullptr;
      if (cudaStreamEndCapture(capture_stream_.stream(), &partial) == cudaSuccess && partial) cudaGraphDestroy(partial);
    }
    const auto dev = capture_dev_;
    const auto pool = mempool_id_;
    const bool pooled = dev >= 0 && (pool.first != 0 || pool.second != 0);  // capture_begin got that far
    if (pooled) {
      try {
        c10::cuda::CUDACachingAllocator::endAllocateToPool(dev, pool);
      } catch (...) {
      }
      try {
        c10::cuda::CUDACachingAllocator::releasePool(dev, pool);
      } catch (...) {
      }
      try {
        at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(pool);
      } catch (...) {
      }
      try {
        at::getHostAllocator(at::kCUDA)->release_pool(pool);
      } catch (...) {
      }
    }
    for (auto& entry : captured_generator_states_) entry.first->capturing_ = false;
    (void)cudaGetLastError();  // the failed capture's error is reported through the exception
  }
};
#endif
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
    Capture graph;  // destroyed last: its pool holds the memory of `input` and `outputs`
    torch::Tensor input;
    std::vector<torch::Tensor> outputs;
  };
  std::map<Key, std::unique_ptr<Graph>> graphs;
  std::map<int, c10::cuda::CUDAStream> side_streams;  // per device: warm-ups and captures

  std::unique_ptr<Graph> capture(const torch::Tensor& input) {
    auto g = std::make_unique<Graph>();
    g->input = input.clone();
    const c10::cuda::CUDAGuard device_guard(input.device());
    auto caller = c10::cuda::getCurrentCUDAStream();
    const int dev = input.device().index();
    auto side = side_streams.try_emplace(dev, c10::cuda::getStreamFromPool(false, dev)).first->second;
    at::cuda::CUDAEvent input_ready;
    input_ready.record(caller);
    input_ready.block(side);
    {
      const c10::cuda::CUDAStreamGuard stream_guard(side);
      // Warm-ups on the capture stream: library handles, workspaces and kernel choices are made
      // here, not inside the capture.
      for (int i = 0; i < 3; ++i) fn(g->input);
      // The warm-ups' activations are cached on the side stream, which the caller's stream
      // cannot reuse, and the graph gets a private pool of its own: hand them back first.
      side.synchronize();
      c10::cuda::CUDACachingAllocator::emptyCache();
      // Thread-local capture mode: only CUDA calls of this thread are checked against the
      // capture, so a caller's other threads (decoding, pinned allocations) are unaffected.
      try {
        g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        g->outputs = fn(g->input);
        g->graph.capture_end();
      } catch (...) {
        g->outputs.clear();
        g->graph.abort();
        throw;
      }
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
