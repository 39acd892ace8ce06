// Chaining and resizing of assignment maps (see segmentation.h).
#include "groupvit/model/segmentation.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace groupvit {

namespace F = torch::nn::functional;

torch::Tensor resize_attention_map(const torch::Tensor& attentions, int64_t height, int64_t width) {
  const auto tokens = attentions.size(2);
  // The reference's recovery of the grid: scale = sqrt(H*W // tokens) (integer division
  // first), round the shorter side, divide for the longer one.
  const double scale = std::sqrt(static_cast<double>((height * width) / tokens));
  int64_t feat_height, feat_width;
  if (height > width) {
    feat_width = static_cast<int64_t>(std::nearbyint(static_cast<double>(width) / scale));
    feat_height = tokens / feat_width;
  } else {
    feat_height = static_cast<int64_t>(std::nearbyint(static_cast<double>(height) / scale));
    feat_width = tokens / feat_height;
  }
  if (feat_height * feat_width != tokens)
    throw std::invalid_argument("cannot recover a patch grid of " + std::to_string(tokens) + " tokens for " +
                                std::to_string(height) + "x" + std::to_string(width));
  auto maps = attentions.reshape({attentions.size(0), attentions.size(1), feat_height, feat_width});
  return F::interpolate(maps, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{height, width})
                                  .mode(torch::kBilinear)
                                  .align_corners(false));
}

std::vector<torch::Tensor> chain_attentions(const std::vector<torch::Tensor>& attentions) {
  if (attentions.empty()) throw std::invalid_argument("no assignment maps to chain");
  std::vector<torch::Tensor> chained_per_stage;
  torch::Tensor chained;  // [B, N, G]
  for (const auto& attn : attentions) {
    auto t = attn.permute({0, 2, 1});
    chained = chained.defined() ? torch::matmul(chained, t) : t;
    chained_per_stage.push_back(chained.permute({0, 2, 1}));
  }
  return chained_per_stage;
}

torch::Tensor grouping_from_attentions(const std::vector<torch::Tensor>& attentions, int64_t height, int64_t width) {
  torch::NoGradGuard no_grad;
  return resize_attention_map(chain_attentions(attentions).back().contiguous(), height, width);
}

}  // namespace groupvit
