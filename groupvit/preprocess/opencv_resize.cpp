// OpenCV's 8-bit INTER_LINEAR resize, reproduced bit for bit (see image_preprocess.h): the resize
// of mmcv's imrescale, which the NVlabs evaluation pipeline runs. Our own code rather than a call
// into OpenCV because the core library builds without OpenCV (the GPU machine has no OpenCV headers);
// test/opencv_resize_test.py compares it with cv2.resize on odd sizes, up and down, grey and colour.
//
// What OpenCV does (modules/imgproc/src/resize.cpp, cv::hal::resize) for CV_8U and INTER_LINEAR:
// - the same size: a copy; exactly half the size on both axes: INTER_AREA's 2x2 mean, (sum + 2) >> 2;
// - otherwise separable fixed point: per output column, src x = (dx + 0.5) * scale - 0.5 in float,
//   weights (1 - f, f) rounded to 11 bits; columns left of the image or at its last column take the
//   edge pixel alone. Rows the same, except that the weights of rows outside the image are kept and
//   the row index is clamped. The horizontal pass gives exact int sums; the vertical pass rounds as
//   OpenCV's vector code does (VResizeLinearVec_32s8u): ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16),
//   then (+ 2) >> 2. resize.cpp's scalar formula, (S0 * b0 + S1 * b1 + 2^21) >> 22, rounds some values
//   one higher, but cv2.resize (opencv-python 4.14, x86-64) gives the vector formula's value for every
//   element, row tails included, so this code uses it throughout (parity.image: 220 sizes, grey and colour).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "groupvit/preprocess/image_preprocess.h"

namespace groupvit {
namespace {

constexpr int kCoefBits = 11;  // INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;

// saturate_cast<short>(float): round to nearest, ties to even (cvRound).
int16_t fixed_weight(float weight) { return static_cast<int16_t>(std::nearbyint(weight * kCoefScale)); }

struct Taps {
  std::vector<int64_t> index;  // first source pixel (already clamped)
  std::vector<int16_t> w0, w1;
};

// Each output pixel's first source pixel and weights along one axis. Columns clamp at the edges
// (the edge pixel alone, weight 2048); rows keep the weights of a position outside the image, and
// the caller clamps the row index.
Taps axis_taps(int64_t src, int64_t dst, double scale, bool clamp_edges) {
  Taps t;
  for (int64_t d = 0; d < dst; ++d) {
    float f = static_cast<float>((static_cast<double>(d) + 0.5) * scale - 0.5);
    int64_t s = static_cast<int64_t>(std::floor(f));
    f -= static_cast<float>(s);
    if (clamp_edges && s < 0) f = 0, s = 0;
    if (clamp_edges && s >= src - 1) f = 0, s = src - 1;
    t.index.push_back(s);
    t.w0.push_back(fixed_weight(1.f - f));
    t.w1.push_back(fixed_weight(f));
  }
  return t;
}

// One source row through the column taps: exact int sums (pixel * weight).
void horizontal(const uint8_t* row, const Taps& columns, int64_t channels, int32_t* out) {
  const auto width = static_cast<int64_t>(columns.index.size());
  for (int64_t d = 0; d < width; ++d) {
    const uint8_t* p = row + columns.index[static_cast<size_t>(d)] * channels;
    const int32_t a0 = columns.w0[static_cast<size_t>(d)], a1 = columns.w1[static_cast<size_t>(d)];
    for (int64_t c = 0; c < channels; ++c) {
      out[d * channels + c] = p[c] * a0 + (a1 != 0 ? p[c + channels] * a1 : 0);
    }
  }
}

uint8_t saturate_u8(int32_t v) { return static_cast<uint8_t>(std::clamp(v, 0, 255)); }

// mul_hi of OpenCV's 16-bit lanes: the high half of the 32-bit product, arithmetic shift.
int32_t mul_hi16(int32_t a, int32_t b) { return (a * b) >> 16; }

int16_t saturate_i16(int32_t v) { return static_cast<int16_t>(std::clamp(v, -32768, 32767)); }

void vertical(const int32_t* s0, const int32_t* s1, int16_t b0, int16_t b1, int64_t width, uint8_t* out) {
  for (int64_t x = 0; x < width; ++x) {
    const int32_t t = saturate_i16(mul_hi16(saturate_i16(s0[x] >> 4), b0) + mul_hi16(saturate_i16(s1[x] >> 4), b1));
    out[x] = saturate_u8((t + 2) >> 2);
  }
}

RgbImage half_size_mean(const RgbImage& src, int64_t out_width, int64_t out_height) {
  RgbImage out(out_height, out_width);
  for (int64_t y = 0; y < out_height; ++y) {
    const uint8_t* r0 = src.row(2 * y);
    const uint8_t* r1 = src.row(2 * y + 1);
    uint8_t* d = out.row(y);
    for (int64_t x = 0; x < out_width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int64_t i = 2 * x * 3 + c;
        d[x * 3 + c] = static_cast<uint8_t>((r0[i] + r0[i + 3] + r1[i] + r1[i + 3] + 2) >> 2);
      }
    }
  }
  return out;
}

}  // namespace

