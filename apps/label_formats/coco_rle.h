// COCO's run-length encoding of a binary mask, in the compressed string form of pycocotools
// (maskApi.c rleToString): runs over the mask in column-major order, starting with a run of 0s,
// each count delta-coded against the count two before it and written as 5-bit groups + 48.
// Written here rather than linked because pycocotools is Python; test/label_formats_test.py
// checks every string against pycocotools' own encode and decode.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace groupvit_cli {

// Column-major run lengths of (label_map == label), label_map row-major [height, width].
std::vector<uint32_t> coco_runs(const std::vector<uint8_t>& label_map, int64_t height, int64_t width, uint8_t label);
std::string coco_counts_string(const std::vector<uint32_t>& runs);
std::vector<uint32_t> coco_runs_from_string(const std::string& counts);  // std::invalid_argument on bad input

// A label's region of a label map: its pixel count and tight [x, y, w, h] box (COCO's bbox).
struct RegionExtent {
  int64_t area = 0;
  std::array<int64_t, 4> bbox{0, 0, 0, 0};
};
// Every label's extent in one pass: index = label value.
std::vector<RegionExtent> region_extents(const std::vector<uint8_t>& label_map, int64_t height, int64_t width,
                                         size_t labels);

}  // namespace groupvit_cli
