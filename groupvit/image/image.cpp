// cv::Mat and file conveniences of the public API (see image.h).
#include "groupvit/image/image.h"

#include <opencv2/core.hpp>

namespace groupvit {

RgbImage rgb_from_mat(const cv::Mat& mat) {
  if (mat.empty()) throw ImageError("cv::Mat frame is empty");
  if (mat.depth() != CV_8U)
    throw ImageError("cv::Mat frame must be 8-bit per channel (got depth " + std::to_string(mat.depth()) + ")");
  const int channels = mat.channels();
  if (channels != 1 && channels != 3 && channels != 4)
    throw ImageError("cv::Mat frame must have 1, 3 or 4 channels (got " + std::to_string(channels) + ")");
  check_image_size(mat.rows, mat.cols, "cv::Mat frame");
  RgbImage out;
  out.height = mat.rows;
  out.width = mat.cols;
  out.pixels.resize(static_cast<size_t>(mat.rows) * mat.cols * 3);
  uint8_t* dst = out.pixels.data();
  for (int y = 0; y < mat.rows; ++y) {
    const uint8_t* row = mat.ptr<uint8_t>(y);
    for (int x = 0; x < mat.cols; ++x, dst += 3) {
      const uint8_t* px = row + static_cast<size_t>(x) * channels;
      if (channels == 1) {
        dst[0] = dst[1] = dst[2] = px[0];
      } else {  // BGR(A) -> RGB
        dst[0] = px[2];
        dst[1] = px[1];
        dst[2] = px[0];
      }
    }
  }
  return out;
}

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
