// Zero-shot semantic segmentation as the GroupViT paper evaluates it (NVlabs'
// GroupViTSegInference with mmseg's sliding-window inference): class embeddings averaged over
// prompt templates, one-hot grouping over the final groups, image-level top-k class gating,
// logit scale capped at 100, and background as a threshold rather than a text class.
// LibTorch only, so it runs on any device the model is on.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "groupvit/model/model.h"

namespace groupvit {

struct NvlabsSegmentationOptions {
  bool with_background = true;   // channel 0 is background; classes follow from channel 1
  double bg_thresh = 0.95;       // VOC/COCO 0.95, Context 0.35
  bool whole = false;            // one pass over the whole image instead of sliding windows
  int64_t crop_size = 448;       // sliding window side
  int64_t stride = 224;          // sliding window stride
  int64_t top_k = 5;             // classes kept by the image-level gate
  double max_logit_scale = 100;  // NVlabs clamps exp(logit_scale) here
  int64_t max_crops_per_pass = 8;
};

// [classes * templates, C] projected (unnormalised) text features -> [classes, C]: mean over each
// class's templates, then L2-normalised (NVlabs' build_text_embedding).
torch::Tensor class_embeddings_from_features(const torch::Tensor& features, int64_t num_classes);

// The per-window head (NVlabs' encode_decode) for a batch of windows [B, 3, h, w] whose sides are
// multiples of the patch size: [B, classes (+1 background), h, w] scores, float32.
torch::Tensor nvlabs_window_scores(GroupViTModelImpl& model, const torch::Tensor& windows,
                                   const torch::Tensor& class_embeds, const NvlabsSegmentationOptions& options);

// Whole pipeline for preprocessed images [3, H, W] (any sizes; windows are zero-padded to the patch
// size where needed and cropped back): scores averaged over overlapping windows, then resized
// bilinearly (align_corners=false) to out_sizes[i] = {height, width}. Windows of all images are
// batched together. Returns one float32 [classes (+1), height, width] tensor per image, on the
// model's device; the label map is its argmax over dim 0.
std::vector<torch::Tensor> nvlabs_segment(GroupViTModelImpl& model, const std::vector<torch::Tensor>& images,
                                          const torch::Tensor& class_embeds,
                                          const std::vector<std::array<int64_t, 2>>& out_sizes,
                                          const NvlabsSegmentationOptions& options);

// Group index of every pixel for each grouping stage (argmax of the chained soft assignment),
// from one pass over the whole image [3, H, W], resized to {height, width}: int64 [height, width].
std::vector<torch::Tensor> group_masks(GroupViTModelImpl& model, const torch::Tensor& image,
                                       std::array<int64_t, 2> out_size);

}  // namespace groupvit
