// Segmentation maths on the assignment maps: chaining the per-stage soft assignments into one
// token-to-final-group map and resizing it to pixels (Hugging Face semantics).
#pragma once

#include <torch/types.h>

#include <vector>

namespace groupvit {

// [B, G, h*w] -> [B, G, height, width]: recovers the patch grid from the aspect ratio of the
// output size (as the reference does), then bilinear resize with align_corners=false.
torch::Tensor resize_attention_map(const torch::Tensor& attentions, int64_t height, int64_t width);

// Chains the stages' soft maps ([B, G1, N], [B, G2, G1], ...) into each stage's token-to-group map:
// entry k is [B, G_k, N], stage k's groups over the image tokens (the matrix products of the
// reference's get_grouping_from_attentions, before its resize).
std::vector<torch::Tensor> chain_attentions(const std::vector<torch::Tensor>& attentions);

// Chains the stages' soft maps ([B, G1, N], [B, G2, G1], ...) into [B, G_last, height, width].
torch::Tensor grouping_from_attentions(const std::vector<torch::Tensor>& attentions, int64_t height, int64_t width);

}  // namespace groupvit
