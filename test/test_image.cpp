// Image front end against the Python reference (scripts/make_image_fixtures.py): decoding vs transformers'
// load_image (Pillow), resize/crop vs CLIPImageProcessorPil's uint8 intermediate, pixel_values vs its float32
// output, Pillow's resize filters, and the refusals (missing, empty, truncated, non-image, oversized input).
// Every comparison prints name, size, max abs difference and share of differing values.
#ifdef GROUPVIT_HAVE_OPENCV

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "groupvit/image/image_io.h"
#include "groupvit/preprocess/image_preprocess.h"
#include "test_support.h"

namespace {

using groupvit::ImageError;
using groupvit::ImagePreprocessConfig;
using groupvit::RgbImage;
using json = nlohmann::json;

// Bounds, from measurement (see the printed tables). Lossless inputs decode identically to Pillow, and the
// resize/crop/normalise code is bit-exact, so those bounds are zero. JPEG and lossy WebP go through OpenCV's
// system libjpeg-turbo / libwebp and Pillow's bundled ones: identical where measured (Debian 12's libjpeg-turbo
// 2.1.5 and libwebp 1.2.4 against Pillow 13's), but other builds may round IDCT or upsampling differently, so
// they get a small allowance. CMYK JPEGs are converted to RGB by OpenCV with x * k / 256 where Pillow rounds
// x * k / 255: most values are one level off.
constexpr double kLossyMaxDiff = 2;         // JPEG / lossy WebP: max |ours - Pillow| per value, decode and pipeline
constexpr double kLossyMaxShare = 0.01;     // ... and the share of values that may differ at all
constexpr double kCmykDecodeMaxDiff = 1;    // CMYK JPEG: max |ours - Pillow| after decoding, any share
constexpr double kCmykPipelineMaxDiff = 2;  // ... after resize + crop (neighbouring one-level errors can add up)

std::string image_dir() { return groupvit::test::fixtures_dir() + "/image"; }

const json& manifest() {
  static const json m = [] {
    std::ifstream in(image_dir() + "/manifest.json");
    if (!in) throw std::runtime_error("missing " + image_dir() + "/manifest.json: run scripts/make_image_fixtures.py");
    return json::parse(in);
  }();
  return m;
}

// The image's colour key as the fixture recorded it from Pillow's info["transparency"].
std::optional<std::array<uint8_t, 3>> manifest_colour_key(const json& entry) {
  if (!entry.contains("transparent_color") || entry["transparent_color"].is_null()) return std::nullopt;
  const auto& k = entry["transparent_color"];
  return std::array<uint8_t, 3>{k[0].get<uint8_t>(), k[1].get<uint8_t>(), k[2].get<uint8_t>()};
}

// Allowed difference between our decode (or decode + preprocess) and Pillow's for this image.
struct Bound {
  double max_abs;
  double max_share;
};
Bound decode_bound(const json& entry, bool after_resize) {
  if (entry["pil_mode"] == "CMYK") return {after_resize ? kCmykPipelineMaxDiff : kCmykDecodeMaxDiff, 1.0};
  if (entry["lossy"].get<bool>()) return {kLossyMaxDiff, kLossyMaxShare};
  return {0, 0};
}

RgbImage image_from_tensor(const torch::Tensor& hwc) {
  REQUIRE(hwc.dim() == 3);
  REQUIRE(hwc.size(2) == 3);
  RgbImage img(hwc.size(0), hwc.size(1));
  const torch::Tensor c = hwc.to(torch::kUInt8).contiguous();
  std::copy_n(c.data_ptr<uint8_t>(), img.pixels.size(), img.pixels.data());
  return img;
}

torch::Tensor tensor_from_image(const RgbImage& img) {
  torch::Tensor t = torch::empty({img.height, img.width, 3}, torch::kUInt8);
  std::copy(img.pixels.begin(), img.pixels.end(), t.data_ptr<uint8_t>());
  return t;
}

struct Diff {
  bool same_shape = false;
  double max_abs = 0.0;
  double share = 0.0;  // fraction of values that differ
};

// Plain loops rather than tensor ops: this runs hundreds of times on small tensors, where LibTorch's thread pool
// costs more than the arithmetic (and spins on a busy CI machine).
template <typename T>
Diff compare_values(const torch::Tensor& got, const torch::Tensor& want) {
  Diff d;
  d.same_shape = true;
  const torch::Tensor g = got.contiguous(), w = want.contiguous();
  const T* a = g.data_ptr<T>();
  const T* b = w.data_ptr<T>();
  int64_t differing = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double delta = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    d.max_abs = std::max(d.max_abs, delta);
    differing += delta > 0;
  }
  d.share = g.numel() ? static_cast<double>(differing) / static_cast<double>(g.numel()) : 0.0;
  return d;
}

