// CUDA graphs (groupvit/runtime/cuda_graph.h) on the full-size parity model: replays give what eager
// forwards give, for new input values each call, and one-off shapes stay eager.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "../test_support.h"
#include "groupvit/model/model.h"
#include "groupvit/model/weights.h"
#include "groupvit/runtime/cuda_graph.h"

namespace {

std::string parity_model_dir(const std::string& name) {
  const auto dir = std::filesystem::path(groupvit::test::fixtures_dir()) / "parity" / name;
  nlohmann::json info;
  std::ifstream(dir / "info.json") >> info;
  return (dir / info.at("model_dir").get<std::string>()).lexically_normal().string();
}

double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.to(torch::kCPU, torch::kDouble), w = want.to(torch::kCPU, torch::kDouble);
  return (g - w).abs().max().item<double>() / std::max(w.abs().max().item<double>(), 1e-30);
}

void check_graph_replays_match_eager(torch::Dtype dtype, double tol) {
  groupvit::LoadOptions lo;
  lo.device = torch::Device(torch::kCUDA, 0);
  lo.dtype = dtype;
  auto model = groupvit::load_model(parity_model_dir("full"), lo);
  torch::NoGradGuard no_grad;
  auto text = torch::nn::functional::normalize(torch::randn({5, model->config().projection_dim}, lo.device).to(dtype),
                                               torch::nn::functional::NormalizeFuncOptions().dim(-1));
  // What the batch CLI captures: image features and the segmentation logits of one batch.
  auto forward = [&](const torch::Tensor& pixels) -> std::vector<torch::Tensor> {
    auto vision = model->vision_model(pixels, false, true);
    auto logits = model->segmentation_logits(vision, text, pixels.size(2), pixels.size(3));
    return {vision.pooler_output, logits};
  };
  groupvit::CudaGraphCache graphs(forward);
  REQUIRE(groupvit::CudaGraphCache::built_with_cuda());
  for (int call = 0; call < 4; ++call) {
    torch::manual_seed(call);
    auto pixels = torch::randn({4, 3, 224, 224}, lo.device).to(dtype);
    auto got = graphs(pixels);
    INFO("capture failed: " << graphs.fallback_reason());
    REQUIRE(graphs.fallback_reason().empty());
    auto want = forward(pixels);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const double err = rel_err(got[i], want[i]);
      std::cout << "[cuda] graph call " << call << " " << c10::toString(dtype) << " output " << i << " rel.err " << err
                << "\n";
      INFO("call " << call << " output " << i);
      CHECK(err <= tol);
    }
  }
  CHECK(graphs.graphs() == 1);   // captured on the second call
  CHECK(graphs.replays() == 3);  // calls 2-4
  // A one-off shape runs eagerly and is not captured.
  auto odd = torch::randn({3, 3, 224, 224}, lo.device).to(dtype);
  auto got = graphs(odd);
  CHECK(rel_err(got[0], forward(odd)[0]) <= tol);
  CHECK(graphs.graphs() == 1);
}

}  // namespace

TEST_CASE("CUDA graph replays of the image tower match eager forwards", "[cuda]") {
  check_graph_replays_match_eager(torch::kFloat, 1e-4);
  check_graph_replays_match_eager(torch::kHalf, 1e-2);
}

TEST_CASE("A capture that fails falls back to eager and leaves the process usable", "[cuda]") {
  const torch::Device dev(torch::kCUDA, 0);
  torch::NoGradGuard no_grad;
  // .item() waits for the GPU, which a stream capture does not allow: the capture fails.
  auto syncing = [](const torch::Tensor& x) -> std::vector<torch::Tensor> {
    return {x * x.abs().sum().item<double>()};
  };
  groupvit::CudaGraphCache graphs(syncing);
  for (int call = 0; call < 3; ++call) {
    torch::manual_seed(call);
    auto x = torch::randn({4, 8}, dev);
    CHECK(torch::allclose(graphs(x)[0], syncing(x)[0]));
  }
  std::cout << "[cuda] failed capture reported as: " << graphs.fallback_reason() << "\n";
  CHECK_FALSE(graphs.fallback_reason().empty());
  CHECK(graphs.graphs() == 0);
  CHECK(graphs.replays() == 0);
  // Nothing is left in capture mode: CUDA random numbers work (they throw while the generator
  // thinks a capture is under way) and a capturable function is captured and replayed.
  auto affine = [](const torch::Tensor& x) -> std::vector<torch::Tensor> { return {x * 2 + 1}; };
  groupvit::CudaGraphCache good(affine);
  for (int call = 0; call < 3; ++call) {
    auto x = torch::randn({4, 8}, dev);
    CHECK(torch::allclose(good(x)[0], affine(x)[0]));
  }
  INFO(good.fallback_reason());
  CHECK(good.graphs() == 1);
  CHECK(good.replays() == 1);
}
