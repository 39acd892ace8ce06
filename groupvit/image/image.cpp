// File and frame conveniences of the public API (see image.h); rgb_from_mat is in image_io.cpp,
// beside the conversion of decoded pixels that it shares.
#include "groupvit/image/image.h"

namespace groupvit {

torch::Tensor load_pixel_values(const GroupViT& model, const std::vector<std::string>& paths) {
  std::vector<RgbImage> images;
  images.reserve(paths.size());
  for (const auto& path : paths) images.push_back(decode_image_file(path));
  return model.preprocess(images);
}

torch::Tensor pixel_values_from_mats(const GroupViT& model, const std::vector<cv::Mat>& frames) {
  std::vector<RgbImage> images;
  images.reserve(frames.size());
  for (const auto& frame : frames) images.push_back(rgb_from_mat(frame));
  return model.preprocess(images);
}

}  // namespace groupvit