Diff compare(const torch::Tensor& got, const torch::Tensor& want) {
  if (got.sizes() != want.sizes() || got.scalar_type() != want.scalar_type()) return Diff{};
  if (got.scalar_type() == torch::kUInt8) return compare_values<uint8_t>(got, want);
  REQUIRE(got.scalar_type() == torch::kFloat);
  return compare_values<float>(got, want);
}

std::string shape_text(const torch::Tensor& t) {
  std::string s;
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "x" : "") + std::to_string(t.size(i));
  return s;
}

void print_row(const std::string& what, const torch::Tensor& want, const Diff& d) {
  std::printf("  %-44s %-14s max|diff| %-10.3g differing %.4f%%%s\n", what.c_str(), shape_text(want).c_str(), d.max_abs,
              100.0 * d.share, d.same_shape ? "" : "  SHAPE OR TYPE MISMATCH");
}

ImagePreprocessConfig preset_config(const std::string& preset) {
  if (preset == "nvlabs") return ImagePreprocessConfig::nvlabs_eval();
  if (preset == "nvlabs_pillow") {
    auto c = ImagePreprocessConfig::nvlabs_eval();
    c.resize_method = groupvit::ResizeMethod::kPillow;
    return c;
  }
  return ImagePreprocessConfig::from_file(image_dir() + "/" + manifest()["configs"][preset].get<std::string>());
}

// The reference float for (image, preset): stored pixel_values, or the reference lookup table (which the
// fixture script checked against pixel_values) applied to the reference uint8 image.
torch::Tensor reference_pixels(const std::map<std::string, torch::Tensor>& refs, const std::string& preset) {
  auto it = refs.find(preset + "_pixels");
  if (it != refs.end()) return it->second;
  static const auto luts = groupvit::test::load_tensor_dict(image_dir() + "/refs/luts.pt");
  const torch::Tensor lut = luts.at(preset).contiguous();            // [3, 256]
  const torch::Tensor u8 = refs.at(preset + "_uint8").contiguous();  // [H, W, 3]
  const int64_t plane = u8.size(0) * u8.size(1);
  torch::Tensor out = torch::empty({3, u8.size(0), u8.size(1)}, torch::kFloat);
  const uint8_t* in = u8.data_ptr<uint8_t>();
  const float* table = lut.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t i = 0; i < plane; ++i) {
    for (int64_t c = 0; c < 3; ++c) o[c * plane + i] = table[c * 256 + in[i * 3 + c]];
  }
  return out;
}

}  // namespace

TEST_CASE("decoded pixels match Pillow (transformers load_image)", "[image]") {
  std::printf("decode vs load_image (exif_transpose + convert RGB):\n");
  for (const auto& entry : manifest()["images"]) {
    const std::string name = entry["name"];
    const Bound bound = decode_bound(entry, false);
    const auto refs = groupvit::test::load_tensor_dict(image_dir() + "/" + entry["refs"].get<std::string>());
    const std::string path = image_dir() + "/" + entry["file"].get<std::string>();
    const RgbImage got = groupvit::decode_image_file(path);
    const torch::Tensor want = refs.at("decoded");
    const Diff d = compare(tensor_from_image(got), want);
    print_row(name + " [" + entry["pil_mode"].get<std::string>() + "]", want, d);
    INFO(name);
    REQUIRE(d.same_shape);
    CHECK(d.max_abs <= bound.max_abs);
    CHECK(d.share <= bound.max_share);
    CHECK(got.transparent_color == manifest_colour_key(entry));
    // The orientation the container declares, and the flag that keeps the stored orientation.
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(groupvit::probe_image(bytes.data(), bytes.size()).orientation == entry["orientation"].get<int>());
    if (refs.count("decoded_stored")) {
      const Diff s =
          compare(tensor_from_image(groupvit::decode_image_bytes(bytes, false, path)), refs.at("decoded_stored"));
      REQUIRE(s.same_shape);
      CHECK(s.max_abs <= bound.max_abs);
    }
  }
}

