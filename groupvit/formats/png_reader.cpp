#include "groupvit/formats/png_reader.h"

#include <zlib.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace groupvit {

namespace {

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

int paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// Label maps larger than this are refused rather than allocated (VOC/COCO maps are < 1 MP).
constexpr uint64_t kMaxPixels = uint64_t{1} << 28;

}  // namespace

LabelMap decode_label_png(const uint8_t* data, size_t size, const std::string& source) {
  auto fail = [&](const std::string& what) -> void { throw std::runtime_error(source + ": " + what); };
  static const std::array<uint8_t, 8> kSignature = {137, 80, 78, 71, 13, 10, 26, 10};
  if (size < 8 || std::memcmp(data, kSignature.data(), 8) != 0) fail("not a PNG file");
  size_t pos = 8;
  uint32_t width = 0, height = 0;
  int bit_depth = 0, colour_type = -1;
  bool seen_header = false, seen_end = false;
  std::vector<uint8_t> compressed;
  while (!seen_end) {
    if (size - pos < 12) fail("truncated PNG (chunk header past the end of the file)");
    const uint32_t length = be32(data + pos);
    const std::string type(reinterpret_cast<const char*>(data + pos + 4), 4);
    if (length > size - pos - 12) fail("truncated PNG (chunk " + type + " runs past the end of the file)");
    const uint8_t* body = data + pos + 8;
    if (type == "IHDR") {
      if (length != 13) fail("malformed IHDR chunk");
      width = be32(body);
      height = be32(body + 4);
      bit_depth = body[8];
      colour_type = body[9];
      if (body[12] != 0) fail("interlaced PNG label maps are not supported");
      seen_header = true;
    } else if (type == "IDAT") {
      compressed.insert(compressed.end(), body, body + length);
    } else if (type == "IEND") {
      seen_end = true;
    }
    pos += 12 + static_cast<size_t>(length);
  }
  if (!seen_header) fail("PNG without IHDR chunk");
  const bool grey = colour_type == 0 && bit_depth == 8;
  const bool palette = colour_type == 3 && (bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8);
  if (!grey && !palette)
    fail("a label map must be an 8-bit grey or a paletted PNG (colour type " + std::to_string(colour_type) + ", " +
         std::to_string(bit_depth) + " bits given)");
  if (width == 0 || height == 0 || uint64_t{width} * height > kMaxPixels)
    fail("label map of " + std::to_string(width) + "x" + std::to_string(height) + " pixels is empty or too large");
  const size_t row_bytes = (static_cast<size_t>(width) * bit_depth + 7) / 8;
  std::vector<uint8_t> raw((row_bytes + 1) * height);
  uLongf raw_size = static_cast<uLongf>(raw.size());
  if (uncompress(raw.data(), &raw_size, compressed.data(), static_cast<uLong>(compressed.size())) != Z_OK ||
      raw_size != raw.size())
    fail("damaged PNG image data");

  LabelMap out;
  out.height = height;
  out.width = width;
  out.labels.resize(static_cast<size_t>(width) * height);
  std::vector<uint8_t> previous(row_bytes, 0), row(row_bytes);
  for (size_t y = 0; y < height; ++y) {
    const uint8_t filter = raw[y * (row_bytes + 1)];
    const uint8_t* in = raw.data() + y * (row_bytes + 1) + 1;
    for (size_t x = 0; x < row_bytes; ++x) {
      const int a = x > 0 ? row[x - 1] : 0, b = previous[x], c = x > 0 ? previous[x - 1] : 0;
      int predicted = 0;
      switch (filter) {
        case 0:
          predicted = 0;
          break;
        case 1:
          predicted = a;
          break;
        case 2:
          predicted = b;
          break;
        case 3:
          predicted = (a + b) / 2;
          break;
        case 4:
          predicted = paeth(a, b, c);
          break;
        default:
          fail("damaged PNG (unknown row filter " + std::to_string(filter) + ")");
      }
      row[x] = static_cast<uint8_t>(in[x] + predicted);
    }
    uint8_t* dst = out.labels.data() + y * width;
    if (bit_depth == 8) {
      std::memcpy(dst, row.data(), width);
    } else {
      const int per_byte = 8 / bit_depth, mask = (1 << bit_depth) - 1;
      for (size_t x = 0; x < width; ++x)
        dst[x] =
            static_cast<uint8_t>((row[x / per_byte] >> (8 - bit_depth * (1 + static_cast<int>(x % per_byte)))) & mask);
    }
    std::swap(previous, row);
  }
  return out;
}

LabelMap read_label_png(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open label map");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_label_png(bytes.data(), bytes.size(), path);
}

}  // namespace groupvit
