// NVlabs evaluation semantics for zero-shot segmentation (see nvlabs_segmentation.h).
#include "groupvit/segment/nvlabs_segmentation.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>

#include "groupvit/model/segmentation.h"

namespace groupvit {

namespace F = torch::nn::functional;

namespace {

torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t height, int64_t width) {
  if (x.size(-2) == height && x.size(-1) == width) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

// Chained soft maps of every stage up to `last_stage`, [B, G, h, w] at the window's pixel size.
// The patch grid is known here (window size / patch size), so no grid recovery is needed.
std::vector<torch::Tensor> chained_maps(const VisionModelOutput& vision, int64_t grid_h, int64_t grid_w, int64_t height,
                                        int64_t width) {
  std::vector<torch::Tensor> float_attentions;
  for (const auto& attn : vision.attentions) float_attentions.push_back(attn.to(torch::kFloat));
  std::vector<torch::Tensor> maps;
  for (const auto& map : chain_attentions(float_attentions)) {
    maps.push_back(resize_bilinear(map.reshape({map.size(0), map.size(1), grid_h, grid_w}), height, width));
  }
  return maps;
}

// Pads [B, 3, h, w] on the bottom/right with zeros (the normalised mean) to patch multiples.
torch::Tensor pad_to_patches(const torch::Tensor& x, int64_t patch) {
  const int64_t ph = (patch - x.size(2) % patch) % patch, pw = (patch - x.size(3) % patch) % patch;
  if (ph == 0 && pw == 0) return x;
  return F::pad(x, F::PadFuncOptions({0, pw, 0, ph}));
}

}  // namespace

torch::Tensor class_embeddings_from_features(const torch::Tensor& features, int64_t num_classes) {
  if (num_classes < 1 || features.size(0) % num_classes != 0)
    throw std::invalid_argument("class embeddings: " + std::to_string(features.size(0)) +
                                " features do not split into " + std::to_string(num_classes) + " classes");
  auto grouped = features.to(torch::kFloat).reshape({num_classes, -1, features.size(-1)});
  return l2_normalize(grouped.mean(1));
}

torch::Tensor nvlabs_window_scores(GroupViTModelImpl& model, const torch::Tensor& windows,
                                   const torch::Tensor& class_embeds, const NvlabsSegmentationOptions& options) {
  torch::NoGradGuard no_grad;
  const int64_t batch = windows.size(0), height = windows.size(2), width = windows.size(3);
  const int64_t patch = model.config().vision_config.patch_size;
  if (height % patch || width % patch)
    throw std::invalid_argument("window sides must be multiples of the patch size " + std::to_string(patch));
  const auto vision = model.vision_model(windows, /*output_hidden_states=*/false, /*output_attentions=*/true);
  // [B, H, W] index of the final group with the largest chained soft assignment (one-hot grouping).
  const auto group_of_pixel = chained_maps(vision, height / patch, width / patch, height, width).back().argmax(1);

  const auto& tokens = vision.last_hidden_state;  // [B, G, C]
  const int64_t groups = tokens.size(1);
  auto group_embeds =
      l2_normalize(model.visual_projection->forward(tokens.reshape({-1, tokens.size(-1)})).to(torch::kFloat))
          .reshape({batch, groups, -1});
  auto image_embeds = l2_normalize(model.visual_projection->forward(vision.pooler_output).to(torch::kFloat));
  const auto text = class_embeds.to(torch::kFloat);
  const int64_t classes = text.size(0);
  const auto scale = model.logit_scale.exp().to(torch::kFloat).clamp_max(options.max_logit_scale);

  auto group_affinity = torch::matmul(group_embeds, text.t()) * scale;  // [B, G, N]
  const auto pre_affinity = group_affinity.softmax(-1);
  const auto image_affinity = (torch::matmul(image_embeds, text.t()) * scale).softmax(-1);  // [B, N]
  const auto top = std::get<1>(image_affinity.topk(std::min(options.top_k, classes), -1));
  auto keep = torch::zeros_like(image_affinity, torch::kBool).scatter_(1, top, true);  // [B, N]
  group_affinity =
      group_affinity.masked_fill(keep.logical_not().unsqueeze(1), -std::numeric_limits<float>::infinity()).softmax(-1) *
      pre_affinity;

  // One-hot grouping: each pixel takes its group's class scores.
  auto index = group_of_pixel.reshape({batch, -1, 1}).expand({batch, height * width, classes});
  auto fg = torch::gather(group_affinity, 1, index);  // [B, H*W, N]
  auto fg_maps = fg.permute({0, 2, 1}).reshape({batch, classes, height, width});
  if (!options.with_background) return fg_maps;
  // Background where the best foreground score is below min(bg_thresh, the window's best affinity).
  auto thresh = group_affinity.reshape({batch, -1}).amax(1).clamp_max(options.bg_thresh);  // [B]
  auto bg = (fg_maps.amax(1, /*keepdim=*/true) < thresh.reshape({batch, 1, 1, 1})).to(torch::kFloat);
  return torch::cat({bg, fg_maps}, 1);
}

std::vector<torch::Tensor> nvlabs_segment(GroupViTModelImpl& model, const std::vector<torch::Tensor>& images,
                                          const torch::Tensor& class_embeds,
                                          const std::vector<std::array<int64_t, 2>>& out_sizes,
                                          const NvlabsSegmentationOptions& options) {
  torch::NoGradGuard no_grad;
  if (images.size() != out_sizes.size()) throw std::invalid_argument("nvlabs_segment: one output size per image");
  if (options.crop_size < 1 || options.stride < 1) throw std::invalid_argument("crop size and stride must be >= 1");
  const int64_t patch = model.config().vision_config.patch_size;
  const int64_t channels = class_embeds.size(0) + (options.with_background ? 1 : 0);

  struct Window {
    size_t image;
    int64_t y1, y2, x1, x2;
  };
  std::vector<Window> windows;
  std::vector<torch::Tensor> sums, counts;
  for (size_t i = 0; i < images.size(); ++i) {
    const int64_t h = images[i].size(1), w = images[i].size(2);
    sums.push_back(torch::zeros({channels, h, w}, images[i].options().dtype(torch::kFloat)));
    counts.push_back(torch::zeros({1, h, w}, images[i].options().dtype(torch::kFloat)));
    if (options.whole) {
      windows.push_back({i, 0, h, 0, w});
      continue;
    }
    // mmseg's slide_inference grid: the last window of each axis is pushed back inside the image.
    const int64_t crop = options.crop_size, stride = options.stride;
    const int64_t rows = std::max<int64_t>(h - crop + stride - 1, 0) / stride + 1;
    const int64_t cols = std::max<int64_t>(w - crop + stride - 1, 0) / stride + 1;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        int64_t y1 = r * stride, x1 = c * stride;
        const int64_t y2 = std::min(y1 + crop, h), x2 = std::min(x1 + crop, w);
        y1 = std::max<int64_t>(y2 - crop, 0);
        x1 = std::max<int64_t>(x2 - crop, 0);
        windows.push_back({i, y1, y2, x1, x2});
      }
    }
  }
  // Windows of equal (padded) shape go through the model together.
  std::map<std::pair<int64_t, int64_t>, std::vector<size_t>> by_shape;
  for (size_t k = 0; k < windows.size(); ++k) {
    const auto& win = windows[k];
    const int64_t ph = (win.y2 - win.y1 + patch - 1) / patch * patch,
                  pw = (win.x2 - win.x1 + patch - 1) / patch * patch;
    by_shape[{ph, pw}].push_back(k);
  }
  const auto dtype = model.logit_scale.scalar_type();
  const size_t per_pass = static_cast<size_t>(std::max<int64_t>(options.max_crops_per_pass, 1));
  for (const auto& [shape, members] : by_shape) {
    for (size_t start = 0; start < members.size(); start += per_pass) {
      const size_t end = std::min(members.size(), start + per_pass);
      std::vector<torch::Tensor> batch;
      for (size_t m = start; m < end; ++m) {
        const auto& win = windows[members[m]];
        auto crop = images[win.image].slice(1, win.y1, win.y2).slice(2, win.x1, win.x2).unsqueeze(0);
        batch.push_back(pad_to_patches(crop, patch));
      }
      auto scores = nvlabs_window_scores(model, torch::cat(batch).to(dtype), class_embeds, options);
      for (size_t m = start; m < end; ++m) {
        const auto& win = windows[members[m]];
        auto s = scores[static_cast<int64_t>(m - start)].slice(1, 0, win.y2 - win.y1).slice(2, 0, win.x2 - win.x1);
        sums[win.image].slice(1, win.y1, win.y2).slice(2, win.x1, win.x2).add_(s);
        counts[win.image].slice(1, win.y1, win.y2).slice(2, win.x1, win.x2).add_(1);
      }
    }
  }
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < images.size(); ++i) {
    auto mean = (sums[i] / counts[i]).unsqueeze(0);
    out.push_back(resize_bilinear(mean, out_sizes[i][0], out_sizes[i][1]).squeeze(0));
  }
  return out;
}

std::vector<torch::Tensor> group_masks(GroupViTModelImpl& model, const torch::Tensor& image,
                                       std::array<int64_t, 2> out_size) {
  torch::NoGradGuard no_grad;
  const int64_t patch = model.config().vision_config.patch_size;
  const int64_t h = image.size(1), w = image.size(2);
  auto x = pad_to_patches(image.unsqueeze(0), patch).to(model.logit_scale.scalar_type());
  const auto vision = model.vision_model(x, false, true);
  std::vector<torch::Tensor> masks;
  for (auto& map : chained_maps(vision, x.size(2) / patch, x.size(3) / patch, x.size(2), x.size(3))) {
    auto cropped = map.slice(2, 0, h).slice(3, 0, w);
    masks.push_back(resize_bilinear(cropped, out_size[0], out_size[1]).argmax(1).squeeze(0));
  }
  return masks;
}

}  // namespace groupvit
