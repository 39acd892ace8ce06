// The public facade (see groupvit.h).
#include "groupvit/groupvit.h"

#include <torch/torch.h>

#include <algorithm>
#include <future>

namespace groupvit {

GroupViT::GroupViT(GroupViTModel model, ClipTokenizer tokenizer, ImagePreprocessConfig preprocess,
                   bool default_preprocessing, torch::Device device, torch::Dtype dtype)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      preprocess_(std::move(preprocess)),
      default_preprocessing_(default_preprocessing),
      device_(device),
      dtype_(dtype) {}

GroupViT GroupViT::load(const std::string& model_dir, torch::Device device, torch::Dtype dtype) {
  LoadOptions options;
  options.device = device;
  options.dtype = dtype;
  return load(model_dir, options);
}

GroupViT GroupViT::load(const std::string& model_dir, const LoadOptions& options) {
  // The tokenizer's vocabulary and merges (a seventh of a second) are parsed while the model loads.
  auto tokenizer_loaded =
      std::async(std::launch::async, [&model_dir] { return ClipTokenizer::from_directory(model_dir); });
  GroupViTModel model{nullptr};
  try {
    model = load_model(model_dir, options);
  } catch (...) {
    tokenizer_loaded.wait();
    throw;
  }
  auto tokenizer = tokenizer_loaded.get();
  bool default_preprocessing = false;
  auto preprocess = ImagePreprocessConfig::for_model_dir(model_dir, &default_preprocessing);
  return GroupViT(std::move(model), std::move(tokenizer), std::move(preprocess), default_preprocessing, options.device,
                  options.dtype);
}

TokenizedBatch GroupViT::tokenize(const std::vector<std::string>& texts) const {
  if (texts.empty()) throw std::invalid_argument("no texts to tokenize");
  auto batch = tokenize_to_tensors(tokenizer_, texts, Padding::Longest, context_length(model_->config()));
  return {batch.input_ids.to(device_), batch.attention_mask.to(device_)};
}

torch::Tensor GroupViT::preprocess(const std::vector<RgbImage>& images) const {
  if (images.empty()) throw std::invalid_argument("no images to preprocess");
  return preprocess_batch(images, preprocess_).to(device_, dtype_);
}

torch::Tensor GroupViT::preprocess_frames(const torch::Tensor& frames) const {
  if (frames.dim() != 4 || frames.size(3) != 3 || frames.scalar_type() != torch::kByte)
    throw std::invalid_argument("frames must be a uint8 [N, H, W, 3] RGB tensor");
  torch::NoGradGuard no_grad;
  auto x = frames.permute({0, 3, 1, 2}).to(torch::kFloat);
  if (preprocess_.do_resize) {
    const auto size = resize_output_size(x.size(2), x.size(3), preprocess_);
    x = at::_upsample_bicubic2d_aa(x, {size[0], size[1]}, /*align_corners=*/false).round().clamp(0, 255);
  }
  if (preprocess_.do_center_crop) {
    const auto ch = preprocess_.crop_height, cw = preprocess_.crop_width;
    if (x.size(2) < ch || x.size(3) < cw)
      throw std::invalid_argument("frames smaller than the crop size after resizing");
    x = x.narrow(2, (x.size(2) - ch) / 2, ch).narrow(3, (x.size(3) - cw) / 2, cw);
  }
  if (preprocess_.do_rescale) x = x * preprocess_.rescale_factor;
  if (preprocess_.do_normalize) {
    auto opts = x.options();
    auto mean = torch::tensor(std::vector<double>(preprocess_.image_mean.begin(), preprocess_.image_mean.end()), opts);
    auto std = torch::tensor(std::vector<double>(preprocess_.image_std.begin(), preprocess_.image_std.end()), opts);
    x = (x - mean.view({1, 3, 1, 1})) / std.view({1, 3, 1, 1});
  }
  return x.contiguous().to(device_, dtype_);
}

torch::Tensor GroupViT::encode_texts(const std::vector<std::string>& texts) const {
  auto batch = tokenize(texts);
  return encode_texts(batch.input_ids, batch.attention_mask);
}

torch::Tensor GroupViT::encode_texts(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const {
  torch::NoGradGuard no_grad;
  auto features = model_->get_text_features(input_ids.to(device_),
                                            attention_mask.defined() ? attention_mask.to(device_) : attention_mask);
  return l2_normalize(features);
}

torch::Tensor GroupViT::encode_images(const torch::Tensor& pixel_values) const {
  torch::NoGradGuard no_grad;
  auto features = model_->get_image_features(pixel_values.to(device_, dtype_));
  return l2_normalize(features);
}

torch::Tensor GroupViT::similarity(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds) const {
  torch::NoGradGuard no_grad;
  // GroupViTModelImpl::forward's order: logits_per_text, then its transpose.
  return (torch::matmul(text_embeds, image_embeds.t()) * model_->logit_scale.exp()).t();
}

torch::Tensor GroupViT::segment_hf(const torch::Tensor& pixel_values, const torch::Tensor& text_embeds) const {
  torch::NoGradGuard no_grad;
  auto pixels = pixel_values.to(device_, dtype_);
  auto vision = model_->vision_model(pixels, /*output_hidden_states=*/false, /*output_attentions=*/true);
  return model_->segmentation_logits(vision, text_embeds.to(device_, dtype_), pixels.size(2), pixels.size(3));
}

torch::Tensor GroupViT::encode_classes(const std::vector<std::string>& labels,
                                       const std::vector<std::string>& templates) const {
  return class_embeddings(*model_, tokenizer_, labels, templates, device_);
}

torch::Tensor class_embeddings(GroupViTModelImpl& model, const ClipTokenizer& tokenizer,
                               const std::vector<std::string>& labels, const std::vector<std::string>& templates,
                               torch::Device device) {
  if (labels.empty()) throw std::invalid_argument("no labels to encode");
  if (templates.empty()) throw std::invalid_argument("no prompt templates");
  torch::NoGradGuard no_grad;
  const auto texts = fill_templates(labels, templates);
  std::vector<torch::Tensor> features;
  for (size_t start = 0; start < texts.size(); start += kClassPromptBatch) {
    const auto end = std::min(texts.size(), start + kClassPromptBatch);
    const std::vector<std::string> chunk(texts.begin() + static_cast<std::ptrdiff_t>(start),
                                         texts.begin() + static_cast<std::ptrdiff_t>(end));
    auto tokens = tokenize_to_tensors(tokenizer, chunk, Padding::Longest, context_length(model.config()));
    features.push_back(
        model.get_text_features(tokens.input_ids.to(device), tokens.attention_mask.to(device)).to(torch::kFloat));
  }
  return class_embeddings_from_features(torch::cat(features), static_cast<int64_t>(labels.size()));
}

std::vector<torch::Tensor> GroupViT::segment_nvlabs(const std::vector<torch::Tensor>& images,
                                                    const torch::Tensor& class_embeds,
                                                    const std::vector<std::array<int64_t, 2>>& out_sizes,
                                                    const NvlabsSegmentationOptions& options) const {
  if (images.size() != out_sizes.size()) throw std::invalid_argument("segment_nvlabs: one output size per image");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> on_device;
  for (const auto& image : images) on_device.push_back(image.to(device_, dtype_));
  return nvlabs_segment(*model_, on_device, class_embeds.to(device_, dtype_), out_sizes, options);
}

torch::Tensor GroupViT::segment_hf_labels(const torch::Tensor& pixel_values, const torch::Tensor& text_embeds) const {
  return segment_hf(pixel_values, text_embeds).argmax(1);
}

}  // namespace groupvit
