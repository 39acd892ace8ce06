// COCO compressed RLE (see coco_rle.h).
#include "label_formats/coco_rle.h"

#include <algorithm>
#include <stdexcept>

namespace groupvit_cli {

std::vector<uint32_t> coco_runs(const std::vector<uint8_t>& label_map, int64_t height, int64_t width, uint8_t label) {
  std::vector<uint32_t> runs;
  bool inside = false;  // COCO's first run counts 0s (it is 0 when the mask starts with a 1)
  uint32_t run = 0;
  for (int64_t x = 0; x < width; ++x) {
    for (int64_t y = 0; y < height; ++y) {
      const bool on = label_map[static_cast<size_t>(y * width + x)] == label;
      if (on != inside) {
        runs.push_back(run);
        run = 0;
        inside = on;
      }
      ++run;
    }
  }
  runs.push_back(run);
  return runs;
}

std::string coco_counts_string(const std::vector<uint32_t>& runs) {
  std::string out;
  for (size_t i = 0; i < runs.size(); ++i) {
    int64_t x = runs[i];
    if (i > 2) x -= runs[i - 2];
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;  // arithmetic shift: the sign carries on
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      out.push_back(static_cast<char>(c + 48));
    }
  }
  return out;
}

std::vector<uint32_t> coco_runs_from_string(const std::string& counts) {
  std::vector<uint32_t> runs;
  size_t p = 0;
  while (p < counts.size()) {
    int64_t x = 0;
    int shift = 0;
    bool more = true;
    while (more) {
      if (p >= counts.size()) throw std::invalid_argument("COCO RLE counts end inside a number");
      const int64_t c = static_cast<int64_t>(counts[p]) - 48;
      if (c < 0 || c > 63 || shift > 30) throw std::invalid_argument("COCO RLE counts hold an invalid character");
      x |= (c & 0x1f) << shift;
      more = (c & 0x20) != 0;
      ++p;
      shift += 5;
      if (!more && (c & 0x10)) x |= -(int64_t{1} << shift);
    }
    if (runs.size() > 2) x += runs[runs.size() - 2];
    if (x < 0 || x > UINT32_MAX) throw std::invalid_argument("COCO RLE counts decode to a negative run");
    runs.push_back(static_cast<uint32_t>(x));
  }
  return runs;
}

std::vector<RegionExtent> region_extents(const std::vector<uint8_t>& label_map, int64_t height, int64_t width,
                                         size_t labels) {
  std::vector<RegionExtent> e(labels);
  std::vector<std::array<int64_t, 4>> box(labels, {width, height, -1, -1});  // x0 y0 x1 y1
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      const uint8_t l = label_map[static_cast<size_t>(y * width + x)];
      if (l >= labels) continue;
      ++e[l].area;
      auto& b = box[l];
      b[0] = std::min(b[0], x), b[1] = std::min(b[1], y), b[2] = std::max(b[2], x), b[3] = std::max(b[3], y);
    }
  }
  for (size_t l = 0; l < labels; ++l)
    if (e[l].area) e[l].bbox = {box[l][0], box[l][1], box[l][2] - box[l][0] + 1, box[l][3] - box[l][1] + 1};
  return e;
}

}  // namespace groupvit_cli
