// Image decoding: JPEG, PNG, BMP, TIFF and WebP files or bytes into RgbImage, giving the pixels that
// transformers' load_image gives (Pillow: Image.open, ImageOps.exif_transpose, convert("RGB")). Built with
// OpenCV's codecs in the optional groupvit_image target; the core library never needs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "groupvit/preprocess/rgb_image.h"

namespace cv {
class Mat;
}

namespace groupvit {

enum class ImageFormat { kUnknown, kJpeg, kPng, kBmp, kTiff, kWebp };

const char* image_format_name(ImageFormat format);

// What the container says before any pixel is decoded. width/height are 0 where the header could not be read
// (the decoder then reports the problem); orientation is the EXIF value 1..8 Pillow would act on, else 1.
struct ImageFileInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int64_t width = 0;
  int64_t height = 0;
  int orientation = 1;
};

// Reads format, size and orientation from the container: the EXIF Orientation tag (JPEG APP1, PNG eXIf,
// WebP EXIF, TIFF IFD0), else an XMP tiff:Orientation, as Pillow's getexif does. Never throws.
ImageFileInfo probe_image(const uint8_t* data, size_t size);

// Decodes an image the way Pillow's convert("RGB") sees it: grey replicated to RGB, alpha dropped without
// compositing, palettes expanded, 16-bit colour reduced to its high byte, 16-bit grey clipped at 255 (Pillow's
// I;16 -> RGB conversion), a PNG tRNS colour key kept in transparent_color, and the EXIF orientation applied
// unless `apply_exif_orientation` is false (TIFF files are always oriented: both OpenCV and Pillow do it while
// loading). CMYK JPEGs are converted by OpenCV, which rounds differently from Pillow (at most one level).
// Throws ImageError naming `name` (or `path`) and the reason: missing or empty file, unknown format,
// truncated or corrupt data, 8-bit TIFF with alpha (OpenCV premultiplies it), or more than kMaxImagePixels
// pixels (checked from the header before decoding).
RgbImage decode_image_file(const std::string& path, bool apply_exif_orientation = true);
RgbImage decode_image_bytes(const uint8_t* data, size_t size, bool apply_exif_orientation = true,
                            const std::string& name = "<image bytes>");
RgbImage decode_image_bytes(const std::vector<uint8_t>& bytes, bool apply_exif_orientation = true,
                            const std::string& name = "<image bytes>");

// An OpenCV frame in OpenCV's channel order (8-bit BGR, BGRA or grey) as RGB, the way
// Pillow's convert("RGB") treats the same pixels (alpha dropped): the conversion decoding uses.
// Throws ImageError for other depths or channel counts, or an empty Mat.
RgbImage rgb_from_mat(const cv::Mat& bgr);

}  // namespace groupvit
