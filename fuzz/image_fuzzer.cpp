// Fuzzes image decoding (OpenCV behind our format checks, size limit and EXIF handling): any
// bytes give an RGB image or an ImageError, never a crash or an unbounded allocation.
#include <cstddef>
#include <cstdint>

#include "groupvit/image/image_io.h"

namespace {
// A few hundred bytes can declare a legal 8000x8000 JPEG whose decoding takes ~30 s under ASan
// (found in CI as a libFuzzer timeout). Large-but-legal images are slow by nature, not a bug; the
// size limit itself is tested in unit.robust. Inputs whose header claims more pixels than this
// are skipped so that the fuzzer spends its time on parsing.
constexpr int64_t kFuzzMaxPixels = int64_t{1} << 22;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto info = groupvit::probe_image(data, size);
  if (info.width > 0 && info.height > 0 && info.height > kFuzzMaxPixels / info.width) return 0;
  try {
    auto image = groupvit::decode_image_bytes(data, size, true, "fuzz input");
    if (image.pixels.size() != static_cast<size_t>(image.height * image.width * 3)) __builtin_trap();
  } catch (const groupvit::ImageError&) {
  }
  return 0;
}
