// Reading label maps stored as 8-bit PNG (grey, or paletted as PASCAL VOC's SegmentationClass
// files are): the stored indices, which image decoders such as OpenCV expand to colours.
// A minimal decoder on zlib; no LibTorch.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit {

struct LabelMap {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> labels;  // height * width, rows top to bottom
};

// Decodes a non-interlaced PNG of colour type 0 (grey, 8 bits) or 3 (palette, 1/2/4/8 bits).
// Throws std::runtime_error naming `source` and the problem for anything else or a damaged file.
LabelMap decode_label_png(const uint8_t* data, size_t size, const std::string& source);
LabelMap read_label_png(const std::string& path);

}  // namespace groupvit
