// groupvit: GroupViT in C++ on LibTorch. This header is the public API: load a model
// directory, encode texts and images, and get embeddings, similarity logits and segmentation
// as torch::Tensors. Image *decoding* (files, cv::Mat) is the separate target groupvit::image,
// declared in groupvit/image/image.h; everything here works with tensors and needs no OpenCV.
//
// Thread safety: a GroupViT object holds no global state. Its const methods (tokenize,
// preprocess, the encoders, similarity, segmentation) may be called from several threads at
// once in eval mode; LibTorch modules are not mutated by a forward without gradients. Do not
// call to(), train() or load weights while other threads use the same object. The tokenizer
// and preprocessing config are immutable and cheap to copy.
#pragma once

#include <string>
#include <vector>

#include "groupvit/model/model.h"
#include "groupvit/model/weights.h"
#include "groupvit/preprocess/image_preprocess.h"
#include "groupvit/preprocess/tokenizer_torch.h"
#include "groupvit/segment/nvlabs_segmentation.h"
#include "groupvit/text/prompt_templates.h"
#include "groupvit/version.h"

namespace groupvit {

class GroupViT {
 public:
  // Loads `model_dir` (converted by scripts/convert_hf.py, or a Hugging Face snapshot with
  // model.safetensors) onto `device` in `dtype`: the model in eval mode, its tokenizer
  // (vocab.json + merges.txt, tokenizer.json or bpe_simple_vocab_16e6.txt.gz) and its image
  // preprocessing (preprocessor_config.json; CLIP's defaults when the file is absent).
  // Throws WeightsError, ConfigError, TokenizerError or ImageError naming the file at fault.
  static GroupViT load(const std::string& model_dir, torch::Device device = torch::kCPU,
                       torch::Dtype dtype = torch::kFloat);
  // The same with every load option, e.g. {torch::kCPU, torch::kFloat, /*int8_linear=*/true} for
  // dynamic int8 Linear layers (GroupViTModelImpl::quantize_linear_int8).
  static GroupViT load(const std::string& model_dir, const LoadOptions& options);

  // --- inputs -----------------------------------------------------------------------
  // Token ids and attention mask [N, L] (int64, on the model's device), padded to the longest.
  TokenizedBatch tokenize(const std::vector<std::string>& texts) const;
  // Decoded RGB images -> pixel_values [N, 3, H, W] in the model's dtype and on its device,
  // exactly as the reference's CLIPImageProcessor prepares them. All images must come out at
  // one size (true for the default resize + center crop).
  torch::Tensor preprocess(const std::vector<RgbImage>& images) const;
  // Frames already in memory as a uint8 tensor [N, H, W, 3] (RGB, any device) -> pixel_values,
  // computed on the frames' device with LibTorch's antialiased bicubic resize. Same sizes,
  // crop and normalisation as preprocess(), but not bit-exact with Pillow (values differ by a
  // few levels): use preprocess() where exact parity with the reference matters.
  torch::Tensor preprocess_frames(const torch::Tensor& frames) const;

  // --- embeddings (L2-normalised, [N, projection_dim]) ---------------------------------
  torch::Tensor encode_texts(const std::vector<std::string>& texts) const;
  torch::Tensor encode_texts(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const;
  // pixel_values [N, 3, H, W], normalised; any H, W that are multiples of the patch size.
  torch::Tensor encode_images(const torch::Tensor& pixel_values) const;

  // --- similarity ----------------------------------------------------------------------
  // logits_per_image [images, texts] = exp(logit_scale) * image_embeds @ text_embedsᵀ, from
  // normalised embeddings (as returned above). Softmax over dim 1 gives per-image probabilities.
  // Computed as the model's forward computes it (the transpose of logits_per_text), so that it is
  // that forward's logits_per_image bit for bit.
  torch::Tensor similarity(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds) const;

  // --- segmentation --------------------------------------------------------------------
  // Hugging Face segmentation_logits: [images, texts, H, W] at the input resolution.
  torch::Tensor segment_hf(const torch::Tensor& pixel_values, const torch::Tensor& text_embeds) const;
  // Per-pixel label from segment_hf: index of the best text, [images, H, W] int64.
  torch::Tensor segment_hf_labels(const torch::Tensor& pixel_values, const torch::Tensor& text_embeds) const;

  // NVlabs (paper) semantics. Class embeddings: the projected text features of every
  // template filled with each label, averaged per label, L2-normalised: float32
  // [labels, projection_dim] (class_embeddings below, with this object's model and tokenizer).
  // Templates: kSimpleTemplates ("a photo of a {}."), kSubsetTemplates, kFullTemplates.
  torch::Tensor encode_classes(const std::vector<std::string>& labels,
                               const std::vector<std::string>& templates = kSimpleTemplates) const;
  // Segments images [3, H, W] prepared with ImagePreprocessConfig::nvlabs_eval() (short side 448,
  // ImageNet mean/std): sliding 448 windows (or options.whole), one-hot grouping, top-k gating,
  // background threshold. Returns per image float32 scores [1 + labels, out_h, out_w] at the
  // requested (original) size, channel 0 = background; argmax over dim 0 is the label map.
  std::vector<torch::Tensor> segment_nvlabs(const std::vector<torch::Tensor>& images, const torch::Tensor& class_embeds,
                                            const std::vector<std::array<int64_t, 2>>& out_sizes,
                                            const NvlabsSegmentationOptions& options = {}) const;

  // --- the parts, for custom use (fine-tuning with image_text_contrastive_loss, hooks) ---
  GroupViTModel& model() { return model_; }
  const GroupViTModel& model() const { return model_; }
  const ClipTokenizer& tokenizer() const { return tokenizer_; }
  const ImagePreprocessConfig& preprocessor() const { return preprocess_; }
  // True when the model directory has no preprocessor_config.json and CLIP's defaults are used
  // (for callers that want to say so).
  bool uses_default_preprocessing() const { return default_preprocessing_; }
  torch::Device device() const { return device_; }
  torch::Dtype dtype() const { return dtype_; }

 private:
  GroupViT(GroupViTModel model, ClipTokenizer tokenizer, ImagePreprocessConfig preprocess, bool default_preprocessing,
           torch::Device device, torch::Dtype dtype);

  mutable GroupViTModel model_;  // forward() is non-const in LibTorch; eval-mode use does not mutate it
  ClipTokenizer tokenizer_;
  ImagePreprocessConfig preprocess_;
  bool default_preprocessing_;
  torch::Device device_;
  torch::Dtype dtype_;
};

// Prompts per text-tower call of class_embeddings: bounds its memory however many labels and
// templates there are.
constexpr size_t kClassPromptBatch = 256;

// The NVlabs class embeddings of any model and tokenizer (GroupViT::encode_classes with its own):
// every label in every template (fill_templates) through the text tower on `device` (the
// model's), kClassPromptBatch prompts at a time, each batch padded to its own longest prompt;
// the features in float32, averaged per label and L2-normalised (class_embeddings_from_features):
// float32 [labels, projection_dim] on `device`. Up to kClassPromptBatch prompts it is one batch.
// Throws std::invalid_argument when there are no labels or no templates.
torch::Tensor class_embeddings(GroupViTModelImpl& model, const ClipTokenizer& tokenizer,
                               const std::vector<std::string>& labels, const std::vector<std::string>& templates,
                               torch::Device device);

}  // namespace groupvit
