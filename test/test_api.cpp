// The public facade (groupvit/groupvit.h, groupvit/image/image.h): same numbers as the model and the
// reference fixtures, frames from tensors and cv::Mat.
#include "groupvit/groupvit.h"
#include "test_support.h"
#ifdef GROUPVIT_HAVE_OPENCV
#include <opencv2/core.hpp>

#include "groupvit/image/image.h"
#endif

#include <catch2/catch.hpp>

namespace {

std::string full_model_dir() { return groupvit::test::fixtures_dir() + "/parity/full/model"; }

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  return (x - y).abs().max().item<double>() / std::max(y.abs().max().item<double>(), 1e-30);
}

}  // namespace

TEST_CASE("the facade gives the reference's embeddings, logits and segmentation", "[api]") {
  auto ref = groupvit::test::load_tensor_dict(groupvit::test::fixtures_dir() + "/parity/full/ref.pt");
  auto model = groupvit::GroupViT::load(full_model_dir());
  const auto text = model.encode_texts(ref.at("input.input_ids"), ref.at("input.attention_mask"));
  const auto image = model.encode_images(ref.at("input.pixel_values"));
  CHECK(max_rel(text, ref.at("text_embeds")) < 1e-4);
  CHECK(max_rel(image, ref.at("image_embeds")) < 1e-4);
  CHECK(max_rel(model.similarity(image, text), ref.at("logits_per_image")) < 1e-4);
  const auto seg = model.segment_hf(ref.at("input.pixel_values"), text);
  CHECK(max_rel(seg, ref.at("segmentation_logits")) < 1e-4);
  CHECK(torch::equal(model.segment_hf_labels(ref.at("input.pixel_values"), text), seg.argmax(1)));
  CHECK(model.tokenize({"a photo of a cat"}).input_ids.sizes() == torch::IntArrayRef{1, 7});
  CHECK_THROWS_WITH(model.tokenize({}), Catch::Contains("no texts"));
}

TEST_CASE("the facade's NVlabs segmentation equals the core function it wraps", "[api]") {
  auto model = groupvit::GroupViT::load(full_model_dir());
  const std::vector<std::string> labels = {"cat", "dog", "grass"};
  const auto classes = model.encode_classes(labels, groupvit::kSubsetTemplates);
  REQUIRE(classes.sizes() == torch::IntArrayRef{3, model.model()->config().projection_dim});
  CHECK(torch::allclose(classes.norm(2, -1), torch::ones({3}), 1e-5, 1e-5));
  // By hand: every template filled with every label, mean per label, normalised.
  auto filled = groupvit::fill_templates(labels, groupvit::kSubsetTemplates);
  auto tokens = model.tokenize(filled);
  auto features = model.model()->get_text_features(tokens.input_ids, tokens.attention_mask).detach();
  auto mean = features.view({3, -1, features.size(-1)}).mean(1);
  CHECK(max_rel(classes, mean / mean.norm(2, -1, true)) < 1e-5);

  torch::manual_seed(1);
  const auto image = torch::randn({3, 448, 512});
  groupvit::NvlabsSegmentationOptions o;
  const auto scores = model.segment_nvlabs({image}, classes, {{{300, 341}}}, o);
  REQUIRE(scores.size() == 1);
  CHECK(scores[0].sizes() == torch::IntArrayRef{4, 300, 341});
  torch::NoGradGuard no_grad;
  auto direct = groupvit::nvlabs_segment(*model.model(), {image}, classes, {{{300, 341}}}, o);
  CHECK(torch::equal(scores[0], direct[0]));
  CHECK_THROWS_WITH(model.encode_classes({}), Catch::Contains("no labels"));
}

TEST_CASE("frames as uint8 tensors are preprocessed close to the exact path", "[api]") {
  auto model = groupvit::GroupViT::load(full_model_dir());
  torch::manual_seed(0);
  // A smooth synthetic frame, where LibTorch's and Pillow's bicubic agree to a few levels.
  auto y = torch::linspace(0, 1, 300).view({300, 1});
  auto x = torch::linspace(0, 1, 400).view({1, 400});
  auto frame =
      torch::stack({255 * x.expand({300, 400}), 255 * y.expand({300, 400}), 255 * (x * y)}, 2).round().to(torch::kByte);
  groupvit::RgbImage image;
  image.height = 300;
  image.width = 400;
  image.pixels.assign(frame.data_ptr<uint8_t>(), frame.data_ptr<uint8_t>() + frame.numel());
  const auto exact = model.preprocess({image});
  const auto fast = model.preprocess_frames(frame.unsqueeze(0));
  REQUIRE(fast.sizes() == exact.sizes());
  // Two levels over CLIP's smallest std: 2 / 255 / 0.2613.
  CHECK((fast - exact).abs().max().item<double>() < 0.031);
  CHECK_THROWS_WITH(model.preprocess_frames(torch::zeros({1, 3, 8, 8})), Catch::Contains("uint8 [N, H, W, 3]"));
}

#ifdef GROUPVIT_HAVE_OPENCV
TEST_CASE("cv::Mat frames in BGR, BGRA and grey become RGB", "[api]") {
  cv::Mat bgr(2, 3, CV_8UC3, cv::Scalar(10, 20, 30));
  auto rgb = groupvit::rgb_from_mat(bgr);
  CHECK(rgb.height == 2);
  CHECK(rgb.width == 3);
  CHECK(rgb.pixels[0] == 30);
  CHECK(rgb.pixels[2] == 10);
  cv::Mat bgra(1, 1, CV_8UC4, cv::Scalar(1, 2, 3, 4));
  CHECK(groupvit::rgb_from_mat(bgra).pixels == std::vector<uint8_t>{3, 2, 1});
  cv::Mat grey(1, 1, CV_8UC1, cv::Scalar(7));
  CHECK(groupvit::rgb_from_mat(grey).pixels == std::vector<uint8_t>{7, 7, 7});
  CHECK_THROWS_AS(groupvit::rgb_from_mat(cv::Mat()), groupvit::ImageError);
  CHECK_THROWS_AS(groupvit::rgb_from_mat(cv::Mat(2, 2, CV_32FC3)), groupvit::ImageError);
  auto model = groupvit::GroupViT::load(full_model_dir());
  CHECK(groupvit::pixel_values_from_mats(model, {bgr, grey}).sizes() == torch::IntArrayRef{2, 3, 224, 224});
}
#endif
