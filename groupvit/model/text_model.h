// The text tower: token + position embeddings, a causal pre-LN transformer, a final
// LayerNorm, and pooling at the end-of-text token (GroupViTTextTransformer).
#pragma once

#include <torch/nn/modules/embedding.h>

#include <vector>

#include "groupvit/formats/config.h"
#include "groupvit/model/layers.h"

namespace groupvit {

struct TextModelOutput {
  torch::Tensor last_hidden_state;           // [B, L, C] after the final LayerNorm
  torch::Tensor pooler_output;               // [B, C], the end-of-text token's state
  std::vector<torch::Tensor> hidden_states;  // embeddings and each layer's output, when requested
};

class GroupViTTextEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit GroupViTTextEmbeddingsImpl(const GroupViTTextConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids);

  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(GroupViTTextEmbeddings);

class GroupViTTextEncoderImpl : public torch::nn::Module {
 public:
  explicit GroupViTTextEncoderImpl(const GroupViTTextConfig& config);
  // inputs_embeds [B, L, C]; attention_mask the additive causal + padding mask [B or 1, 1, L, L].
  GroupViTEncoderOutput forward(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask,
                                bool output_hidden_states = false);
  torch::nn::ModuleList layers;
};
TORCH_MODULE(GroupViTTextEncoder);

class GroupViTTextTransformerImpl : public torch::nn::Module {
 public:
  explicit GroupViTTextTransformerImpl(const GroupViTTextConfig& config);

  // input_ids [B, L] int64; attention_mask [B, L] of 0/1 (undefined: attend everywhere).
  TextModelOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                          bool output_hidden_states = false);

  GroupViTTextEmbeddings embeddings{nullptr};
  GroupViTTextEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};

 private:
  GroupViTTextConfig config_;
};
TORCH_MODULE(GroupViTTextTransformer);

}  // namespace groupvit
