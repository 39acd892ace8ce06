// GroupViTModel (see model.h).
#include "groupvit/model/model.h"

#include <torch/torch.h>

#include "groupvit/model/segmentation.h"

namespace groupvit {
namespace {

torch::nn::Sequential projection_head(int64_t in, int64_t hidden, int64_t out) {
  return torch::nn::Sequential(Linear(in, hidden), torch::nn::BatchNorm1d(hidden), torch::nn::ReLU(),
                               Linear(hidden, out));
}

}  // namespace

std::vector<std::string> GroupViTModelImpl::quantize_linear_int8() {
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  std::vector<std::string> quantized;
  for (const auto& item : named_modules()) {
    auto* layer = dynamic_cast<LinearImpl*>(item.value().get());
    if (layer == nullptr || ends_with(item.key(), "assign.q_proj") || ends_with(item.key(), "assign.k_proj")) continue;
    layer->quantize_int8();
    quantized.push_back(item.key());
  }
  return quantized;
}

torch::Tensor l2_normalize(const torch::Tensor& x) {
  return x / x.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12).expand_as(x);
}

torch::Tensor image_text_contrastive_loss(const torch::Tensor& logits_per_text) {
  auto target = torch::arange(logits_per_text.size(0), logits_per_text.options().dtype(torch::kLong));
  auto caption_loss = torch::nn::functional::cross_entropy(logits_per_text, target);
  auto image_loss = torch::nn::functional::cross_entropy(logits_per_text.t(), target);
  return (caption_loss + image_loss) / 2.0;
}

GroupViTModelImpl::GroupViTModelImpl(const GroupViTConfig& config) : config_(config) {
  config_.validate();
  text_model = register_module("text_model", GroupViTTextTransformer(config_.text_config));
  vision_model = register_module("vision_model", GroupViTVisionTransformer(config_.vision_config));
  visual_projection = register_module(
      "visual_projection",
      projection_head(config_.vision_config.hidden_size, config_.projection_intermediate_dim, config_.projection_dim));
  text_projection = register_module(
      "text_projection",
      projection_head(config_.text_config.hidden_size, config_.projection_intermediate_dim, config_.projection_dim));
  logit_scale = register_parameter("logit_scale", torch::tensor(config_.logit_scale_init_value, torch::kFloat));
}

torch::Tensor GroupViTModelImpl::get_text_features(const torch::Tensor& input_ids,
                                                   const torch::Tensor& attention_mask) {
  return text_projection->forward(text_model(input_ids, attention_mask).pooler_output);
}

namespace {

// Images per forward in CPU inference: enough that the first stage's Linear layers see about 2048
// token rows, where a GEMM's cost per row has stopped falling (on the 2-core Xeon batch 8 took
// 41 ms an image and batch 32 41.5 ms), while the activations of a larger batch would only add to
// the peak memory: a batch-32 embed job peaked at 1.16-1.27 GB against 0.81-0.90 GB at batch 8.
int64_t cpu_images_per_forward(const GroupViTVisionConfig& v, const torch::Tensor& pixel_values) {
  const int64_t tokens = (pixel_values.size(2) / v.patch_size) * (pixel_values.size(3) / v.patch_size) +
                         (v.num_group_tokens.empty() ? 0 : v.num_group_tokens.front());
  return std::max<int64_t>(1, (2048 + tokens - 1) / std::max<int64_t>(1, tokens));
}

}  // namespace

torch::Tensor GroupViTModelImpl::get_image_features(const torch::Tensor& pixel_values) {
  const auto features = [this](const torch::Tensor& px) {
    return visual_projection->forward(vision_model(px).pooler_output);
  };
  // Inference only: in training BatchNorm's batch statistics span the whole batch.
  const bool in_parts =
      pixel_values.dim() == 4 && pixel_values.device().is_cpu() && !is_training() && !torch::GradMode::is_enabled();
  const int64_t batch = in_parts ? pixel_values.size(0) : 0;
  const int64_t chunk = in_parts ? cpu_images_per_forward(config_.vision_config, pixel_values) : 0;
  if (chunk >= batch) return features(pixel_values);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < batch; start += chunk)
    parts.push_back(features(pixel_values.narrow(0, start, std::min(chunk, batch - start))));
  return torch::cat(parts);
}

GroupViTOutput GroupViTModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& pixel_values,
                                          const torch::Tensor& attention_mask, const GroupViTForwardOptions& o) {
  GroupViTOutput out;
  const bool attentions = o.output_attentions || o.output_segmentation;
  out.vision_model_output = vision_model(pixel_values, o.output_hidden_states, attentions);
  out.text_model_output = text_model(input_ids, attention_mask, o.output_hidden_states);

  out.image_embeds = l2_normalize(visual_projection->forward(out.vision_model_output.pooler_output));
  out.text_embeds = l2_normalize(text_projection->forward(out.text_model_output.pooler_output));
  out.logits_per_text = torch::matmul(out.text_embeds, out.image_embeds.t()) * logit_scale.exp();
  out.logits_per_image = out.logits_per_text.t();

  if (o.output_segmentation)
    out.segmentation_logits =
        segmentation_logits(out.vision_model_output, out.text_embeds, pixel_values.size(2), pixel_values.size(3));
  if (o.return_loss) out.loss = image_text_contrastive_loss(out.logits_per_text);
  return out;
}

torch::Tensor GroupViTModelImpl::segmentation_logits(const VisionModelOutput& vision, const torch::Tensor& text_embeds,
                                                     int64_t height, int64_t width) {
  const auto& groups = vision.last_hidden_state;  // [B, G, C]
  const auto batch = groups.size(0);
  auto group_embeds = l2_normalize(visual_projection->forward(groups.reshape({-1, groups.size(-1)})));
  const auto scale = logit_scale.exp();
  // [B*G, T] -> [B, T, G]
  auto logits_per_group = (torch::matmul(group_embeds, text_embeds.t()) * scale)
                              .reshape({batch, -1, text_embeds.size(0)})
                              .permute({0, 2, 1});
  auto grouping = grouping_from_attentions(vision.attentions, height, width);  // [B, G, H, W]
  auto flat = grouping.reshape({grouping.size(0), grouping.size(1), -1});
  // The reference multiplies by the logit scale a second time; kept for equal outputs.
  auto seg = torch::matmul(logits_per_group, flat) * scale;
  return seg.reshape({seg.size(0), seg.size(1), grouping.size(2), grouping.size(3)});
}

}  // namespace groupvit
