// Decodes image files into RgbImage with OpenCV's codecs, reproducing what transformers' load_image returns
// (Pillow: open, exif_transpose, convert("RGB")). OpenCV only decodes pixels: the container headers (size limit,
// EXIF/XMP orientation, PNG colour key) are read here so that every conversion step is explicit and matches Pillow.
#include "groupvit/image/image_io.h"

#include <webp/decode.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <stdexcept>

namespace groupvit {
namespace {

// ---- bounds-checked reads -------------------------------------------------------------------------------

class ByteView {
 public:
  ByteView(const uint8_t* data, size_t size) : d_(data), n_(size) {}
  size_t size() const { return n_; }
  const uint8_t* data() const { return d_; }
  bool has(size_t offset, size_t length) const { return offset <= n_ && length <= n_ - offset; }
  bool starts_with(size_t offset, const char* text) const {
    const size_t len = std::strlen(text);
    return has(offset, len) && std::memcmp(d_ + offset, text, len) == 0;
  }
  // Callers check has() first.
  uint32_t u8(size_t o) const { return d_[o]; }
  uint32_t be16(size_t o) const { return (u8(o) << 8) | u8(o + 1); }
  uint32_t le16(size_t o) const { return u8(o) | (u8(o + 1) << 8); }
  uint32_t be32(size_t o) const { return (be16(o) << 16) | be16(o + 2); }
  uint32_t le32(size_t o) const { return le16(o) | (le16(o + 2) << 16); }
  ByteView sub(size_t offset, size_t length) const { return ByteView(d_ + offset, length); }

