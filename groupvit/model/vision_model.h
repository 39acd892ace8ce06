// The vision tower: patch embeddings, grouping stages (transformer layers over image and
// group tokens, then a token-assign block that merges image tokens into groups), a final
// LayerNorm and mean pooling (GroupViTVisionTransformer and its parts).
#pragma once

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include <vector>

#include "groupvit/formats/config.h"
#include "groupvit/model/layers.h"

namespace groupvit {

struct VisionModelOutput {
  torch::Tensor last_hidden_state;           // [B, groups, C] after the final LayerNorm
  torch::Tensor pooler_output;               // [B, C], mean over the groups
  std::vector<torch::Tensor> hidden_states;  // each stage's input, then the encoder output
  std::vector<torch::Tensor> attentions;     // per grouping stage: soft assignment [B, groups, tokens]
};

class GroupViTPatchEmbeddingsImpl : public torch::nn::Module {
 public:
  GroupViTPatchEmbeddingsImpl(int64_t num_channels, int64_t embed_dim, int64_t patch_size);
  torch::Tensor forward(const torch::Tensor& pixel_values);  // [B, 3, H, W] -> [B, H/p * W/p, C]
  torch::nn::Conv2d projection{nullptr};
};
TORCH_MODULE(GroupViTPatchEmbeddings);

class GroupViTVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit GroupViTVisionEmbeddingsImpl(const GroupViTVisionConfig& config);
  // Any H, W that are multiples of the patch size: the position embeddings are resized
  // bicubically (align_corners=false) when the patch grid differs from the configured one.
  torch::Tensor forward(const torch::Tensor& pixel_values);
  torch::Tensor interpolate_pos_encoding(int64_t grid_height, int64_t grid_width);

  GroupViTPatchEmbeddings patch_embeddings{nullptr};
  torch::Tensor position_embeddings;
  torch::nn::LayerNorm layernorm{nullptr};

 private:
  GroupViTVisionConfig config_;
};
TORCH_MODULE(GroupViTVisionEmbeddings);

// Projected group tokens attend over image tokens: residual attention, MLP, then norm_post.
class GroupViTCrossAttentionLayerImpl : public torch::nn::Module {
 public:
  explicit GroupViTCrossAttentionLayerImpl(const GroupViTVisionConfig& config);
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& key);

  GroupViTAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  GroupViTMLP mlp{nullptr};
  torch::nn::LayerNorm norm_post{nullptr};
};
TORCH_MODULE(GroupViTCrossAttentionLayer);

// Single-head assignment of image tokens to groups. Eval: hard one-hot over the group axis
// (straight-through); training: hard Gumbel-softmax. Returns the new group tokens and the
// soft assignment softmax(logits over groups).
class GroupViTAssignAttentionImpl : public torch::nn::Module {
 public:
  explicit GroupViTAssignAttentionImpl(const GroupViTVisionConfig& config);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& query, const torch::Tensor& key);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, proj{nullptr};

 private:
  double scale_, assign_eps_;
};
TORCH_MODULE(GroupViTAssignAttention);

// The grouping block (GroupViTTokenAssign): image tokens [B, N, C] and group tokens
// [B, G, C] -> output groups [B, G_out, C] and the soft assignment [B, G_out, N].
class GroupViTTokenAssignImpl : public torch::nn::Module {
 public:
  GroupViTTokenAssignImpl(const GroupViTVisionConfig& config, int64_t num_group_token, int64_t num_output_group);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image_tokens, const torch::Tensor& group_tokens);

  torch::nn::LayerNorm norm_tokens{nullptr};
  GroupViTMixerMLP mlp_inter{nullptr};
  torch::nn::LayerNorm norm_post_tokens{nullptr};
  torch::nn::LayerNorm norm_x{nullptr};
  GroupViTCrossAttentionLayer pre_assign_attn{nullptr};
  GroupViTAssignAttention assign{nullptr};
  torch::nn::LayerNorm norm_new_x{nullptr};
  GroupViTMLP mlp_channels{nullptr};
};
TORCH_MODULE(GroupViTTokenAssign);

struct StageOutput {
  torch::Tensor hidden_states;  // the stage's output tokens (groups when it has a downsample block)
  torch::Tensor group_tokens;   // group tokens after the layers, fed to the next stage's projector
  torch::Tensor attention;      // soft assignment, undefined for a stage without grouping
};

// One grouping stage (GroupViTStage, "GroupingLayer" in the paper's code).
class GroupViTStageImpl : public torch::nn::Module {
 public:
  GroupViTStageImpl(const GroupViTVisionConfig& config, int64_t depth, int64_t num_prev_group_token,
                    int64_t num_group_token, int64_t num_output_group);
  StageOutput forward(const torch::Tensor& hidden_states, const torch::Tensor& prev_group_token);

  torch::Tensor group_token;  // [1, G, C]; undefined when the stage has none
  torch::nn::ModuleList layers;
  GroupViTTokenAssign downsample{nullptr};
  torch::nn::Sequential group_projector{nullptr};  // LayerNorm, then a mixer MLP prev G -> G

 private:
  int64_t num_group_token_;
};
TORCH_MODULE(GroupViTStage);

class GroupViTVisionEncoderImpl : public torch::nn::Module {
 public:
  explicit GroupViTVisionEncoderImpl(const GroupViTVisionConfig& config);
  // The stages in turn, each stage's group tokens feeding the next one's group projector.
  GroupViTEncoderOutput forward(const torch::Tensor& hidden_states, bool output_hidden_states = false,
                                bool output_attentions = false);
  torch::nn::ModuleList stages;
};
TORCH_MODULE(GroupViTVisionEncoder);

class GroupViTVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit GroupViTVisionTransformerImpl(const GroupViTVisionConfig& config);
  VisionModelOutput forward(const torch::Tensor& pixel_values, bool output_hidden_states = false,
                            bool output_attentions = false);

  GroupViTVisionEmbeddings embeddings{nullptr};
  GroupViTVisionEncoder encoder{nullptr};
  torch::nn::LayerNorm layernorm{nullptr};

 private:
  GroupViTVisionConfig config_;
};
TORCH_MODULE(GroupViTVisionTransformer);

// Straight-through hard softmax and hard Gumbel-softmax over `dim`, with the reference's
// arithmetic (y_hard - y_soft.detach() + y_soft) so values and gradients agree with it.
torch::Tensor hard_softmax(const torch::Tensor& logits, int64_t dim);
torch::Tensor gumbel_softmax_hard(const torch::Tensor& logits, int64_t dim);

}  // namespace groupvit
