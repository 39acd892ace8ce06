// Minimal paletted PNG encoder (see png_writer.h): signature, IHDR, PLTE, one zlib IDAT, IEND.
#include "groupvit/formats/png_writer.h"

#include <zlib.h>

#include <stdexcept>

namespace groupvit {

namespace {

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  const uLong crc = crc32(0L, out.data() + start, static_cast<uInt>(out.size() - start));
  put_u32(out, static_cast<uint32_t>(crc));
}

}  // namespace

std::vector<uint8_t> encode_paletted_png(const std::vector<uint8_t>& indices, int64_t height, int64_t width,
                                         const std::vector<std::array<uint8_t, 3>>& palette) {
  if (height < 1 || width < 1 || height > 0x7fffffff || width > 0x7fffffff)
    throw std::invalid_argument("paletted PNG: bad size " + std::to_string(width) + "x" + std::to_string(height));
  if (static_cast<int64_t>(indices.size()) != height * width)
    throw std::invalid_argument("paletted PNG: " + std::to_string(indices.size()) + " indices for " +
                                std::to_string(width) + "x" + std::to_string(height));
  if (palette.empty() || palette.size() > 256)
    throw std::invalid_argument("paletted PNG: palette needs 1..256 entries");
  for (uint8_t v : indices)
    if (v >= palette.size())
      throw std::invalid_argument("paletted PNG: index " + std::to_string(v) + " outside the palette");

  // Filter type 0 (none) on each row: label maps compress well without prediction.
  std::vector<uint8_t> raw;
  raw.reserve(static_cast<size_t>(height * (width + 1)));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), indices.begin() + y * width, indices.begin() + (y + 1) * width);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> packed(packed_size);
  if (compress2(packed.data(), &packed_size, raw.data(), static_cast<uLong>(raw.size()), 6) != Z_OK)
    throw std::runtime_error("paletted PNG: zlib compression failed");
  packed.resize(packed_size);

  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_u32(ihdr, static_cast<uint32_t>(width));
  put_u32(ihdr, static_cast<uint32_t>(height));
  ihdr.insert(ihdr.end(), {8, 3, 0, 0, 0});  // bit depth 8, colour type 3, deflate, filter 0, no interlace
  put_chunk(out, "IHDR", ihdr);
  std::vector<uint8_t> plte;
  for (const auto& c : palette) plte.insert(plte.end(), c.begin(), c.end());
  put_chunk(out, "PLTE", plte);
  put_chunk(out, "IDAT", packed);
  put_chunk(out, "IEND", {});
  return out;
}

std::vector<std::array<uint8_t, 3>> label_palette(int entries) {
  std::vector<std::array<uint8_t, 3>> palette(static_cast<size_t>(entries));
  for (int i = 0; i < entries; ++i) {
    int label = i;
    std::array<uint8_t, 3> c = {0, 0, 0};
    for (int bit = 7; bit >= 0 && label; --bit, label >>= 3) {
      c[0] |= static_cast<uint8_t>(((label >> 0) & 1) << bit);
      c[1] |= static_cast<uint8_t>(((label >> 1) & 1) << bit);
      c[2] |= static_cast<uint8_t>(((label >> 2) & 1) << bit);
    }
    palette[static_cast<size_t>(i)] = c;
  }
  return palette;
}

}  // namespace groupvit
