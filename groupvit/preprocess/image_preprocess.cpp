// CLIPImageProcessor's Pillow path in C++: output-size rules, Pillow's convolution resampler reproduced bit for
// bit, transformers' center crop, and the float32 rescale/normalise arithmetic of its numpy code.
#include "groupvit/preprocess/image_preprocess.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "groupvit/formats/checksums.h"
#include "groupvit/formats/json_number.h"

namespace groupvit {

namespace {

// ---- Pillow's resampler (libImaging/Resample.c), re-derived from its documented algorithm ----------------

// Pillow keeps weights in fixed point with this many fractional bits: 32 bits minus 8 for the pixel value
// minus 2 for the sign and headroom of negative lobes.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kPi = 3.14159265358979323846;  // M_PI's value

struct Filter {
  double (*weight)(double);
  double support;  // half-width of the kernel at scale 1
};

double box_weight(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_weight(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_weight(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * kPi;
  // Pillow writes these two constants as float literals; keep them float to reproduce its weights.
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));
}

// Keys' cubic convolution with a = -0.5 (Pillow's choice; OpenCV and torch use -0.75).
double bicubic_weight(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}

double lanczos_weight(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

Filter filter_for(ResampleFilter filter) {
  switch (filter) {
    case ResampleFilter::kBox:
      return {box_weight, 0.5};
    case ResampleFilter::kBilinear:
      return {bilinear_weight, 1.0};
    case ResampleFilter::kHamming:
      return {hamming_weight, 1.0};
    case ResampleFilter::kBicubic:
      return {bicubic_weight, 2.0};
    case ResampleFilter::kLanczos:
      return {lanczos_weight, 3.0};
    case ResampleFilter::kNearest:
      break;
  }
  throw ImageError("resample filter " + std::to_string(static_cast<int>(filter)) +
                   " is not supported; use 1 (LANCZOS), 2 (BILINEAR), 3 (BICUBIC), 4 (BOX) or 5 (HAMMING)");
}

// For output pixels [begin, begin + count) of an axis resized from in_size to out_size: the first source pixel
// each reads, how many it reads, and their fixed-point weights (ksize slots per output pixel, unused ones zero).
// Every output pixel has its own weights, so computing a window of the axis gives exactly the full resize's values.
struct AxisWeights {
  int64_t ksize = 0;
  std::vector<int64_t> first;
  std::vector<int64_t> count;
  std::vector<int32_t> weights;
  int64_t size() const { return static_cast<int64_t>(first.size()); }
};

AxisWeights precompute_weights(int64_t in_size, int64_t out_size, int64_t begin, int64_t count, const Filter& filter) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  // When reducing, the kernel is stretched over `scale` source pixels: that is Pillow's antialiasing.
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter.support * filter_scale;
  AxisWeights out;
  out.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  out.first.resize(static_cast<size_t>(count));
  out.count.resize(static_cast<size_t>(count));
  out.weights.assign(static_cast<size_t>(count * out.ksize), 0);
  std::vector<double> k(static_cast<size_t>(out.ksize));
  const double inv_filter_scale = 1.0 / filter_scale;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t xx = begin + i;
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    // C casts truncate toward zero; the clamps make that agree with floor where it matters.
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double total = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      // Same association as Pillow: ((x + xmin) - center) + 0.5, all in double.
      const double w = filter.weight((static_cast<double>(x + xmin) - center + 0.5) * inv_filter_scale);
      k[static_cast<size_t>(x)] = w;
      total += w;
    }
    int32_t* fixed = out.weights.data() + i * out.ksize;
    for (int64_t x = 0; x < xmax; ++x) {
      double w = k[static_cast<size_t>(x)];
      if (total != 0.0) w /= total;
      // Round half away from zero into 22-bit fixed point, as Pillow's normalize_coeffs_8bpc does.
      const double scaled = w * static_cast<double>(1 << kPrecisionBits);
      fixed[x] = static_cast<int32_t>(w < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    out.first[static_cast<size_t>(i)] = xmin;
    out.count[static_cast<size_t>(i)] = xmax;
  }
  return out;
}

// Fixed-point accumulator back to 8 bits: the accumulator starts at one half (rounding), shifts, and clips.
inline uint8_t clip8(int64_t acc) {
  const int64_t v = acc >> kPrecisionBits;  // arithmetic shift: floor, negative stays negative
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

RgbImage resample_horizontal(const RgbImage& src, const AxisWeights& aw) {
  const int64_t out_width = aw.size();
  RgbImage dst(src.height, out_width);
  constexpr int64_t kHalf = int64_t{1} << (kPrecisionBits - 1);
  for (int64_t y = 0; y < src.height; ++y) {
    const uint8_t* in = src.row(y);
    uint8_t* out = dst.row(y);
    for (int64_t xx = 0; xx < out_width; ++xx) {
      const int64_t xmin = aw.first[static_cast<size_t>(xx)];
      const int64_t n = aw.count[static_cast<size_t>(xx)];
      const int32_t* k = aw.weights.data() + xx * aw.ksize;
      int64_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int64_t x = 0; x < n; ++x) {
        const uint8_t* p = in + (xmin + x) * 3;
        s0 += int64_t{p[0]} * k[x];
        s1 += int64_t{p[1]} * k[x];
        s2 += int64_t{p[2]} * k[x];
      }
      out[xx * 3 + 0] = clip8(s0);
      out[xx * 3 + 1] = clip8(s1);
      out[xx * 3 + 2] = clip8(s2);
    }
  }
  return dst;
}

RgbImage resample_vertical(const RgbImage& src, const AxisWeights& aw) {
  const int64_t out_height = aw.size();
  RgbImage dst(out_height, src.width);
  const int64_t row_values = src.width * 3;
  // Integer sums are exact, so accumulating row by row gives Pillow's per-pixel result while reading memory
  // sequentially.
  std::vector<int64_t> acc(static_cast<size_t>(row_values));
  for (int64_t yy = 0; yy < out_height; ++yy) {
    std::fill(acc.begin(), acc.end(), int64_t{1} << (kPrecisionBits - 1));
    const int64_t ymin = aw.first[static_cast<size_t>(yy)];
    const int64_t n = aw.count[static_cast<size_t>(yy)];
    const int32_t* k = aw.weights.data() + yy * aw.ksize;
    for (int64_t y = 0; y < n; ++y) {
      const uint8_t* in = src.row(ymin + y);
      const int64_t w = k[y];
      for (int64_t i = 0; i < row_values; ++i) acc[static_cast<size_t>(i)] += int64_t{in[i]} * w;
    }
    uint8_t* out = dst.row(yy);
    for (int64_t i = 0; i < row_values; ++i) out[i] = clip8(acc[static_cast<size_t>(i)]);
  }
  return dst;
}

// Pixels [x0, x0 + width) x [y0, y0 + height) of src, which must contain them.
RgbImage crop(const RgbImage& src, int64_t x0, int64_t y0, int64_t width, int64_t height) {
  if (x0 == 0 && y0 == 0 && width == src.width && height == src.height) return src;
  RgbImage out(height, width);
  for (int64_t y = 0; y < height; ++y) std::copy_n(src.row(y0 + y) + x0 * 3, width * 3, out.row(y));
  return out;
}

// Pixels [x0, x0 + width) x [y0, y0 + height) of Pillow's resize of src to out_width x out_height, computing only
// those (and one pass's intermediate for them): a crop after the resize costs only the cropped pixels.
RgbImage resize_window(const RgbImage& src, int64_t out_width, int64_t out_height, ResampleFilter filter, int64_t x0,
                       int64_t y0, int64_t width, int64_t height) {
  const Filter f = filter_for(filter);
  // Pillow skips the pass for an axis that keeps its size (its box is always the whole image here).
  const bool horizontal = out_width != src.width;
  const bool vertical = out_height != src.height;
  auto columns = [&] { return precompute_weights(src.width, out_width, x0, width, f); };
  auto rows = [&] { return precompute_weights(src.height, out_height, y0, height, f); };
  if (!horizontal && !vertical) return crop(src, x0, y0, width, height);
  if (!vertical) return resample_horizontal(crop(src, 0, y0, src.width, height), columns());
  if (!horizontal) return resample_vertical(crop(src, x0, 0, width, src.height), rows());
  // The order of the passes changes the rounding of the 8-bit intermediate. Pillow 13 runs the vertical pass
  // first when it removes more than twice as many rows as the horizontal pass removes columns, else the
  // horizontal one (older Pillow: always horizontal first). Found by testing Pillow 13.0.0 on some thousand size
  // pairs from 1 to 1000 pixels, all five filters, exact at every boundary tested; the fixtures' resize cases
  // (scripts/make_image_fixtures.py) keep checking it.
  const bool vertical_first = out_height < src.height && (src.height - out_height) > 2 * (src.width - out_width);
  if (vertical_first) {
    check_image_size(height, src.width, "resize intermediate");
    return resample_horizontal(resample_vertical(src, rows()), columns());
  }
  check_image_size(src.height, width, "resize intermediate");
  return resample_vertical(resample_horizontal(src, columns()), rows());
}

void check_rgb_image(const RgbImage& image, const char* what) {
  check_image_size(image.height, image.width, what);
  if (image.pixels.size() != static_cast<size_t>(image.height * image.width * 3)) {
    throw ImageError(std::string(what) + ": pixel buffer holds " + std::to_string(image.pixels.size()) +
                     " bytes, expected height * width * 3 = " + std::to_string(image.height * image.width * 3));
  }
}

// ---- preprocessor_config.json --------------------------------------------------------------------------

using json = nlohmann::json;

[[noreturn]] void config_fail(const std::string& source, const std::string& key, const std::string& why) {
  throw ImageError(source + ": key \"" + key + "\": " + why);
}

// Absent and null keys both mean "keep the default", as transformers treats them.
const json* find_key(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t as_int(const json& v, const std::string& source, const std::string& key) {
  if (const auto value = json_integer(v)) return *value;
  config_fail(source, key, "expected an integer, got " + v.dump());
}

void read_bool(const json& obj, const char* key, bool& out, const std::string& source) {
  if (const json* v = find_key(obj, key)) {
    if (!v->is_boolean()) config_fail(source, key, "expected true or false, got " + v->dump());
    out = v->get<bool>();
  }
}

void read_channels(const json& obj, const char* key, std::array<double, 3>& out, const std::string& source) {
  const json* v = find_key(obj, key);
  if (!v) return;
  if (v->is_number()) {  // a single value applies to every channel, as in transformers
    out.fill(v->get<double>());
    return;
  }
  if (!v->is_array() || v->size() != 3) config_fail(source, key, "expected a list of 3 numbers, got " + v->dump());
  for (size_t c = 0; c < 3; ++c) {
    if (!(*v)[c].is_number()) config_fail(source, key, "expected a list of 3 numbers, got " + v->dump());
    out[c] = (*v)[c].get<double>();
  }
}

// "size": an int (shortest edge, CLIP's legacy form), [height, width], or a dict with one of the key sets
// transformers accepts for CLIP.
void read_size(const json& obj, ImagePreprocessConfig& config, const std::string& source) {
  const json* v = find_key(obj, "size");
  if (!v) return;
  if (v->is_number()) {
    config.size_rule = SizeRule::kShortestEdge;
    config.shortest_edge = as_int(*v, source, "size");
    return;
  }
  if (v->is_array()) {
    if (v->size() != 2) config_fail(source, "size", "a list must be [height, width], got " + v->dump());
    config.size_rule = SizeRule::kHeightWidth;
    config.height = as_int((*v)[0], source, "size[0]");
    config.width = as_int((*v)[1], source, "size[1]");
    return;
  }
  if (!v->is_object()) config_fail(source, "size", "expected an integer, a list or an object, got " + v->dump());
  const json* shortest = find_key(*v, "shortest_edge");
  const json* longest = find_key(*v, "longest_edge");
  const json* h = find_key(*v, "height");
  const json* w = find_key(*v, "width");
  if (h && w && !shortest && !longest) {
    config.size_rule = SizeRule::kHeightWidth;
    config.height = as_int(*h, source, "size.height");
    config.width = as_int(*w, source, "size.width");
  } else if (shortest && !h && !w) {
    config.shortest_edge = as_int(*shortest, source, "size.shortest_edge");
    config.size_rule = SizeRule::kShortestEdge;
    if (longest) {
      config.size_rule = SizeRule::kShortestLongestEdge;
      config.longest_edge = as_int(*longest, source, "size.longest_edge");
    }
  } else {
    config_fail(source, "size",
                "expected {\"shortest_edge\"}, {\"shortest_edge\", \"longest_edge\"} or {\"height\", \"width\"}, got " +
                    v->dump());
  }
}

void read_crop_size(const json& obj, ImagePreprocessConfig& config, const std::string& source) {
  const json* v = find_key(obj, "crop_size");
  if (!v) return;
  if (v->is_number()) {  // legacy: a square crop
    config.crop_height = config.crop_width = as_int(*v, source, "crop_size");
  } else if (v->is_array() && v->size() == 2) {
    config.crop_height = as_int((*v)[0], source, "crop_size[0]");
    config.crop_width = as_int((*v)[1], source, "crop_size[1]");
  } else if (v->is_object() && find_key(*v, "height") && find_key(*v, "width")) {
    config.crop_height = as_int((*v)["height"], source, "crop_size.height");
    config.crop_width = as_int((*v)["width"], source, "crop_size.width");
  } else {
    config_fail(source, "crop_size",
                "expected an integer, [height, width] or {\"height\", \"width\"}, got " + v->dump());
  }
}

// Every configured side must be usable; 2^16 is far above any model input and keeps products small.
void check_config_side(int64_t value, const std::string& source, const char* key) {
  constexpr int64_t kMaxSide = int64_t{1} << 16;
  if (value < 1 || value > kMaxSide) {
    throw ImageError(source + ": " + key + " = " + std::to_string(value) + " is out of range [1, " +
                     std::to_string(kMaxSide) + "]");
  }
}

}  // namespace

// ---- config ---------------------------------------------------------------------------------------------

ImagePreprocessConfig ImagePreprocessConfig::clip_default() { return ImagePreprocessConfig{}; }

ImagePreprocessConfig ImagePreprocessConfig::for_model_dir(const std::string& dir, bool* used_default) {
  const auto path = std::filesystem::path(dir) / "preprocessor_config.json";
  const bool present = std::filesystem::exists(path);
  if (used_default) *used_default = !present;
  if (present) verify_checksum(dir, "preprocessor_config.json");
  return present ? from_file(path.string()) : clip_default();
}

ImagePreprocessConfig ImagePreprocessConfig::nvlabs_eval() {
  ImagePreprocessConfig c;
  c.size_rule = SizeRule::kMmcvRescale;
  c.shortest_edge = 448;
  c.longest_edge = 2048;
  c.do_center_crop = false;
  // mmseg's Normalize works on 0..255 values: no rescale, mean/std in the same units.
  c.do_rescale = false;
  c.image_mean = {123.675, 116.28, 103.53};
  c.image_std = {58.395, 57.12, 57.375};
  c.resize_method = ResizeMethod::kOpenCvLinear;
  return c;
}

ImagePreprocessConfig ImagePreprocessConfig::from_json_string(const std::string& text, const std::string& source) {
  json obj;
  try {
    obj = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers beyond double (1e400)
    throw ImageError(source + ": not valid JSON (" + e.what() + ")");
  }
  if (!obj.is_object()) throw ImageError(source + ": expected a JSON object at the top level");
  ImagePreprocessConfig c;
  read_bool(obj, "do_resize", c.do_resize, source);
  read_size(obj, c, source);
  if (const json* v = find_key(obj, "resample")) {
    const int64_t r = as_int(*v, source, "resample");
    if (r < 0 || r > 5) config_fail(source, "resample", "expected a Pillow filter number 0..5, got " + v->dump());
    c.resample = static_cast<ResampleFilter>(r);
  }
  read_bool(obj, "do_center_crop", c.do_center_crop, source);
  read_crop_size(obj, c, source);
  read_bool(obj, "do_rescale", c.do_rescale, source);
  if (const json* v = find_key(obj, "rescale_factor")) {
    if (!v->is_number()) config_fail(source, "rescale_factor", "expected a number, got " + v->dump());
    c.rescale_factor = v->get<double>();
  }
  read_bool(obj, "do_normalize", c.do_normalize, source);
  read_channels(obj, "image_mean", c.image_mean, source);
  read_channels(obj, "image_std", c.image_std, source);
  read_bool(obj, "do_convert_rgb", c.do_convert_rgb, source);
  c.validate(source);
  return c;
}

ImagePreprocessConfig ImagePreprocessConfig::from_file(const std::string& path) {
  const auto text = read_file(path);
  if (!text) throw ImageError(path + ": cannot open the preprocessor config (does the file exist?)");
  return from_json_string(*text, path);
}

void ImagePreprocessConfig::validate(const std::string& source) const {
  if (do_resize) {
    filter_for(resample);  // throws for NEAREST
    switch (size_rule) {
      case SizeRule::kShortestEdge:
        check_config_side(shortest_edge, source, "size.shortest_edge");
        break;
      case SizeRule::kShortestLongestEdge:
      case SizeRule::kMmcvRescale:
        check_config_side(shortest_edge, source, "size.shortest_edge");
        check_config_side(longest_edge, source, "size.longest_edge");
        break;
      case SizeRule::kHeightWidth:
        check_config_side(height, source, "size.height");
        check_config_side(width, source, "size.width");
        break;
    }
  }
  if (do_center_crop) {
    check_config_side(crop_height, source, "crop_size.height");
    check_config_side(crop_width, source, "crop_size.width");
  }
  if (do_rescale && !std::isfinite(rescale_factor)) {
    throw ImageError(source + ": rescale_factor must be a finite number");
  }
  if (do_normalize) {
    for (int c = 0; c < 3; ++c) {
      if (!std::isfinite(image_mean[c]) || !std::isfinite(image_std[c]) || image_std[c] == 0.0) {
        throw ImageError(source + ": image_mean/image_std must be finite and image_std non-zero (channel " +
                         std::to_string(c) + ")");
      }
    }
  }
}

// ---- geometry -------------------------------------------------------------------------------------------

std::array<int64_t, 2> resize_output_size(int64_t height, int64_t width, const ImagePreprocessConfig& config) {
  check_image_size(height, width, "resize input");
  int64_t oh = 0, ow = 0;
  switch (config.size_rule) {
    case SizeRule::kHeightWidth:
      oh = config.height;
      ow = config.width;
      break;
    case SizeRule::kShortestEdge: {
      // transformers' get_resize_output_image_size(default_to_square=False): int() truncates the long side.
      const int64_t s = config.shortest_edge;
      const bool portrait = width <= height;
      const int64_t shorter = portrait ? width : height, longer = portrait ? height : width;
      const auto new_long = static_cast<int64_t>(static_cast<double>(s * longer) / static_cast<double>(shorter));
      oh = portrait ? new_long : s;
      ow = portrait ? s : new_long;
      break;
    }
    case SizeRule::kShortestLongestEdge: {
      // transformers' get_size_with_aspect_ratio, including its float expressions and round-half-even.
      int64_t size = config.shortest_edge;
      const auto max_size = static_cast<double>(config.longest_edge);
      const auto min_original = static_cast<double>(std::min(height, width));
      const auto max_original = static_cast<double>(std::max(height, width));
      bool capped = false;
      double raw_size = 0.0;
      if (max_original / min_original * static_cast<double>(size) > max_size) {
        raw_size = max_size * min_original / max_original;
        size = static_cast<int64_t>(std::nearbyint(raw_size));
        capped = true;
      }
      const auto h = static_cast<double>(height), w = static_cast<double>(width);
      if ((height <= width && height == size) || (width <= height && width == size)) {
        oh = height;
        ow = width;
      } else if (width < height) {
        ow = size;
        oh = static_cast<int64_t>(capped ? raw_size * h / w : static_cast<double>(size * height) / w);
      } else {
        oh = size;
        ow = static_cast<int64_t>(capped ? raw_size * w / h : static_cast<double>(size * width) / h);
      }
      break;
    }
    case SizeRule::kMmcvRescale: {
      // mmcv.imrescale: one scale factor so that the long side fits longest_edge and the short side fits
      // shortest_edge; each side rounded half up.
      const double factor =
          std::min(static_cast<double>(config.longest_edge) / static_cast<double>(std::max(height, width)),
                   static_cast<double>(config.shortest_edge) / static_cast<double>(std::min(height, width)));
      ow = static_cast<int64_t>(static_cast<double>(width) * factor + 0.5);
      oh = static_cast<int64_t>(static_cast<double>(height) * factor + 0.5);
      break;
    }
  }
  check_image_size(oh, ow, "resizing " + std::to_string(width) + "x" + std::to_string(height) + " image: output size");
  return {oh, ow};
}

RgbImage resize_pillow(const RgbImage& src, int64_t out_width, int64_t out_height, ResampleFilter filter) {
  check_rgb_image(src, "resize input");
  check_image_size(out_height, out_width, "resize output");
  return resize_window(src, out_width, out_height, filter, 0, 0, out_width, out_height);
}

RgbImage resize_bicubic_pillow(const RgbImage& src, int64_t out_width, int64_t out_height) {
  return resize_pillow(src, out_width, out_height, ResampleFilter::kBicubic);
}

RgbImage resize_shortest_edge(const RgbImage& src, int64_t shortest_edge) {
  ImagePreprocessConfig config;
  config.size_rule = SizeRule::kShortestEdge;
  config.shortest_edge = shortest_edge;
  const auto [h, w] = resize_output_size(src.height, src.width, config);
  return resize_bicubic_pillow(src, w, h);
}

RgbImage center_crop(const RgbImage& src, int64_t crop_height, int64_t crop_width) {
  check_rgb_image(src, "center_crop input");
  check_image_size(crop_height, crop_width, "center_crop size");
  // Python's // floors; C++ '/' truncates, which differs only for negative values (image smaller than crop).
  auto floor_div2 = [](int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  // Place the source on a canvas at least as large as the crop (black padding, ceil(missing / 2) before), then
  // cut the crop window out of the canvas; that is transformers' center_crop in both of its branches.
  const int64_t canvas_h = std::max(crop_height, src.height), canvas_w = std::max(crop_width, src.width);
  const int64_t pad_top = (canvas_h - src.height + 1) / 2, pad_left = (canvas_w - src.width + 1) / 2;
  const int64_t top = floor_div2(src.height - crop_height) + pad_top;
  const int64_t left = floor_div2(src.width - crop_width) + pad_left;
  const int64_t y0 = std::max<int64_t>(0, top), y1 = std::min(canvas_h, top + crop_height);
  const int64_t x0 = std::max<int64_t>(0, left), x1 = std::min(canvas_w, left + crop_width);
  RgbImage out(y1 - y0, x1 - x0);
  for (int64_t y = y0; y < y1; ++y) {
    const int64_t sy = y - pad_top;
    if (sy < 0 || sy >= src.height) continue;
    for (int64_t x = x0; x < x1; ++x) {
      const int64_t sx = x - pad_left;
      if (sx < 0 || sx >= src.width) continue;
      std::copy_n(src.row(sy) + sx * 3, 3, out.row(y - y0) + (x - x0) * 3);
    }
  }
  return out;
}

// ---- the pipeline ---------------------------------------------------------------------------------------

RgbImage composite_transparent_color_on_white(const RgbImage& image) {
  check_rgb_image(image, "convert_to_rgb input");
  RgbImage out = image;
  out.transparent_color.reset();
  if (!image.transparent_color) return out;
  const auto key = *image.transparent_color;
  for (size_t i = 0; i < out.pixels.size(); i += 3) {
    uint8_t* p = out.pixels.data() + i;
    if (p[0] == key[0] && p[1] == key[1] && p[2] == key[2]) p[0] = p[1] = p[2] = 255;
  }
  return out;
}

RgbImage preprocess_uint8(const RgbImage& image, const ImagePreprocessConfig& config) {
  check_rgb_image(image, "preprocess input");
  config.validate();
  RgbImage out = config.do_convert_rgb ? composite_transparent_color_on_white(image) : image;
  out.transparent_color.reset();
  if (!config.do_resize) return config.do_center_crop ? center_crop(out, config.crop_height, config.crop_width) : out;
  const auto [h, w] = resize_output_size(out.height, out.width, config);
  if (config.resize_method == ResizeMethod::kOpenCvLinear) {
    out = resize_opencv_linear(out, w, h);
    return config.do_center_crop ? center_crop(out, config.crop_height, config.crop_width) : out;
  }
  if (config.do_center_crop && config.crop_height <= h && config.crop_width <= w) {
    // The crop lies inside the resized image: resize only the window it keeps (same pixels, far less work for
    // elongated images, whose resized long side can be tens of thousands of pixels).
    return resize_window(out, w, h, config.resample, (w - config.crop_width) / 2, (h - config.crop_height) / 2,
                         config.crop_width, config.crop_height);
  }
  out = resize_pillow(out, w, h, config.resample);
  return config.do_center_crop ? center_crop(out, config.crop_height, config.crop_width) : out;
}

namespace {

// The output depends only on (channel, byte value), so a 3 x 256 table computed with the reference's exact
// arithmetic reproduces it: numpy's rescale multiplies in float64 and rounds to float32; normalize subtracts
// and divides in float32 with mean/std rounded to float32.
std::array<std::array<float, 256>, 3> normalization_table(const ImagePreprocessConfig& config) {
  std::array<std::array<float, 256>, 3> table{};
  for (int c = 0; c < 3; ++c) {
    const auto mean = static_cast<float>(config.image_mean[c]);
    const auto std_dev = static_cast<float>(config.image_std[c]);
    for (int v = 0; v < 256; ++v) {
      float x = config.do_rescale ? static_cast<float>(static_cast<double>(v) * config.rescale_factor)
                                  : static_cast<float>(v);
      if (config.do_normalize) x = (x - mean) / std_dev;
      table[c][v] = x;
    }
  }
  return table;
}

void write_chw(const RgbImage& image, const std::array<std::array<float, 256>, 3>& table, float* out) {
  const int64_t plane = image.height * image.width;
  const uint8_t* p = image.pixels.data();
  for (int64_t i = 0; i < plane; ++i) {
    out[i] = table[0][p[i * 3 + 0]];
    out[plane + i] = table[1][p[i * 3 + 1]];
    out[2 * plane + i] = table[2][p[i * 3 + 2]];
  }
}

}  // namespace

at::Tensor to_normalized_tensor(const RgbImage& image, const ImagePreprocessConfig& config) {
  check_rgb_image(image, "normalize input");
  at::Tensor out = at::empty({3, image.height, image.width}, at::kFloat);
  write_chw(image, normalization_table(config), out.data_ptr<float>());
  return out;
}

at::Tensor preprocess(const RgbImage& image, const ImagePreprocessConfig& config) {
  return to_normalized_tensor(preprocess_uint8(image, config), config);
}

at::Tensor preprocess_batch(const std::vector<RgbImage>& images, const ImagePreprocessConfig& config) {
  if (images.empty()) throw ImageError("preprocess_batch: no images given");
  const auto table = normalization_table(config);
  at::Tensor out;
  for (size_t n = 0; n < images.size(); ++n) {
    const RgbImage ready = preprocess_uint8(images[n], config);
    if (n == 0) {
      out = at::empty({static_cast<int64_t>(images.size()), 3, ready.height, ready.width}, at::kFloat);
    } else if (ready.height != out.size(2) || ready.width != out.size(3)) {
      throw ImageError("preprocess_batch: image " + std::to_string(n) + " comes out at " + std::to_string(ready.width) +
                       "x" + std::to_string(ready.height) + " but image 0 at " + std::to_string(out.size(3)) + "x" +
                       std::to_string(out.size(2)) +
                       "; enable do_center_crop or a fixed size, or preprocess the images one by one");
    }
    write_chw(ready, table, out.data_ptr<float>() + static_cast<int64_t>(n) * 3 * ready.height * ready.width);
  }
  return out;
}

}  // namespace groupvit