 private:
  const uint8_t* d_;
  size_t n_;
};

// ---- EXIF / XMP orientation, as Pillow's Image.getexif reads it ----------------------------------------

struct TiffIfd0 {
  bool valid = false;  // a TIFF header and a readable IFD0
  int64_t width = 0;
  int64_t height = 0;
  int orientation = -1;             // -1: the tag is absent
  bool alpha_extra_sample = false;  // ExtraSamples says associated (1) or unassociated (2) alpha
};

// Reads the first image file directory of a classic TIFF structure (a TIFF file, or an EXIF payload).
TiffIfd0 parse_tiff_ifd0(ByteView b) {
  TiffIfd0 out;
  if (!b.has(0, 8)) return out;
  bool little;
  if (b.starts_with(0, "II") && b.le16(2) == 42) {
    little = true;
  } else if (b.starts_with(0, "MM") && b.be16(2) == 42) {
    little = false;
  } else {
    return out;  // not TIFF, or BigTIFF (not parsed: its size is left to the decoder's own limit)
  }
  auto r16 = [&](size_t o) { return little ? b.le16(o) : b.be16(o); };
  auto r32 = [&](size_t o) { return little ? b.le32(o) : b.be32(o); };
  const size_t ifd = r32(4);
  if (!b.has(ifd, 2)) return out;
  const size_t entries = r16(ifd);
  out.valid = true;
  for (size_t i = 0; i < entries; ++i) {
    const size_t e = ifd + 2 + i * 12;
    if (!b.has(e, 12)) break;
    const uint32_t tag = r16(e), type = r16(e + 2), count = r32(e + 4);
    if (tag == 338 && type == 3 && count <= 2) {  // ExtraSamples, SHORTs stored inline
      for (uint32_t k = 0; k < count; ++k) out.alpha_extra_sample |= r16(e + 8 + 2 * k) == 1 || r16(e + 8 + 2 * k) == 2;
    }
    if (count != 1) continue;  // Pillow would see a tuple, which no orientation rule matches
    int64_t value;
    if (type == 3) {
      value = r16(e + 8);  // SHORT
    } else if (type == 4) {
      value = r32(e + 8);  // LONG
    } else if (type == 1) {
      value = b.u8(e + 8);  // BYTE
    } else {
      continue;
    }
    if (tag == 256) out.width = value;
    if (tag == 257) out.height = value;
    if (tag == 274) out.orientation = static_cast<int>(std::min<int64_t>(value, 1000));
  }
  return out;
}

// Orientation tag of an EXIF payload (optionally prefixed by "Exif\0\0", once or twice); -1 when absent.
int exif_orientation(const std::vector<uint8_t>& exif) {
  const ByteView b(exif.data(), exif.size());
  size_t skip = 0;
  for (int i = 0; i < 2 && b.has(skip, 6) && std::memcmp(exif.data() + skip, "Exif\0\0", 6) == 0; ++i) skip += 6;
  return parse_tiff_ifd0(b.sub(skip, b.size() - skip)).orientation;
}

// Pillow's fallback when EXIF has no orientation: the first match of tiff:Orientation(="|>)([0-9]) in XMP;
// -1 when there is none.
int xmp_orientation(const std::string& xmp) {
  const std::string key = "tiff:Orientation";
  for (size_t pos = xmp.find(key); pos != std::string::npos; pos = xmp.find(key, pos + 1)) {
    size_t p = pos + key.size();
    if (xmp.compare(p, 2, "=\"") == 0) {
      p += 2;
    } else if (xmp.compare(p, 1, ">") == 0) {
      p += 1;
    } else {
      continue;
    }
    if (p < xmp.size() && xmp[p] >= '0' && xmp[p] <= '9') return xmp[p] - '0';
  }
  return -1;
}

struct Metadata {
  ImageFileInfo info;
  std::vector<uint8_t> exif;
  bool has_exif = false;
  std::string xmp;
  size_t jpeg_scan_start = 0;  // offset of the first start-of-scan marker; 0 if none was found
  std::string png_overrun;     // a PNG chunk declaring more bytes than the file holds: what and where
  bool tiff_alpha = false;
  std::optional<std::array<uint8_t, 3>> transparent_color;  // PNG tRNS colour key, as Pillow derives it
};

void probe_jpeg(ByteView b, Metadata& m) {
  size_t p = 2;
  while (b.has(p, 2)) {
    if (b.u8(p) != 0xFF) return;                         // lost sync: leave the rest to the decoder
    while (b.has(p + 1, 1) && b.u8(p + 1) == 0xFF) ++p;  // fill bytes
    if (!b.has(p + 1, 1)) return;
    const uint32_t marker = b.u8(p + 1);
    p += 2;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // markers without a length
    if (marker == 0xDA) m.jpeg_scan_start = p;
    if (marker == 0xD9 || marker == 0xDA) return;  // end of image, start of scan
    if (!b.has(p, 2)) return;
    const size_t length = b.be16(p);
    if (length < 2 || !b.has(p, length)) return;
    const ByteView seg = b.sub(p + 2, length - 2);
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof && seg.has(0, 5)) {
      m.info.height = seg.be16(1);
      m.info.width = seg.be16(3);
    } else if (marker == 0xE1 && seg.has(0, 6) && std::memcmp(seg.data(), "Exif\0\0", 6) == 0) {
      // Pillow concatenates the payloads of several Exif segments after the first one's header.
      m.exif.insert(m.exif.end(), seg.data() + (m.has_exif ? 6 : 0), seg.data() + seg.size());
      m.has_exif = true;
    } else if (marker == 0xE1 && seg.starts_with(0, "http://ns.adobe.com/xap/1.0/")) {
      const size_t header = std::strlen("http://ns.adobe.com/xap/1.0/") + 1;
      if (seg.has(0, header)) m.xmp.assign(seg.data() + header, seg.data() + seg.size());
    }
    p += length;
  }
}

// Pillow keeps a PNG tRNS colour key in info["transparency"] through convert("RGB") for palette images with a
// single fully transparent entry (the key is that entry's colour), and for grey and RGB images (the stored
// value, compared with the 8-bit pixels as is). Palettes with graded alpha, bilevel and 16-bit grey images
// end up without a usable key.
std::optional<std::array<uint8_t, 3>> png_colour_key(uint32_t colour_type, uint32_t depth, ByteView palette,
                                                     ByteView trns) {
  if (colour_type == 3) {
    size_t zero = trns.size();
    for (size_t i = 0; i < trns.size(); ++i) {
      if (trns.u8(i) == 0x00 && zero == trns.size()) {
        zero = i;
      } else if (trns.u8(i) != 0xFF) {
        return std::nullopt;  // graded alpha: Pillow drops the transparency on convert("RGB")
      }
    }
    if (zero == trns.size() || !palette.has(zero * 3, 3)) return std::nullopt;
    return std::array<uint8_t, 3>{static_cast<uint8_t>(palette.u8(zero * 3)),
                                  static_cast<uint8_t>(palette.u8(zero * 3 + 1)),
                                  static_cast<uint8_t>(palette.u8(zero * 3 + 2))};
  }
  if (colour_type == 0 && depth >= 2 && depth <= 8 && trns.has(0, 2) && trns.be16(0) <= 255) {
    const auto v = static_cast<uint8_t>(trns.be16(0));
    return std::array<uint8_t, 3>{v, v, v};
  }
  if (colour_type == 2 && trns.has(0, 6) && trns.be16(0) <= 255 && trns.be16(2) <= 255 && trns.be16(4) <= 255) {
    return std::array<uint8_t, 3>{static_cast<uint8_t>(trns.be16(0)), static_cast<uint8_t>(trns.be16(2)),
                                  static_cast<uint8_t>(trns.be16(4))};
  }
  return std::nullopt;
}

// ImageMagick's "Raw profile type exif" text: "\nexif\n  <length>\n<hex lines>". Pillow decodes the hex after
// the third newline.
std::vector<uint8_t> raw_profile_bytes(const std::string& text) {
  size_t start = 0;
  for (int i = 0; i < 3 && start != std::string::npos; ++i) {
    start = text.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  std::vector<uint8_t> bytes;
  int high = -1;
  for (size_t i = start; start != std::string::npos && i < text.size(); ++i) {
    const char c = text[i];
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    if (v < 0) continue;  // line breaks
    if (high < 0) {
      high = v;
    } else {
      bytes.push_back(static_cast<uint8_t>(high * 16 + v));
      high = -1;
    }
  }
  return bytes;
}

void probe_png(ByteView b, Metadata& m) {
  uint32_t colour_type = 0, depth = 0;
  ByteView palette(nullptr, 0), trns(nullptr, 0);
  bool has_trns = false;
  size_t p = 8;
  while (b.has(p, 8)) {
    const size_t length = b.be32(p);
    const size_t type = p + 4;
    if (!b.has(p + 8, length)) {
      // libpng allocates a chunk's declared length before reading it (seen: 2 GB for a 66-byte file),
      // so such a file is refused here, before the decoder sees it.
      m.png_overrun = "chunk '" + std::string(reinterpret_cast<const char*>(b.data() + type), 4) + "' at byte " +
                      std::to_string(p) + " declares " + std::to_string(length) + " bytes; " +
                      std::to_string(b.size() > p + 8 ? b.size() - p - 8 : 0) + " follow";
      return;
    }
    const ByteView data = b.sub(p + 8, length);
    const std::string text_key(reinterpret_cast<const char*>(data.data()),
                               strnlen(reinterpret_cast<const char*>(data.data()), data.size()));
    if (b.starts_with(type, "IHDR") && data.has(0, 10)) {
      m.info.width = data.be32(0);
      m.info.height = data.be32(4);
      depth = data.u8(8);
      colour_type = data.u8(9);
    } else if (b.starts_with(type, "PLTE")) {
      palette = data;
    } else if (b.starts_with(type, "tRNS")) {
      trns = data;
      has_trns = true;
    } else if (b.starts_with(type, "eXIf")) {
      m.exif.assign(data.data(), data.data() + data.size());
      m.has_exif = true;
    } else if (b.starts_with(type, "tEXt") && text_key.size() < data.size()) {
      const char* value = reinterpret_cast<const char*>(data.data()) + text_key.size() + 1;
      const std::string text(value, data.size() - text_key.size() - 1);
      if (text_key == "exif") {
        m.exif.assign(text.begin(), text.end());
        m.has_exif = true;
      } else if (text_key == "XML:com.adobe.xmp") {
        m.xmp = text;
      } else if (text_key == "Raw profile type exif" && !m.has_exif) {
        m.exif = raw_profile_bytes(text);
        m.has_exif = true;
      }
    } else if (b.starts_with(type, "iTXt") && text_key == "XML:com.adobe.xmp" && data.has(text_key.size(), 3)) {
      // keyword \0 compression-flag method language \0 translated-keyword \0 text; compressed XMP is not read.
      size_t q = text_key.size() + 1;
      const bool compressed = data.u8(q) != 0;
      q += 2;
      for (int field = 0; field < 2 && q < data.size(); ++field) {
        while (q < data.size() && data.u8(q) != 0) ++q;
        ++q;
      }
      if (!compressed && q <= data.size()) m.xmp.assign(data.data() + q, data.data() + data.size());
    } else if (b.starts_with(type, "IEND")) {
      break;
    }
    p += 12 + length;
  }
  if (has_trns) m.transparent_color = png_colour_key(colour_type, depth, palette, trns);
}

void probe_webp(ByteView b, Metadata& m) {
  size_t p = 12;
  while (b.has(p, 8)) {
    const size_t length = b.le32(p + 4);
    const size_t at = p + 8;
    if (!b.has(at, length)) return;
    const ByteView data = b.sub(at, length);
    if (b.starts_with(p, "VP8 ") && data.has(6, 4)) {
      m.info.width = data.le16(6) & 0x3FFF;
      m.info.height = data.le16(8) & 0x3FFF;
    } else if (b.starts_with(p, "VP8L") && data.has(0, 5) && data.u8(0) == 0x2F) {
      const uint32_t bits = data.le32(1);
      m.info.width = (bits & 0x3FFF) + 1;
      m.info.height = ((bits >> 14) & 0x3FFF) + 1;
    } else if (b.starts_with(p, "VP8X") && data.has(0, 10)) {
      m.info.width = (data.u8(4) | (data.u8(5) << 8) | (data.u8(6) << 16)) + 1;
      m.info.height = (data.u8(7) | (data.u8(8) << 8) | (data.u8(9) << 16)) + 1;
    } else if (b.starts_with(p, "EXIF") && !m.has_exif) {
      m.exif.assign(data.data(), data.data() + data.size());
      m.has_exif = true;
    } else if (b.starts_with(p, "XMP ") && m.xmp.empty()) {
      m.xmp.assign(data.data(), data.data() + data.size());
    }
    p = at + length + (length & 1);  // chunks are padded to an even size
  }
}

void probe_bmp(ByteView b, Metadata& m) {
  if (!b.has(14, 4)) return;
  const uint32_t header = b.le32(14);
  if (header == 12 && b.has(18, 4)) {  // OS/2 BITMAPCOREHEADER
    m.info.width = b.le16(18);
    m.info.height = b.le16(20);
  } else if (header >= 40 && b.has(18, 8)) {
    m.info.width = static_cast<int32_t>(b.le32(18));
    m.info.height = static_cast<int32_t>(b.le32(22));
    if (m.info.height < 0) m.info.height = -m.info.height;  // top-down rows
  }
}

Metadata read_metadata(const uint8_t* data, size_t size) {
  Metadata m;
  int tiff_orientation = -1;
  const ByteView b(data, size);
  if (b.has(0, 3) && b.u8(0) == 0xFF && b.u8(1) == 0xD8 && b.u8(2) == 0xFF) {
    m.info.format = ImageFormat::kJpeg;
    probe_jpeg(b, m);
  } else if (b.starts_with(0, "\x89PNG\r\n\x1a\n")) {
    m.info.format = ImageFormat::kPng;
    probe_png(b, m);
  } else if (b.starts_with(0, "RIFF") && b.starts_with(8, "WEBP")) {
    m.info.format = ImageFormat::kWebp;
    probe_webp(b, m);
  } else if (b.starts_with(0, "BM")) {
    m.info.format = ImageFormat::kBmp;
    probe_bmp(b, m);
  } else if (b.has(0, 4) &&
             ((b.starts_with(0, "II") && b.le16(2) == 42) || (b.starts_with(0, "MM") && b.be16(2) == 42))) {
    m.info.format = ImageFormat::kTiff;
    const TiffIfd0 ifd = parse_tiff_ifd0(b);
    m.info.width = ifd.width;
    m.info.height = ifd.height;
    tiff_orientation = ifd.orientation;  // a TIFF's own IFD0 is its EXIF for Pillow's getexif
    m.tiff_alpha = ifd.alpha_extra_sample;
  }
  int orientation = m.has_exif ? exif_orientation(m.exif) : tiff_orientation;
  if (orientation == -1 && !m.xmp.empty()) orientation = xmp_orientation(m.xmp);  // only without an EXIF tag
  // Pillow acts on 2..8 only; 1, a missing tag and any other value leave the image as stored.
  m.info.orientation = (orientation >= 1 && orientation <= 8) ? orientation : 1;
  return m;
}

// ---- pixels ---------------------------------------------------------------------------------------------

// JPEG decoders conceal truncation (libjpeg pads missing rows with grey) where Pillow raises "image file is
// truncated". Entropy-coded data cannot contain FF D9, so a JPEG without it after its first scan is cut short
// (searching from the scan skips the end marker of an EXIF thumbnail).
bool jpeg_is_complete(const uint8_t* data, size_t size, size_t scan_start) {
  if (scan_start == 0) return false;
  for (size_t i = scan_start; i + 1 < size; ++i) {
    if (data[i] == 0xFF && data[i + 1] == 0xD9) return true;
  }
  return false;
}

// OpenCV picks a decoder by signature, first match wins, and its WebP check (WebPGetFeatures on the first
// 32 bytes) is stricter than the RIFF/WEBP magic. Data that fails it is offered to the decoders further down
// the list, among them DICOM (GDCM: "DICM" at byte 128) and GDAL ("DTED" at byte 140), which decode through a
// temporary file and can abort the process: a fuzzed RIFF/WEBP file with "DICM" at 128 made GDCM fail an
// assert(). So a WebP file must pass OpenCV's own check before OpenCV sees it; the other four formats'
// checks in OpenCV are the magic numbers read_metadata already requires.
bool webp_header_accepted(const uint8_t* data, size_t size) {
  constexpr size_t kOpenCvWebpHeaderSize = 32;
  if (size < kOpenCvWebpHeaderSize) return false;
  WebPBitstreamFeatures features;
  return WebPGetFeatures(data, kOpenCvWebpHeaderSize, &features) == VP8_STATUS_OK;
}

// Pillow's convert("RGB") of what OpenCV decoded (BGR order, any depth): alpha is dropped, not composited.
RgbImage to_rgb(const cv::Mat& m, const std::string& name) {
  const int channels = m.channels();
  const int depth = m.depth();
  if (depth != CV_8U && depth != CV_16U) {
    throw ImageError(name + ": unsupported sample format (OpenCV depth " + std::to_string(depth) +
                     "); only 8- and 16-bit integer images are supported");
  }
  if (channels != 1 && channels != 3 && channels != 4) {
    throw ImageError(name + ": unsupported channel count " + std::to_string(channels));
  }
  RgbImage out(m.rows, m.cols);
  for (int y = 0; y < m.rows; ++y) {
    uint8_t* dst = out.row(y);
    for (int x = 0; x < m.cols; ++x) {
      uint32_t v[4] = {0, 0, 0, 0};
      if (depth == CV_8U) {
        const uint8_t* s = m.ptr<uint8_t>(y) + static_cast<size_t>(x) * channels;
        for (int c = 0; c < channels; ++c) v[c] = s[c];
      } else {
        const uint16_t* s = m.ptr<uint16_t>(y) + static_cast<size_t>(x) * channels;
        for (int c = 0; c < channels; ++c) {
          // Pillow's 16-bit grey ("I;16") -> RGB clips at 255; 16-bit colour modes keep the high byte.
          v[c] = channels == 1 ? std::min<uint32_t>(s[c], 255) : static_cast<uint32_t>(s[c] >> 8);
        }
      }
      if (channels == 1) {
        dst[x * 3 + 0] = dst[x * 3 + 1] = dst[x * 3 + 2] = static_cast<uint8_t>(v[0]);
      } else {
        dst[x * 3 + 0] = static_cast<uint8_t>(v[2]);
        dst[x * 3 + 1] = static_cast<uint8_t>(v[1]);
        dst[x * 3 + 2] = static_cast<uint8_t>(v[0]);
      }
    }
  }
  return out;
}

// Pillow's exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
// 7 transverse, 8 rotate 90 counter-clockwise.
cv::Mat apply_orientation(const cv::Mat& m, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2:
      cv::flip(m, out, 1);
      break;
    case 3:
      cv::rotate(m, out, cv::ROTATE_180);
      break;
    case 4:
      cv::flip(m, out, 0);
      break;
    case 5:
      cv::transpose(m, out);
      break;
    case 6:
      cv::rotate(m, out, cv::ROTATE_90_CLOCKWISE);
      break;
    case 7: {
      cv::Mat t;
      cv::transpose(m, t);
      cv::flip(t, out, -1);
      break;
    }
    case 8:
      cv::rotate(m, out, cv::ROTATE_90_COUNTERCLOCKWISE);
      break;
    default:
      out = m;
      break;
  }
  return out;
}

}  // namespace

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kTiff:
      return "TIFF";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kUnknown:
      break;
  }
  return "unknown";
}

