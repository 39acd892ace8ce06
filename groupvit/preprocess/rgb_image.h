// RgbImage: the 8-bit RGB pixel buffer shared by image decoding (image_io.h) and preprocessing
// (image_preprocess.h), with the size limit both enforce. Header-only and free of LibTorch and OpenCV.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit {

// Thrown for unusable images, sizes or preprocessor configs; the message says what and where.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Images above this many pixels are refused (decoding and every resize output), so that a hostile or
// mistaken input fails with a message instead of exhausting memory: 2^28 pixels is 768 MiB as RGB.
constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// Throws ImageError unless 1 <= height, width and height * width <= kMaxImagePixels; `what` names the image.
inline void check_image_size(int64_t height, int64_t width, const std::string& what) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height) + " (width x height)";
  if (height < 1 || width < 1) {
    throw ImageError(what + ": size " + size + " is empty; both sides must be at least 1 pixel");
  }
  if (height > kMaxImagePixels / width) {  // division: the product could overflow
    throw ImageError(what + ": size " + size + " exceeds the limit of " + std::to_string(kMaxImagePixels) +
                     " pixels (groupvit::kMaxImagePixels); downscale the image first");
  }
}

// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC): pixels[(y * width + x) * 3 + c].
struct RgbImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;
  // A colour key, as Pillow keeps it in info["transparency"] through convert("RGB") (PNG tRNS: the transparent
  // palette entry's colour, a grey level or an RGB value). Not alpha: the pixels keep their colour, but
  // CLIPImageProcessor's convert_to_rgb paints pixels of exactly this colour white, and so does preprocess.
  std::optional<std::array<uint8_t, 3>> transparent_color;

  RgbImage() = default;
  // Zero-filled; throws ImageError for an empty or oversized shape.
  RgbImage(int64_t h, int64_t w) : height(h), width(w) {
    check_image_size(h, w, "image");
    pixels.assign(static_cast<size_t>(h * w * 3), 0);
  }
  uint8_t* row(int64_t y) { return pixels.data() + y * width * 3; }
  const uint8_t* row(int64_t y) const { return pixels.data() + y * width * 3; }
};

}  // namespace groupvit
