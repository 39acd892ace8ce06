// Label Studio's brush RLE (BrushLabels "format": "rle"): the mask as RGBA bytes, row-major, each
// pixel's value in all four channels, coded as a bit stream: a 32-bit value count, the word size
// and run-length field sizes, then runs. Written here because Label Studio's encoder is Python
// (label_studio_sdk.converter.brush); the bytes equal its mask2rle's and
// test/label_formats_test.py checks them against it and decodes them with its decode_rle.
#pragma once

#include <cstdint>
#include <vector>

namespace groupvit_cli {

// The brush RLE of (label_map == label) as 255/0, label_map row-major [height, width].
std::vector<uint8_t> brush_rle(const std::vector<uint8_t>& label_map, uint8_t label);

}  // namespace groupvit_cli
