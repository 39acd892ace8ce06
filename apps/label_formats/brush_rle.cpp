// Label Studio brush RLE (see brush_rle.h).
#include "label_formats/brush_rle.h"

#include <algorithm>

namespace groupvit_cli {

namespace {

class BitWriter {
 public:
  void put(uint64_t value, int bits) {
    for (int b = bits - 1; b >= 0; --b) {
      if (used_ % 8 == 0) bytes_.push_back(0);
      if ((value >> b) & 1u) bytes_.back() |= static_cast<uint8_t>(0x80u >> (used_ % 8));
      ++used_;
    }
  }
  // mask2rle pads to the next byte, and by a whole zero byte when already on one.
  std::vector<uint8_t> finish() {
    put(0, 8 - static_cast<int>(used_ % 8));
    return bytes_;
  }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t used_ = 0;
};

// The stream's run-length fields: 3, 4, 8 and 16 bits (index 0..3), as Label Studio writes them.
constexpr int kFieldBits[4] = {3, 4, 8, 16};

void put_run(BitWriter& w, uint64_t length, uint8_t value) {
  if (length == 1) {  // a single value: "0", field 0, length 0
    w.put(0, 1), w.put(0, 2), w.put(0, 3), w.put(value, 8);
    return;
  }
  while (length > 65536) {  // the longest field holds 65536; longer runs are split, as Label Studio does
    w.put(1, 1), w.put(3, 2), w.put(65535, 16), w.put(value, 8);
    length -= 65536;
  }
  const int field = length <= 8 ? 0 : length <= 16 ? 1 : length <= 256 ? 2 : 3;
  w.put(1, 1), w.put(static_cast<uint64_t>(field), 2), w.put(length - 1, kFieldBits[field]), w.put(value, 8);
}

}  // namespace

std::vector<uint8_t> brush_rle(const std::vector<uint8_t>& label_map, uint8_t label) {
  BitWriter w;
  const uint64_t values = label_map.size() * 4;  // RGBA
  w.put(values, 32);
  w.put(8 - 1, 5);  // word size: 8 bits
  for (int bits : kFieldBits) w.put(static_cast<uint64_t>(bits - 1), 4);
  size_t i = 0;
  while (i < label_map.size()) {
    const bool on = label_map[i] == label;
    size_t j = i;
    while (j < label_map.size() && (label_map[j] == label) == on) ++j;
    put_run(w, static_cast<uint64_t>(j - i) * 4, on ? 255 : 0);
    i = j;
  }
  return w.finish();
}

}  // namespace groupvit_cli
