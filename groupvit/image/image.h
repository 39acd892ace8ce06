// Image decoding for the public API (target groupvit::image, needs OpenCV): files and
// cv::Mat frames into RgbImage, and straight into pixel_values for a GroupViT.
#pragma once

#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "groupvit/groupvit.h"
#include "groupvit/image/image_io.h"  // decode_image_file, decode_image_bytes, probe_image, rgb_from_mat

namespace groupvit {

// Decodes files (EXIF orientation applied) and preprocesses them for `model`:
// pixel_values [N, 3, H, W] on the model's device and dtype.
torch::Tensor load_pixel_values(const GroupViT& model, const std::vector<std::string>& paths);

// The same for frames already in memory.
torch::Tensor pixel_values_from_mats(const GroupViT& model, const std::vector<cv::Mat>& frames);

}  // namespace groupvit