RgbImage resize_opencv_linear(const RgbImage& src, int64_t out_width, int64_t out_height) {
  check_image_size(src.height, src.width, "resize input");
  check_image_size(out_height, out_width, "resize output");
  if (src.pixels.size() != static_cast<size_t>(src.height * src.width * 3))
    throw ImageError("resize input: pixel buffer does not hold height * width * 3 bytes");
  if (out_width == src.width && out_height == src.height) {
    RgbImage out = src;
    out.transparent_color.reset();
    return out;
  }
  // cv::resize with a destination size: inv_scale = dst / src, scale = 1 / inv_scale (both double).
  const double scale_x = 1.0 / (static_cast<double>(out_width) / static_cast<double>(src.width));
  const double scale_y = 1.0 / (static_cast<double>(out_height) / static_cast<double>(src.height));
  const bool half_x = std::abs(scale_x - 2.0) < 2.220446049250313e-16;
  const bool half_y = std::abs(scale_y - 2.0) < 2.220446049250313e-16;
  if (half_x && half_y) return half_size_mean(src, out_width, out_height);

  const auto columns = axis_taps(src.width, out_width, scale_x, /*clamp_edges=*/true);
  const auto rows = axis_taps(src.height, out_height, scale_y, /*clamp_edges=*/false);
  const int64_t width = out_width * 3;
  // The horizontal pass of each source row, computed once it is first needed (rows come in order).
  std::vector<int32_t> buffer0(static_cast<size_t>(width)), buffer1(static_cast<size_t>(width));
  int64_t row0 = -1, row1 = -1;
  RgbImage out(out_height, out_width);
  for (int64_t y = 0; y < out_height; ++y) {
    const int64_t s = rows.index[static_cast<size_t>(y)];
    const int64_t want0 = std::clamp<int64_t>(s, 0, src.height - 1);
    const int64_t want1 = std::clamp<int64_t>(s + 1, 0, src.height - 1);
    if (want0 != row0) {
      if (want0 == row1) {
        std::swap(buffer0, buffer1);
        std::swap(row0, row1);
      } else {
        horizontal(src.row(want0), columns, 3, buffer0.data());
        row0 = want0;
      }
    }
    if (want1 != row1) {
      if (want1 == row0) {
        buffer1 = buffer0;
      } else {
        horizontal(src.row(want1), columns, 3, buffer1.data());
      }
      row1 = want1;
    }
    vertical(buffer0.data(), buffer1.data(), rows.w0[static_cast<size_t>(y)], rows.w1[static_cast<size_t>(y)], width,
             out.row(y));
  }
  return out;
}

}  // namespace groupvit
