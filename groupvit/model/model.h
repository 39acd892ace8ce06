// GroupViTModel: both towers, their projection heads and the learned logit scale, with the
// outputs of the Hugging Face model: features, image-text logits, segmentation logits and
// the contrastive loss.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include "groupvit/formats/config.h"
#include "groupvit/model/text_model.h"
#include "groupvit/model/vision_model.h"

namespace groupvit {

struct GroupViTForwardOptions {
  bool return_loss = false;
  bool output_attentions = false;     // the vision tower's soft assignment maps
  bool output_hidden_states = false;  // every hidden state of both towers
  bool output_segmentation = false;   // implies output_attentions
};

struct GroupViTOutput {
  torch::Tensor loss;                 // image-text contrastive loss, when requested
  torch::Tensor logits_per_image;     // [images, texts]
  torch::Tensor logits_per_text;      // [texts, images]
  torch::Tensor segmentation_logits;  // [images, texts, H, W], when requested
  torch::Tensor text_embeds;          // [texts, projection_dim], L2-normalised
  torch::Tensor image_embeds;         // [images, projection_dim], L2-normalised
  TextModelOutput text_model_output;
  VisionModelOutput vision_model_output;
};

class GroupViTModelImpl : public torch::nn::Module {
 public:
  explicit GroupViTModelImpl(const GroupViTConfig& config);

  // Projected, unnormalised features, as the reference's get_text_features / get_image_features.
  // CPU inference runs a large image batch a few images at a time (about 2048 token rows each):
  // as fast per image, with the activations of a few images instead of the whole batch.
  torch::Tensor get_text_features(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {});
  torch::Tensor get_image_features(const torch::Tensor& pixel_values);

  GroupViTOutput forward(const torch::Tensor& input_ids, const torch::Tensor& pixel_values,
                         const torch::Tensor& attention_mask = {}, const GroupViTForwardOptions& options = {});

  // Hugging Face segmentation_logits from a vision output that holds the assignment maps and
  // L2-normalised text embeddings: [images, texts, H, W] at the input resolution.
  torch::Tensor segmentation_logits(const VisionModelOutput& vision, const torch::Tensor& text_embeds, int64_t height,
                                    int64_t width);

  // Dynamic int8 for every Linear layer on the CPU (LinearImpl::quantize_int8) except the grouping
  // blocks' assign q_proj and k_proj, whose outputs are the assignment logits: those stay float32
  // so that the hard assignment's argmax is taken over float32 logits. Inference only; returns the
  // names of the quantized layers.
  std::vector<std::string> quantize_linear_int8();

  const GroupViTConfig& config() const { return config_; }

  GroupViTTextTransformer text_model{nullptr};
  GroupViTVisionTransformer vision_model{nullptr};
  torch::nn::Sequential visual_projection{nullptr};  // Linear, BatchNorm1d, ReLU, Linear
  torch::nn::Sequential text_projection{nullptr};
  torch::Tensor logit_scale;  // 0-dim; logits use exp(logit_scale)

 private:
  GroupViTConfig config_;
};
TORCH_MODULE(GroupViTModel);

// x / max(||x||, 1e-12) over the last axis: torch.nn.functional.normalize, which NVlabs' training
// uses, and for any non-zero x the same bits as Hugging Face's x / x.norm(). The one L2
// normalisation of this project (embeddings, class embeddings, the training losses).
torch::Tensor l2_normalize(const torch::Tensor& x);

// Symmetric cross-entropy over the similarity matrix (matching pairs on the diagonal).
torch::Tensor image_text_contrastive_loss(const torch::Tensor& logits_per_text);

}  // namespace groupvit