TEST_CASE("resize and crop match CLIPImageProcessorPil bit for bit", "[image]") {
  std::printf("preprocess of Pillow-decoded pixels vs CLIPImageProcessorPil (uint8 after resize+crop, float):\n");
  for (const auto& entry : manifest()["images"]) {
    const std::string name = entry["name"];
    const auto refs = groupvit::test::load_tensor_dict(image_dir() + "/" + entry["refs"].get<std::string>());
    RgbImage input = image_from_tensor(refs.at("decoded"));
    input.transparent_color = manifest_colour_key(entry);
    for (const auto& preset_json : entry["presets"]) {
      const std::string preset = preset_json;
      INFO(name << " / " << preset);
      const ImagePreprocessConfig config = preset_config(preset);
      const RgbImage u8 = groupvit::preprocess_uint8(input, config);
      const Diff du = compare(tensor_from_image(u8), refs.at(preset + "_uint8"));
      print_row(name + " " + preset + " uint8", refs.at(preset + "_uint8"), du);
      const torch::Tensor pixels = groupvit::to_normalized_tensor(u8, config);
      const torch::Tensor want = reference_pixels(refs, preset);
      const Diff df = compare(pixels, want);
      print_row(name + " " + preset + " float", want, df);
      REQUIRE(du.same_shape);
      CHECK(du.max_abs == 0);
      REQUIRE(df.same_shape);
      CHECK(df.max_abs == 0);
      CHECK(pixels.scalar_type() == torch::kFloat);
    }
    // The NVlabs output size for every image (pixels only for a subset, above).
    const auto size = groupvit::resize_output_size(input.height, input.width, ImagePreprocessConfig::nvlabs_eval());
    CHECK(size[1] == entry["nvlabs_size"][0].get<int64_t>());
    CHECK(size[0] == entry["nvlabs_size"][1].get<int64_t>());
  }
}

TEST_CASE("decode + preprocess end to end against the reference", "[image]") {
  std::printf("decode_image_file + preprocess (clip) vs load_image + CLIPImageProcessorPil:\n");
  const ImagePreprocessConfig config = preset_config("clip");
  for (const auto& entry : manifest()["images"]) {
    const std::string name = entry["name"];
    const Bound bound = decode_bound(entry, true);
    const auto refs = groupvit::test::load_tensor_dict(image_dir() + "/" + entry["refs"].get<std::string>());
    const RgbImage decoded = groupvit::decode_image_file(image_dir() + "/" + entry["file"].get<std::string>());
    const RgbImage u8 = groupvit::preprocess_uint8(decoded, config);
    const Diff du = compare(tensor_from_image(u8), refs.at("clip_uint8"));
    const torch::Tensor want = reference_pixels(refs, "clip");
    const Diff df = compare(groupvit::to_normalized_tensor(u8, config), want);
    print_row(name + " uint8", refs.at("clip_uint8"), du);
    print_row(name + " float", want, df);
    INFO(name);
    REQUIRE(du.same_shape);
    REQUIRE(df.same_shape);
    CHECK(du.max_abs <= bound.max_abs);
    CHECK(du.share <= bound.max_share);
    // Each uint8 level is 1/255 divided by the smallest CLIP std (0.2613) in pixel_values.
    CHECK(df.max_abs <= bound.max_abs / 255.0 / 0.26130258 + 1e-6);
  }
}

namespace {

// The decoded pixels of the manifest's image `name`, a source of the resize cases.
RgbImage decoded_source(const std::string& name) {
  for (const auto& entry : manifest()["images"]) {
    if (entry["name"] == name) {
      const auto refs = groupvit::test::load_tensor_dict(image_dir() + "/" + entry["refs"].get<std::string>());
      return image_from_tensor(refs.at("decoded"));
    }
  }
  FAIL("no image " << name << " in the manifest");
  return {};
}

}  // namespace

TEST_CASE("resize_pillow matches Pillow's Image.resize for every filter", "[image]") {
  const auto& m = manifest();
  int worst = 0;
  for (const auto& [source, refs_file] : m["resize_sources"].items()) {
    const auto refs = groupvit::test::load_tensor_dict(image_dir() + "/" + refs_file.get<std::string>());
    const RgbImage input = decoded_source(source);
    for (const auto& c : m["resize_cases"]) {
      if (c["source"] != source) continue;
      const std::string key = c["key"];
      INFO(source << " " << key);
      const RgbImage got = groupvit::resize_pillow(input, c["width"].get<int64_t>(), c["height"].get<int64_t>(),
                                                   static_cast<groupvit::ResampleFilter>(c["filter"].get<int>()));
      const Diff d = compare(tensor_from_image(got), refs.at(key));
      REQUIRE(d.same_shape);
      CHECK(d.max_abs == 0);
      worst = std::max(worst, static_cast<int>(d.max_abs));
    }
  }
  std::printf("resize_pillow: %zu cases (5 filters), worst max|diff| %d\n", m["resize_cases"].size(), worst);
}

