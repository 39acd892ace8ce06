// Fuzzes image decoding (OpenCV behind our format checks, size limit and EXIF handling): any
// bytes give an RGB image or an ImageError, never a crash or an unbounded allocation.
#include "groupvit/image_io.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto image = groupvit::decode_image_bytes(data, size, true, "fuzz input");
    if (image.pixels.size() != static_cast<size_t>(image.height * image.width * 3)) __builtin_trap();
  } catch (const groupvit::ImageError&) {
  }
  return 0;
}