ImageFileInfo probe_image(const uint8_t* data, size_t size) {
  if (data == nullptr || size == 0) return {};
  return read_metadata(data, size).info;
}

RgbImage rgb_from_mat(const cv::Mat& mat) {
  if (mat.empty()) throw ImageError("cv::Mat frame is empty");
  if (mat.depth() != CV_8U)
    throw ImageError("cv::Mat frame must be 8-bit per channel (got depth " + std::to_string(mat.depth()) + ")");
  const int channels = mat.channels();
  if (channels != 1 && channels != 3 && channels != 4)
    throw ImageError("cv::Mat frame must have 1, 3 or 4 channels (got " + std::to_string(channels) + ")");
  check_image_size(mat.rows, mat.cols, "cv::Mat frame");
  return to_rgb(mat, "cv::Mat frame");
}

RgbImage decode_image_bytes(const uint8_t* data, size_t size, bool apply_exif_orientation, const std::string& name) {
  if (data == nullptr || size == 0) throw ImageError(name + ": no data (0 bytes); not an image");
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw ImageError(name + ": " + std::to_string(size) + " bytes is more than the decoder accepts (2 GiB)");
  }
  const Metadata meta = read_metadata(data, size);
  const ImageFileInfo& info = meta.info;
  if (info.format == ImageFormat::kUnknown) {
    throw ImageError(name + ": not a recognised image (expected JPEG, PNG, BMP, TIFF or WebP data)");
  }
  const std::string what = name + " (" + image_format_name(info.format) + ")";
  // Refuse oversized images from the header, before the decoder allocates for them.
  if (info.width > 0 && info.height > 0) check_image_size(info.height, info.width, what);
  if (info.format == ImageFormat::kJpeg && !jpeg_is_complete(data, size, meta.jpeg_scan_start)) {
    throw ImageError(what + ": truncated JPEG (no end-of-image marker); the file is incomplete");
  }
  if (info.format == ImageFormat::kPng && !meta.png_overrun.empty()) {
    throw ImageError(what + ": truncated or corrupt PNG: " + meta.png_overrun);
  }
  if (info.format == ImageFormat::kWebp && !webp_header_accepted(data, size)) {
    throw ImageError(what + ": invalid or truncated WebP header; the file is corrupt");
  }
  cv::Mat decoded;
  try {
    // IMREAD_UNCHANGED keeps depth and channels and never applies EXIF orientation (done below, like Pillow).
    const cv::Mat buffer(1, static_cast<int>(size), CV_8U, const_cast<uint8_t*>(data));
    decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const std::exception& e) {  // cv::Exception, and the codec libraries' own types under OpenCV
    throw ImageError(what + ": cannot decode: " + e.what());
  }
  if (decoded.empty()) throw ImageError(what + ": cannot decode: the data is truncated or corrupt");
  check_image_size(decoded.rows, decoded.cols, what);
  if (info.format == ImageFormat::kTiff && meta.tiff_alpha && decoded.depth() == CV_8U) {
    throw ImageError(what + ": 8-bit TIFF with an alpha channel is not supported: OpenCV's TIFF reader " +
                     "premultiplies the colours by alpha, Pillow keeps them; convert the image to PNG");
  }
  // TIFF readers (libtiff in OpenCV, and Pillow's TIFF plugin) orient the image while loading it; the other
  // formats arrive as stored and are turned here, as Pillow's exif_transpose turns them.
  if (apply_exif_orientation && info.format != ImageFormat::kTiff) {
    decoded = apply_orientation(decoded, info.orientation);
  }
  RgbImage out = to_rgb(decoded, what);
  out.transparent_color = meta.transparent_color;
  return out;
}

RgbImage decode_image_bytes(const std::vector<uint8_t>& bytes, bool apply_exif_orientation, const std::string& name) {
  return decode_image_bytes(bytes.data(), bytes.size(), apply_exif_orientation, name);
}

RgbImage decode_image_file(const std::string& path, bool apply_exif_orientation) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw ImageError(path + ": image file not found");
  if (!std::filesystem::is_regular_file(status)) throw ImageError(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot open the image file (check permissions)");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size <= 0) throw ImageError(path + ": the file is empty (0 bytes); not an image");
  if (size > std::numeric_limits<int>::max()) {
    throw ImageError(path + ": " + std::to_string(size) + " bytes is more than the decoder accepts (2 GiB)");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) throw ImageError(path + ": read error");
  return decode_image_bytes(bytes, apply_exif_orientation, path);
}

}  // namespace groupvit