TEST_CASE("resize_opencv_linear matches cv2.resize INTER_LINEAR bit for bit", "[image]") {
  const auto& m = manifest();
  size_t cases = 0, grey = 0;
  for (const auto& [source, refs_file] : m["opencv_sources"].items()) {
    const auto refs = groupvit::test::load_tensor_dict(image_dir() + "/" + refs_file.get<std::string>());
    const RgbImage input = decoded_source(source);
    for (const auto& c : m["opencv_cases"]) {
      if (c["source"] != source) continue;
      const std::string key = c["key"];
      INFO(source << " " << key << (c["grey"].get<bool>() ? " (grey: cv2 resized one channel)" : ""));
      const RgbImage got = groupvit::resize_opencv_linear(input, c["width"].get<int64_t>(), c["height"].get<int64_t>());
      const Diff d = compare(tensor_from_image(got), refs.at(key));
      REQUIRE(d.same_shape);
      CHECK(d.max_abs == 0);
      ++cases;
      grey += c["grey"].get<bool>();
    }
  }
  CHECK(grey > 0);
  CHECK(grey < cases);
  std::printf("resize_opencv_linear: %zu cases (%zu grey) against OpenCV %s, all exact unless reported above\n", cases,
              grey, m["opencv"].get<std::string>().c_str());
}

TEST_CASE("broken and unsupported files are refused with the path in the message", "[image]") {
  for (const auto& e : manifest()["errors"]) {
    const std::string path = image_dir() + "/" + e["file"].get<std::string>();
    INFO(path << ": " << e["reason"].get<std::string>());
    try {
      groupvit::decode_image_file(path);
      FAIL("decoded a file that must be refused");
    } catch (const ImageError& err) {
      std::printf("  refused %-24s %s\n", e["file"].get<std::string>().c_str(), err.what());
      CHECK(std::string(err.what()).find(path) != std::string::npos);
      if (!e["pillow_refuses"].get<bool>()) CHECK(std::string(err.what()).find("alpha") != std::string::npos);
    }
  }
  const std::string missing = image_dir() + "/no/such/image.png";
  CHECK_THROWS_WITH(groupvit::decode_image_file(missing), Catch::Contains(missing) && Catch::Contains("not found"));
  CHECK_THROWS_WITH(groupvit::decode_image_file(image_dir()), Catch::Contains("not a regular file"));
  CHECK_THROWS_AS(groupvit::decode_image_bytes(nullptr, 0), ImageError);
}

TEST_CASE("oversized images are refused from the header, before decoding", "[image]") {
  // A PNG whose IHDR claims 20000 x 20000 (4e8 pixels > 2^28); nothing after it, so only the header is read.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {20000u, 20000u}) {
    for (int shift = 24; shift >= 0; shift -= 8) png.push_back(static_cast<uint8_t>(v >> shift));
  }
  for (uint8_t b : {8, 2, 0, 0, 0, 0, 0, 0, 0}) png.push_back(b);  // depth, colour type, ..., CRC (unchecked)
  CHECK_THROWS_WITH(groupvit::decode_image_bytes(png, true, "huge.png"),
                    Catch::Contains("huge.png") && Catch::Contains("exceeds the limit"));
  // The same limit guards resize outputs: a 1 x 3000 strip to CLIP's short side 224 is fine...
  ImagePreprocessConfig config = ImagePreprocessConfig::clip_default();
  CHECK(groupvit::resize_output_size(3000, 1, config)[0] == 672000);
  // ...but a 1 x 2000000 strip would need a 224 x 448000000 image.
  CHECK_THROWS_WITH(groupvit::resize_output_size(1, 2000000, config), Catch::Contains("exceeds the limit"));
}

TEST_CASE("sizes and shapes are validated", "[image]") {
  CHECK_THROWS_AS(RgbImage(0, 5), ImageError);
  CHECK_THROWS_AS(RgbImage(5, -1), ImageError);
  const RgbImage one(1, 1);
  CHECK_THROWS_AS(groupvit::resize_bicubic_pillow(one, 0, 10), ImageError);
  CHECK_THROWS_AS(groupvit::center_crop(one, 0, 1), ImageError);
  RgbImage broken;  // zero size, empty buffer
  CHECK_THROWS_AS(groupvit::preprocess(broken, ImagePreprocessConfig::clip_default()), ImageError);
  RgbImage short_buffer(2, 2);
  short_buffer.pixels.resize(5);
  CHECK_THROWS_WITH(groupvit::preprocess(short_buffer, ImagePreprocessConfig::clip_default()),
                    Catch::Contains("pixel buffer"));
  // 1 x 1 works all the way through.
  const torch::Tensor t = groupvit::preprocess(one, ImagePreprocessConfig::clip_default());
  CHECK(t.sizes() == torch::IntArrayRef({3, 224, 224}));
  // mmcv's rounding can reach zero for an extreme strip: refused, not a zero-sized tensor.
  CHECK_THROWS_WITH(groupvit::resize_output_size(1, 100000, ImagePreprocessConfig::nvlabs_eval()),
                    Catch::Contains("empty"));
}

