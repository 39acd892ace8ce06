// Writing 8-bit paletted PNG files (label maps), which OpenCV cannot write: a minimal encoder on
// zlib. No LibTorch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace groupvit {

// Encodes `indices` (height * width bytes, rows top to bottom) as a colour type 3 PNG with the
// given palette (1..256 RGB entries; every index must be below palette.size()). Throws
// std::invalid_argument on bad sizes or indices, std::runtime_error if zlib fails.
std::vector<uint8_t> encode_paletted_png(const std::vector<uint8_t>& indices, int64_t height, int64_t width,
                                         const std::vector<std::array<uint8_t, 3>>& palette);

// A distinct, stable colour for each of 256 labels (the PASCAL VOC colour map: 0 is black).
std::vector<std::array<uint8_t, 3>> label_palette(int entries = 256);

}  // namespace groupvit
