// The image front end of the model: resize, crop, rescale and normalise an 8-bit RGB image the way
// transformers' CLIPImageProcessor does on its Pillow path (class CLIPImageProcessorPil in transformers 5),
// so that pixel_values match the reference bit for bit. Decoding files into RgbImage lives in image_io.h
// (OpenCV, optional); this file has no dependency beyond LibTorch's tensor type.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "groupvit/preprocess/rgb_image.h"

namespace groupvit {

// Pillow's resampling filters, numbered as Pillow and preprocessor_config.json's "resample" number them.
enum class ResampleFilter : int {
  kNearest = 0,  // not supported here (Pillow uses a different algorithm for it)
  kLanczos = 1,
  kBilinear = 2,
  kBicubic = 3,
  kBox = 4,
  kHamming = 5,
};

// How the output size of the resize step is computed from the input size.
enum class SizeRule {
  kShortestEdge,         // size {"shortest_edge": s}: short side s, long side int(s * long / short)
  kShortestLongestEdge,  // size {"shortest_edge": s, "longest_edge": l}: transformers' get_size_with_aspect_ratio
  kHeightWidth,          // size {"height": h, "width": w}: exactly h x w, aspect ratio not kept
  kMmcvRescale,          // NVlabs/mmseg Resize(keep_ratio=True), img_scale=(longest_edge, shortest_edge)
};

// Which resize runs: Pillow's (transformers' CLIPImageProcessorPil, with `resample`'s filter) or
// OpenCV's 8-bit INTER_LINEAR (mmcv's imrescale, which the NVlabs evaluation pipeline runs).
enum class ResizeMethod {
  kPillow,
  kOpenCvLinear,
};

// The values of a preprocessor_config.json (CLIPImageProcessor keys). Missing keys take CLIPImageProcessor's
// defaults, which are the initial values below.
struct ImagePreprocessConfig {
  // Paint pixels of the image's transparent_color white (CLIPImageProcessor's convert_to_rgb composites
  // transparency onto white; RgbImage has no alpha left, only Pillow's colour key can reach this step).
  bool do_convert_rgb = true;
  bool do_resize = true;
  SizeRule size_rule = SizeRule::kShortestEdge;
  int64_t shortest_edge = 224;  // kShortestEdge, kShortestLongestEdge, kMmcvRescale
  int64_t longest_edge = 0;     // kShortestLongestEdge, kMmcvRescale
  int64_t height = 0;           // kHeightWidth
  int64_t width = 0;            // kHeightWidth
  ResampleFilter resample = ResampleFilter::kBicubic;
  // Not a preprocessor_config.json key (transformers has no such choice): kOpenCvLinear only by
  // code, e.g. nvlabs_eval(); `resample` is then unused.
  ResizeMethod resize_method = ResizeMethod::kPillow;
  bool do_center_crop = true;
  int64_t crop_height = 224;
  int64_t crop_width = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};

  // Reads a preprocessor_config.json. Accepts the legacy forms too ("size": 224, "crop_size": 224,
  // "size": [h, w]); throws ImageError naming the file and key for anything else.
  static ImagePreprocessConfig from_file(const std::string& path);
  static ImagePreprocessConfig from_json_string(const std::string& text,
                                                const std::string& source = "preprocessor_config.json");
  // CLIPImageProcessor's defaults, as in the GroupViT hub checkpoints' preprocessor_config.json.
  static ImagePreprocessConfig clip_default();
  // A model directory's preprocessor_config.json, or CLIP's defaults when it has none
  // (`*used_default` tells which, for callers that want to say so).
  static ImagePreprocessConfig for_model_dir(const std::string& dir, bool* used_default = nullptr);
  // The original GroupViT segmentation evaluation (NVlabs configs: img_scale=(2048, 448), keep_ratio, ImageNet
  // mean/std in 0..255 units, no crop), resized as mmcv does it: OpenCV bilinear on the 8-bit image at
  // imrescale's size, bit for bit (resize_opencv_linear). Set resize_method to kPillow (and resample) for
  // Pillow's bicubic instead, as this project did before.
  static ImagePreprocessConfig nvlabs_eval();

  // Throws ImageError when a value cannot work (zero or absurd sizes, std == 0, unsupported filter).
  void validate(const std::string& source = "image preprocess config") const;
};

// Bit-exact Pillow (13.0) Image.resize for RGB images: separable convolution in two passes through a rounded
// 8-bit intermediate (pass order as Pillow 13 picks it), support widened by the scale factor when reducing
// (antialiasing), weights in 22-bit fixed point.
RgbImage resize_pillow(const RgbImage& src, int64_t out_width, int64_t out_height, ResampleFilter filter);
RgbImage resize_bicubic_pillow(const RgbImage& src, int64_t out_width, int64_t out_height);

// Bit-exact OpenCV cv::resize(src, dst, {out_width, out_height}, 0, 0, INTER_LINEAR) on an 8-bit image
// (what mmcv.imresize / imrescale call with their default "bilinear"), checked against opencv-python's
// cv2.resize; no OpenCV needed (groupvit/preprocess/opencv_resize.cpp says how).
RgbImage resize_opencv_linear(const RgbImage& src, int64_t out_width, int64_t out_height);

// Output {height, width} of the resize step for an input of the given size under `config`'s size rule.
std::array<int64_t, 2> resize_output_size(int64_t height, int64_t width, const ImagePreprocessConfig& config);

// Short side to `shortest_edge`, long side int(shortest_edge * long / short) (CLIP's rule), Pillow bicubic.
RgbImage resize_shortest_edge(const RgbImage& src, int64_t shortest_edge);

// transformers' center_crop: top = (h - crop_h) // 2, left = (w - crop_w) // 2; where the image is smaller
// than the crop it is first padded with black, centred (pad before = ceil(missing / 2)).
RgbImage center_crop(const RgbImage& src, int64_t crop_height, int64_t crop_width);

// CLIPImageProcessor's convert_to_rgb for an image that is already RGB: pixels equal to transparent_color
// become white (alpha compositing of a colour key onto white); the result has no transparent_color.
RgbImage composite_transparent_color_on_white(const RgbImage& image);

// Convert, resize and crop as configured: the 8-bit image just before rescale/normalise (for parity checks).
RgbImage preprocess_uint8(const RgbImage& image, const ImagePreprocessConfig& config);

// Rescale and normalise an 8-bit image into float32 [3, H, W] with the reference's arithmetic: float64
// x * rescale_factor rounded to float32, then (v - mean) / std in float32.
at::Tensor to_normalized_tensor(const RgbImage& image, const ImagePreprocessConfig& config);

// preprocess_uint8 followed by to_normalized_tensor: CLIPImageProcessor's pixel_values for one image, [3, H, W].
at::Tensor preprocess(const RgbImage& image, const ImagePreprocessConfig& config);

// [N, 3, H, W]; every image must come out at the same size (true with a center crop), else ImageError.
at::Tensor preprocess_batch(const std::vector<RgbImage>& images, const ImagePreprocessConfig& config);

}  // namespace groupvit