TEST_CASE("preprocess_batch stacks equal-sized results and refuses mixed sizes", "[image]") {
  const auto& images = manifest()["images"];
  std::vector<RgbImage> inputs;
  for (const char* name : {"chelsea_png", "gen_3000x40", "gen_1x1"}) {
    for (const auto& entry : images) {
      if (entry["name"] == name) {
        inputs.push_back(image_from_tensor(
            groupvit::test::load_tensor_dict(image_dir() + "/" + entry["refs"].get<std::string>()).at("decoded")));
      }
    }
  }
  REQUIRE(inputs.size() == 3);
  const ImagePreprocessConfig clip = ImagePreprocessConfig::clip_default();
  const torch::Tensor batch = groupvit::preprocess_batch(inputs, clip);
  REQUIRE(batch.sizes() == torch::IntArrayRef({3, 3, 224, 224}));
  for (size_t i = 0; i < inputs.size(); ++i) CHECK(batch[i].equal(groupvit::preprocess(inputs[i], clip)));
  CHECK_THROWS_WITH(groupvit::preprocess_batch(inputs, ImagePreprocessConfig::nvlabs_eval()),
                    Catch::Contains("image 1"));
  CHECK_THROWS_AS(groupvit::preprocess_batch({}, clip), ImageError);
}

TEST_CASE("preprocessor_config.json is read like transformers reads it", "[image]") {
  const ImagePreprocessConfig hub = preset_config("clip");  // the hub's legacy integer form
  const ImagePreprocessConfig def = ImagePreprocessConfig::clip_default();
  CHECK(hub.size_rule == def.size_rule);
  CHECK(hub.shortest_edge == 224);
  CHECK(hub.crop_height == 224);
  CHECK(hub.crop_width == 224);
  CHECK(hub.resample == groupvit::ResampleFilter::kBicubic);
  CHECK(hub.rescale_factor == def.rescale_factor);
  CHECK(hub.image_mean == def.image_mean);
  CHECK(hub.image_std == def.image_std);

  const auto parse = [](const std::string& text) { return ImagePreprocessConfig::from_json_string(text, "cfg.json"); };
  CHECK(parse(R"({"size": {"height": 10, "width": 20}})").size_rule == groupvit::SizeRule::kHeightWidth);
  CHECK(parse(R"({"size": [10, 20]})").width == 20);
  CHECK(parse(R"({"size": {"shortest_edge": 5, "longest_edge": 9}})").longest_edge == 9);
  CHECK(parse(R"({"image_mean": 0.5})").image_mean[2] == 0.5);
  CHECK(parse(R"({"crop_size": null, "do_center_crop": false})").do_center_crop == false);
  CHECK_THROWS_WITH(parse(R"({"size": "big"})"), Catch::Contains("cfg.json") && Catch::Contains("\"size\""));
  CHECK_THROWS_WITH(parse(R"({"size": {"width": 3}})"), Catch::Contains("\"size\""));
  CHECK_THROWS_WITH(parse(R"({"do_resize": 1})"), Catch::Contains("\"do_resize\""));
  CHECK_THROWS_WITH(parse(R"({"image_std": [1, 0, 1]})"), Catch::Contains("image_std"));
  CHECK_THROWS_WITH(parse(R"({"image_mean": [1, 2]})"), Catch::Contains("\"image_mean\""));
  CHECK_THROWS_WITH(parse(R"({"resample": 0})"), Catch::Contains("not supported"));
  CHECK_THROWS_WITH(parse(R"({"size": 0})"), Catch::Contains("size.shortest_edge"));
  CHECK_THROWS_WITH(parse(R"({"crop_size": 1000000})"), Catch::Contains("crop_size"));
  CHECK_THROWS_WITH(parse("[1, 2]"), Catch::Contains("JSON object"));
  CHECK_THROWS_WITH(parse("{"), Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(parse(R"({"crop_size": 1e400})"),
                    Catch::Contains("cfg.json") && Catch::Contains("number overflow"));  // issue 7
  CHECK_THROWS_WITH(ImagePreprocessConfig::from_file("/nonexistent/preprocessor_config.json"),
                    Catch::Contains("/nonexistent/preprocessor_config.json"));
}

#endif  // GROUPVIT_HAVE_OPENCV
